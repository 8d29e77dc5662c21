"""One optimiser step with our Lightning stack against one with the reference's (issue 20).

Same initial weights (one random Nano saved once, loaded by both as ``pretrain_weights``), same data
with nothing random in the pipeline (no augmentation, no scale jitter, no multi-scale), each side's
own data module, module and ``build_trainer``; one step; then every parameter's update must equal
the reference's. This is the training counterpart of the checkpoint-exact forward pass: it covers
the loss (matcher, criterion, group DETR, the two-stage encoder losses), the parameter groups and
their learning rates, gradient clipping and AdamW together. It caught the missing w/h clamp in
``cxcywh_to_xyxy``: queries at exactly [0, 0, 0, 0] changed the gradient norm that clipping scales
by, and so every update, by 3e-3 relative.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.support.training_fixtures import make_shapes_dataset

pytestmark = [pytest.mark.oracle, pytest.mark.slow]

RESOLUTION = 64
#: Both stacks run in float64 ("64-true"): in float32 an update is measured as ``after - before`` of a
#: float32 parameter, which rounds it to the parameter's ulp (1.2e-7 next to a LayerScale of 1.0, 1e-3
#: of a small update), so float32 could not hold even 1e-5 per element. In float64 the updates agree
#: to ~1e-13; 1e-8 leaves room for other BLAS builds and is still 1000x stricter than issue 20 asked.
PRECISION = "64-true"
RTOL = 1e-8
#: The ViT's key biases get an analytically zero gradient (softmax is invariant to shifting every key
#: by the same vector), so their "updates" are rounding noise (~1e-17) on both sides: an update norm
#: below this counts as no update, and ours must then be as small.
NO_UPDATE = 1e-12


class StepRecorder:
    """Callback state: the network's parameters before and after the first step, and its batch."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}
        self.images: torch.Tensor | None = None
        self.targets: list[dict[str, torch.Tensor]] = []


