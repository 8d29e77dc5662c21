"""``RFDETRModule``: the RF-DETR network, its loss and its optimiser as a LightningModule.

Lightning owns the loop mechanics -- gradient accumulation (``accumulate_grad_batches``), AMP
(``precision``) and gradient clipping (``gradient_clip_val``) are Trainer settings made by
:func:`rfdetr_core.training.trainer.build_trainer` -- so the steps here only compute: forward,
loss, post-processing. Lightning divides the returned loss by the accumulation count itself.

Validation returns post-processed detections in original-image pixels (plus the EMA model's, when
an EMA callback is attached); :class:`~rfdetr_core.training.callbacks.coco_eval.COCOEvalCallback`
accumulates them and computes the metrics.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from rfdetr_core import checkpoint as ckpt_io
from rfdetr_core.config import ModelConfig
from rfdetr_core.data import NestedTensor, multi_scale_sizes, resize_batch
from rfdetr_core.data.collate import scale_for_step
from rfdetr_core.inference import postprocess
from rfdetr_core.models import build_model
from rfdetr_core.train_config import TrainConfig
from rfdetr_core.training.criterion import SetCriterion, build_weight_dict
from rfdetr_core.training.optim import build_scheduler, param_groups

logger = logging.getLogger(__name__)

Batch = tuple[NestedTensor, list[dict[str, Tensor]]]


def build_network(model_config: ModelConfig) -> nn.Module:
    """A fresh network, with ``pretrain_weights`` loaded when the config names a file."""
    network = build_model(model_config)
    if model_config.pretrain_weights:
        ckpt = ckpt_io.load_checkpoint(model_config.pretrain_weights)
        ckpt_io.load_weights(network, ckpt, source=str(model_config.pretrain_weights))
    return network


def per_batch_multi_scale(train_config: TrainConfig) -> bool:
    """Whether each training batch is rescaled to a random size (the reference's default)."""
    return train_config.multi_scale in (True, "per-batch")


class RFDETRModule(pl.LightningModule):
    """Training / validation / test / predict steps and the optimiser of one RF-DETR model.

    ``model`` lets a caller train an existing network (``RFDETR.train`` passes its own so the
    trained weights are the ones ``predict()`` uses afterwards); without it the network is built
    from ``model_config`` (loading ``pretrain_weights`` if set).
    """

    def __init__(
        self, model_config: ModelConfig, train_config: TrainConfig, model: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.model_config = model_config
        self.train_config = train_config
        self.model = model if model is not None else build_network(model_config)
        weights = build_weight_dict(model_config.dec_layers, model_config.two_stage)
        if train_config.cls_loss_coef != 1.0:
            weights = {
                k: v * train_config.cls_loss_coef if k.startswith("loss_ce") else v
                for k, v in weights.items()
            }
        self.criterion = SetCriterion(weight_dict=weights, group_detr=model_config.group_detr)
        self.class_names: list[str] | None = train_config.class_names
        self._sizes = multi_scale_sizes(
            model_config.resolution, model_config.block_size, train_config.expanded_scales
        )

    @property
    def ema_model(self) -> nn.Module | None:
        """The EMA copy attached by the EMA callback; validation also scores it when present."""
        return self.__dict__.get("_ema_model")

    def attach_ema(self, network: nn.Module | None) -> None:
        """Attach the EMA copy *without* registering it as a submodule: it must not enter this
        module's ``state_dict`` (the EMA callback checkpoints it itself) nor follow ``train()``."""
        self.__dict__["_ema_model"] = network

    # -- lifecycle -----------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        """Seed here (not in ``build_trainer``) so only an actual fit touches the global RNGs."""
        if self.train_config.seed is not None:
            pl.seed_everything(self.train_config.seed, workers=True, verbose=False)

    def on_train_epoch_start(self) -> None:
        """Lightning keeps a module's mode; a network handed over by ``RFDETR`` arrives in eval mode."""
        self.model.train()

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        samples, targets = batch
        moved = [{k: v.to(device) if isinstance(v, Tensor) else v for k, v in t.items()} for t in targets]
        return samples.to(device), moved

    # -- steps ---------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        samples, targets = batch
        if per_batch_multi_scale(self.train_config):
            samples = resize_batch(samples, scale_for_step(self._sizes, self.trainer.global_step))
        outputs = self.model(samples.tensors)
        losses = self.criterion(outputs, targets)
        loss = self.criterion.total(losses)
        size = len(targets)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        for key in ("loss_ce", "loss_bbox", "loss_giou", "class_error"):
            if key in losses:
                self.log(f"train/{key}", losses[key].detach(), on_step=False, on_epoch=True, batch_size=size)
        return loss

    def _detect(
        self, network: nn.Module, samples: NestedTensor, targets: list[dict[str, Tensor]]
    ) -> list[dict]:
        outputs = network(samples.tensors)
        sizes = torch.stack([t["orig_size"] for t in targets]).to(samples.tensors.device)
        return postprocess(outputs, sizes, self.model_config.num_select)

    def _eval_step(self, batch: Batch) -> dict[str, Any]:
        samples, targets = batch
        out: dict[str, Any] = {"results": self._detect(self.model, samples, targets), "targets": targets}
        if self.ema_model is not None:
            out["ema_results"] = self._detect(self.ema_model, samples, targets)
        return out

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        return self._eval_step(batch)

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        return self._eval_step(batch)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        samples, targets = batch
        return self._detect(self.model, samples, targets)

    # -- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        tc, mc = self.train_config, self.model_config
        if tc.optimizer.lower() != "adamw":
            raise ValueError(f"optimizer={tc.optimizer!r} is not supported; rfdetr_core trains with 'adamw'.")
        groups = param_groups(
            self.model,
            lr=tc.lr,
            lr_encoder=tc.lr_encoder,
            weight_decay=tc.weight_decay,
            lr_vit_layer_decay=tc.lr_vit_layer_decay,
            lr_component_decay=tc.lr_component_decay,
            num_vit_layers=mc.out_feature_indexes[-1] + 1,
        )
        optimizer = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = build_scheduler(
            optimizer,
            total_steps=total,
            epochs=tc.epochs,
            warmup_epochs=tc.warmup_epochs,
            kind=tc.lr_scheduler,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint_args(self) -> dict[str, Any]:
        """``args`` in the official checkpoint format: architecture fields plus the class names."""
        args = self.model_config.model_dump()
        args["class_names"] = self.class_names
        args["notes"] = self.train_config.notes
        return args

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make a Lightning ``.ckpt`` self-describing (our ``from_checkpoint`` reads ``args``)."""
        checkpoint["args"] = self.checkpoint_args()
        checkpoint["model_name"] = self.model_config.model_name
        checkpoint["model_config"] = self.model_config.model_dump(mode="json")
        checkpoint["train_config"] = self.train_config.model_dump(mode="json")