def _callback(record: StepRecorder):
    import pytorch_lightning as pl

    def snapshot(module) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.model.named_parameters()}

    class Recorder(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            record.before = snapshot(pl_module)
            samples, targets = batch
            dtype = next(pl_module.model.parameters()).dtype
            for target in targets:  # Lightning's "64-true" converts the network, not the targets
                target["boxes"] = target["boxes"].to(dtype)
            record.images = samples.tensors.detach().clone()
            record.targets = [{k: v.clone() for k, v in t.items()} for t in targets]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            record.after = snapshot(pl_module)
            trainer.should_stop = True

    return Recorder()


def _train_kwargs(data: Path, out: Path) -> dict[str, Any]:
    return dict(
        dataset_dir=str(data),
        output_dir=str(out),
        epochs=1,
        batch_size=2,
        num_workers=0,
        multi_scale=False,
        scale_jitter=False,
        aug_config={},
        use_ema=False,
        seed=0,
        lr=1e-3,
        lr_encoder=1.5e-3,
        warmup_epochs=0,
        tensorboard=False,
        eval_interval=10,
        dont_save_weights=True,
    )


def _step_ours(init: Path, arch: dict, kwargs: dict, **trainer_kwargs: Any) -> StepRecorder:
    from rfdetr_core import RFDETRNano
    from rfdetr_core.training.datamodule import RFDETRDataModule
    from rfdetr_core.training.module import RFDETRModule
    from rfdetr_core.training.trainer import build_trainer

    record = StepRecorder()
    model = RFDETRNano(**arch, pretrain_weights=str(init), resolution=RESOLUTION)
    tc = model.get_train_config(**kwargs)
    trainer = build_trainer(
        tc,
        model.model_config,
        accelerator="cpu",
        callbacks=[_callback(record)],
        logger=False,
        **trainer_kwargs,
    )
    trainer.fit(
        RFDETRModule(model.model_config, tc, model=model.model.model),
        RFDETRDataModule(model.model_config, tc),
    )
    return record


def _step_reference(init: Path, arch: dict, kwargs: dict, **trainer_kwargs: Any) -> StepRecorder:
    from rfdetr import RFDETRNano
    from rfdetr.training import RFDETRDataModule, RFDETRModelModule, build_trainer

    record = StepRecorder()
    model = RFDETRNano(**arch, pretrain_weights=str(init), resolution=RESOLUTION)
    tc = model.get_train_config(**kwargs)
    trainer = build_trainer(tc, model.model_config, accelerator="cpu", logger=False, **trainer_kwargs)
    trainer.callbacks.append(_callback(record))
    trainer.fit(RFDETRModelModule(model.model_config, tc), RFDETRDataModule(model.model_config, tc))
    return record


def _relative_update_errors(ours: StepRecorder, ref: StepRecorder) -> dict[str, float]:
    errors = {}
    for name, before in ref.before.items():
        ref_update = ref.after[name] - before
        our_update = ours.after[name] - ours.before[name]
        scale = float(ref_update.norm())
        if scale <= NO_UPDATE:  # no update on their side: none on ours either
            errors[name] = 0.0 if float(our_update.norm()) <= NO_UPDATE else float("inf")
        else:
            errors[name] = float((our_update - ref_update).norm()) / scale
    return errors


@pytest.mark.parametrize(
    "arch",
    [
        dict(num_classes=2, num_queries=20, group_detr=1),
        dict(num_classes=2, num_queries=20, group_detr=13),  # and two_stage (Nano's default): encoder losses
    ],
    ids=["one-group", "group-detr-13"],
)
def test_one_step_updates_every_parameter_like_the_reference(tmp_path: Path, arch: dict) -> None:
    from rfdetr_core import RFDETRNano

    data = make_shapes_dataset(tmp_path / "data", n=2, size=RESOLUTION, same_images=False)
    init = tmp_path / "init.pth"
    torch.manual_seed(0)
    RFDETRNano(**arch, pretrain_weights=None, resolution=RESOLUTION).save_checkpoint(init)
    ref = _step_reference(
        init, arch, _train_kwargs(data, tmp_path / "ref"), precision=PRECISION, limit_val_batches=0
    )
    ours = _step_ours(
        init, arch, _train_kwargs(data, tmp_path / "ours"), precision=PRECISION, limit_val_batches=0
    )

    torch.testing.assert_close(ours.images, ref.images, rtol=0, atol=0, check_dtype=False)
    for mine, theirs in zip(ours.targets, ref.targets, strict=True):
        for key in ("boxes", "labels"):
            torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=0, check_dtype=False)
    assert sorted(ours.before) == sorted(ref.before)
    for name, before in ref.before.items():
        torch.testing.assert_close(ours.before[name], before, rtol=0, atol=0, msg=name)
    errors = _relative_update_errors(ours, ref)
    moved = [n for n in ref.before if float((ref.after[n] - ref.before[n]).norm()) > NO_UPDATE]
    assert len(moved) > 0.9 * len(ref.before)  # a real step, not a no-op on both sides
    worst = sorted(errors.items(), key=lambda kv: -kv[1])[:5]
    assert worst[0][1] <= RTOL, worst


def _epoch_orders(datamodule, epochs: int) -> list[list[int]]:
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    torch.manual_seed(0)
    return [[int(t["image_id"]) for _, targets in loader for t in targets] for _ in range(epochs)]


def test_same_seed_same_batch_order_over_epochs(tmp_path: Path) -> None:
    """Without augmentation the pipelines draw no random numbers, so the samplers, which seed each
    epoch from the global torch RNG, give the reference's order in every epoch, not only the first."""
    from rfdetr import RFDETRNano as Reference
    from rfdetr.training import RFDETRDataModule as ReferenceDataModule

    from rfdetr_core import RFDETRNano
    from rfdetr_core.training.datamodule import RFDETRDataModule

    data = make_shapes_dataset(tmp_path / "data", n=6, size=RESOLUTION, same_images=False)
    kwargs = _train_kwargs(data, tmp_path / "out")
    arch = dict(num_classes=2, pretrain_weights=None, resolution=RESOLUTION)
    ours, ref = RFDETRNano(**arch), Reference(**arch)
    our_orders = _epoch_orders(RFDETRDataModule(ours.model_config, ours.get_train_config(**kwargs)), 3)
    ref_orders = _epoch_orders(ReferenceDataModule(ref.model_config, ref.get_train_config(**kwargs)), 3)
    assert our_orders == ref_orders
    assert len({tuple(order) for order in our_orders}) > 1  # the order does change between epochs
