"""The ``RFDETR`` façade: build or load a model, predict, optimise, save.

Kept thin on purpose: weights resolution lives in :mod:`rfdetr_core.weights`, checkpoint I/O in
:mod:`rfdetr_core.checkpoint`, image handling in :mod:`rfdetr_core.inference`, the network in
:mod:`rfdetr_core.models`, and variant inference in :mod:`rfdetr_core.variants`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from itertools import cycle, islice
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from rfdetr_core import checkpoint as ckpt_io
from rfdetr_core import inference
from rfdetr_core.coco_classes import COCO_CLASS_NAMES
from rfdetr_core.config import ModelConfig
from rfdetr_core.train_config import TrainConfig
from rfdetr_core.weights import resolve_pretrain_weights

logger = logging.getLogger(__name__)


class RFDETR:
    """An RF-DETR detector. Use a variant (``RFDETRNano`` …) or :meth:`from_checkpoint`.

    Keyword arguments are :class:`~rfdetr_core.config.ModelConfig` fields (``num_classes``,
    ``resolution``, ``pretrain_weights`` …) plus ``trust_checkpoint`` (allow a full-pickle load of
    a checkpoint that the safe loader refuses; only for files you trust).
    """

    means = [0.485, 0.456, 0.406]
    stds = [0.229, 0.224, 0.225]
    size: str | None = None
    _model_config_class: type[ModelConfig] = ModelConfig
    _train_config_class: type[TrainConfig] = TrainConfig

    def __init__(self, **kwargs: Any) -> None:
        trust = bool(kwargs.pop("trust_checkpoint", False))
        preloaded: ckpt_io.Checkpoint | None = kwargs.pop("_checkpoint", None)
        self.model_config = self.get_model_config(**kwargs)
        self.maybe_download_pretrain_weights()
        self.model = self._build_context(preloaded, trust=trust)
        channels = self.model_config.num_channels
        if channels != 3:  # repeat the RGB statistics for other channel counts
            self.means = list(islice(cycle(self.means), channels))
            self.stds = list(islice(cycle(self.stds), channels))
        self._is_optimized_for_inference = False
        self._has_warned_about_not_being_optimized_for_inference = False
        self._optimized_has_been_compiled = False
        self._optimized_batch_size: int | None = None
        self._optimized_resolution: int | None = None
        self._optimized_dtype: torch.dtype | None = None

    # ----------------------------------------------------------------- construction
    def get_model_config(self, **kwargs: Any) -> ModelConfig:
        """The architecture configuration for this variant with the caller's overrides."""
        return self._model_config_class(**kwargs)

    def get_train_config(self, **kwargs: Any) -> TrainConfig:
        """The training configuration :meth:`train` would use for these keyword arguments."""
        return self._train_config_class(**kwargs)

    def maybe_download_pretrain_weights(self) -> None:
        """Resolve ``pretrain_weights`` to a local file, downloading official weights if needed.

        A bare file name means the cache directory (``$RF_HOME``, default ``~/.roboflow/models``).
        """
        if self.model_config.pretrain_weights is None:
            return
        path = resolve_pretrain_weights(self.model_config.pretrain_weights)
        self.model_config.pretrain_weights = str(path)

    def get_model(self, config: ModelConfig) -> nn.Module:
        """Build the (randomly initialised) network for *config*."""
        from rfdetr_core.models import build_model

        return build_model(config)

    def _build_context(self, preloaded: ckpt_io.Checkpoint | None, *, trust: bool) -> inference.ModelContext:
        config = self.model_config
        ckpt = preloaded
        if ckpt is None and config.pretrain_weights is not None:
            ckpt = ckpt_io.load_checkpoint(config.pretrain_weights, trust=trust)
        if (
            ckpt is not None
            and ckpt.head_classes is not None
            and "num_classes" not in config.model_fields_set
        ):
            if ckpt.head_classes != config.num_classes:
                config.num_classes = ckpt.head_classes  # the checkpoint is authoritative unless pinned
                config.model_fields_set.discard("num_classes")
        network = self.get_model(config)
        if ckpt is not None:
            ckpt_io.load_weights(network, ckpt, source=str(config.pretrain_weights))
        device = torch.device(config.device)
        network.to(device).eval()
        class_names = (ckpt.class_names if ckpt is not None else []) or None
        return inference.ModelContext(
            model=network,
            device=device,
            resolution=config.resolution,
            args=SimpleNamespace(**config.model_dump(), class_names=class_names),
            class_names=class_names,
            num_select=config.num_select,
        )

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], **kwargs: Any) -> RFDETR:
        """Load a checkpoint, inferring the variant from ``model_name``, ``args.pretrain_weights``
        or the file name (in that order); class names and class count come from the checkpoint.

        Pass ``num_classes=N`` to pin the head size (a different saved head is re-initialised),
        and ``trust_checkpoint=True`` only for files you trust (full-pickle fallback).
        """
        from rfdetr_core.variants import infer_variant

        ckpt = ckpt_io.load_checkpoint(path, trust=bool(kwargs.get("trust_checkpoint", False)))
        variant = infer_variant(ckpt, path, default=None if cls is RFDETR else cls)
        args_classes = ckpt.args.get("num_classes")
        pinned = "num_classes" in kwargs
        if not pinned and isinstance(args_classes, int) and ckpt.head_classes in (None, args_classes):
            kwargs["num_classes"] = args_classes
        kwargs.update(_saved_architecture(ckpt, variant, given=kwargs))
        kwargs["pretrain_weights"] = os.fspath(path)
        model = variant(**kwargs, _checkpoint=ckpt)
        if not pinned:  # checkpoint-derived, so train() may still adapt the head to a dataset
            model.model_config.model_fields_set.discard("num_classes")
        return model

    # ----------------------------------------------------------------- properties
    @property
    def class_names(self) -> list[str]:
        """Class names, 0-indexed; the 80 COCO names when the checkpoint carries none."""
        names = getattr(self.model, "class_names", None)
        return list(names) if names is not None else list(COCO_CLASS_NAMES)

    # ----------------------------------------------------------------- inference
    @torch.inference_mode()
    def predict(
        self,
        images: inference.ImageInput | list[inference.ImageInput],
        threshold: float = 0.5,
        shape: tuple[int, int] | None = None,
        patch_size: int | None = None,
        include_source_image: bool = True,
        **kwargs: Any,
    ):
        """Detect objects in one image or a list (paths, URLs, PIL, HWC numpy, CHW tensors in [0, 1]).

        Returns one ``supervision.Detections`` per image (a single one for a single input) with
        ``data["class_name"]``, ``data["source_shape"]`` and, unless ``include_source_image=False``,
        ``metadata["source_image"]``. ``shape=(h, w)`` overrides the model resolution; both must be
        multiples of ``patch_size * num_windows``.
        """
        cfg = self.model_config
        size = self._input_size(shape, patch_size)
        self._warn_once_if_not_optimized()
        batch_in = images if isinstance(images, list) else [images]
        loaded = [
            inference.load_image(img, num_channels=cfg.num_channels, keep_source=include_source_image)
            for img in batch_in
        ]
        batch = inference.preprocess(loaded, size, self.means, self.stds, self.model.device)
        outputs = self._forward(batch)
        sizes = torch.tensor([tuple(img.pixels.shape[1:]) for img in loaded], device=batch.device)
        results = self.model.postprocess(outputs, sizes)
        num_classes = getattr(self.model.args, "num_classes", len(self.class_names))
        names, coco_ids = inference.class_name_table(self.class_names, num_classes)
        detections = [
            inference.to_detections(
                res,
                threshold=threshold,
                source_shape=tuple(img.pixels.shape[1:]),
                names=names,
                num_classes=num_classes,
                coco_ids=coco_ids,
                source=img.source,
            )
            for res, img in zip(results, loaded, strict=True)
        ]
        return detections if len(detections) > 1 else detections[0]

    def _input_size(self, shape: tuple[int, int] | None, patch_size: int | None) -> tuple[int, int]:
        """``(h, w)`` the network runs at: *shape* if given and valid, else the model's resolution."""
        cfg = self.model_config
        patch = inference.resolve_patch_size(patch_size, cfg.patch_size)
        block = patch * cfg.num_windows
        if shape is not None:
            return inference.validate_shape(shape, block, patch, cfg.num_windows)
        if self.model.resolution % block:
            raise ValueError(
                f"Model's default resolution ({self.model.resolution}) is not divisible by block_size={block} "
                f"(patch_size={patch} * num_windows={cfg.num_windows}). Provide an explicit shape."
            )
        return (self.model.resolution, self.model.resolution)

    def _warn_once_if_not_optimized(self) -> None:
        if self._is_optimized_for_inference or self._has_warned_about_not_being_optimized_for_inference:
            return
        logger.warning(
            "Model is not optimized for inference. Latency may be higher than expected. "
            "You can optimize the model for inference by calling model.optimize_for_inference()."
        )
        self._has_warned_about_not_being_optimized_for_inference = True

    def _forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self._is_optimized_for_inference:
            return self.model.model(batch)
        if self._optimized_resolution != batch.shape[2] or self._optimized_resolution != batch.shape[3]:
            raise ValueError(
                f"Resolution mismatch. Model was optimized for resolution {self._optimized_resolution}x"
                f"{self._optimized_resolution}, but got {batch.shape[2]}x{batch.shape[3]}. You can explicitly "
                f"remove the optimized model by calling model.remove_optimized_model()."
            )
        if self._optimized_has_been_compiled and self._optimized_batch_size != batch.shape[0]:
            raise ValueError(
                f"Batch size mismatch. Optimized model was compiled for batch size {self._optimized_batch_size}, "
                f"but got {batch.shape[0]}. You can explicitly remove the optimized model by calling "
                f"model.remove_optimized_model(). Alternatively, you can recompile the optimized model for a "
                f"different batch size by calling model.optimize_for_inference(batch_size=<new_batch_size>)."
            )
        boxes, logits = self.model.inference_model(batch.to(dtype=self._optimized_dtype))
        return {"pred_logits": logits, "pred_boxes": boxes}

    def optimize_for_inference(
        self, compile: bool = True, batch_size: int = 1, dtype: torch.dtype | str = torch.float32
    ) -> None:
        """Make a frozen inference copy of the network (cast to *dtype*; traced and frozen with
        TorchScript when *compile*, which fixes the batch size and the square resolution)."""
        if isinstance(dtype, str):
            resolved = getattr(torch, dtype, None)
            if not isinstance(resolved, torch.dtype):
                raise TypeError(f"dtype must be a torch.dtype or a string name of a dtype, got {dtype!r}")
            dtype = resolved
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype or a string name of a dtype, got {type(dtype)!r}")
        self.remove_optimized_model()
        device = self.model.device
        try:
            with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
                frozen = _TupleOutputs(copy.deepcopy(self.model.model)).eval().to(dtype=dtype)
                if compile:
                    example = torch.randn(
                        batch_size,
                        self.model_config.num_channels,
                        self.model.resolution,
                        self.model.resolution,
                        device=device,
                        dtype=dtype,
                    )
                    with torch.inference_mode(False), torch.no_grad():
                        frozen = torch.jit.freeze(torch.jit.trace(frozen, example, check_trace=False))
                    self._optimized_has_been_compiled = True
                    self._optimized_batch_size = batch_size
                self.model.inference_model = frozen
                self._optimized_resolution = self.model.resolution
                self._optimized_dtype = dtype
                self._is_optimized_for_inference = True
        except Exception:
            self.remove_optimized_model()
            raise

    def remove_optimized_model(self) -> None:
        """Drop the optimised copy and reset every optimisation flag (safe to call any time)."""
        self.model.inference_model = None
        self._is_optimized_for_inference = False
        self._optimized_has_been_compiled = False
        self._optimized_batch_size = None
        self._optimized_resolution = None
        self._optimized_dtype = None

    # ----------------------------------------------------------------- persistence
    def checkpoint_args(self) -> dict[str, Any]:
        """The ``args`` we store: every config field plus the class names (reference-readable)."""
        args = self.model_config.model_dump()
        args["class_names"] = self.class_names if self.model.class_names is not None else None
        return args

    def save_checkpoint(self, path: str | os.PathLike[str], **extra: Any) -> None:
        """Write weights + args + ``model_name`` in the official format (loads in the reference)."""
        ckpt_io.save_checkpoint(
            path,
            state=self.model.model.state_dict(),
            args=self.checkpoint_args(),
            model_name=type(self).__name__,
            extra=extra,
        )

    def export(
        self,
        output_dir: str | os.PathLike[str] = "output",
        infer_dir: str | None = None,
        backbone_only: bool = False,
        opset_version: int = 17,
        verbose: bool = True,
        shape: tuple[int, int] | None = None,
        batch_size: int = 1,
        dynamic_batch: bool = False,
        patch_size: int | None = None,
        format: str = "onnx",
        quantization: str | None = None,
        calibration_data: Any = None,
        max_images: int = 100,
        *,
        notes: Any = None,
        verify: bool = True,
        validation: Any = None,
        strict: bool = True,
    ) -> Any:
        """Export to ONNX or TFLite and verify the artefact against this model (see rfdetr_core.export)."""
        from rfdetr_core.export import export_model

        return export_model(
            self,
            output_dir,
            format=format,
            infer_dir=infer_dir,
            backbone_only=backbone_only,
            opset_version=opset_version,
            shape=shape,
            batch_size=batch_size,
            dynamic_batch=dynamic_batch,
            patch_size=patch_size,
            quantization=quantization,
            calibration_data=calibration_data,
            max_images=max_images,
            notes=notes,
            verify=verify,
            validation=validation,
            strict=strict,
            progress=print if verbose else (lambda _msg: None),
        )

    def export_for_roboflow(self, output_dir: str | os.PathLike[str]) -> None:
        """Write ``weights.pt`` (with ``class_names`` embedded in ``args``) and ``class_names.txt``."""
        from rfdetr_core.export import export_for_roboflow

        export_for_roboflow(self, output_dir)

    def deploy_to_roboflow(
        self,
        workspace: str,
        project_id: str,
        version: int | str,
        api_key: str | None = None,
        size: str | None = None,
    ) -> None:
        """Upload the bundle to Roboflow (needs the ``roboflow`` SDK and an API key)."""
        from rfdetr_core.export import deploy_to_roboflow

        deploy_to_roboflow(self, workspace, project_id, version, api_key=api_key, size=size)

    def train(self, **kwargs: Any) -> None:
        """Fine-tune this model in place on ``dataset_dir`` (keywords: :class:`TrainConfig` fields plus
        ``resolution``, ``device``, ``callbacks``); see :func:`rfdetr_core.training.train_api.run_training`."""
        from rfdetr_core.training.train_api import run_training

        run_training(self, **kwargs)


#: Architecture fields a checkpoint may change from its variant's defaults (reduced or widened models).
_ARCHITECTURE_FIELDS = (
    "vit_encoder_num_layers",
    "out_feature_indexes",
    "dec_layers",
    "hidden_dim",
    "dim_feedforward",
    "num_queries",
    "group_detr",
    "sa_nheads",
    "ca_nheads",
    "dec_n_points",
    "projector_scale",
)


#: Saved ``model_config`` fields never restored: the file itself supplies the weights and the class count
#: is settled by ``from_checkpoint``; the device is the loading machine's.
_NOT_RESTORED = frozenset({"pretrain_weights", "num_classes", "device", "model_name"})


def _saved_architecture(
    ckpt: ckpt_io.Checkpoint, variant: type[RFDETR], given: dict[str, Any]
) -> dict[str, Any]:
    """The architecture fields where the checkpoint differs from ``variant``'s defaults.

    Counts the tensors pin down (layers, queries, widths) win over ``args``, which released
    checkpoints sometimes carry stale; the caller's own keywords win over both.
    """
    from rfdetr_core.models.args import facts_from_state_dict

    facts = facts_from_state_dict(ckpt.state)
    config_class = variant._model_config_class
    defaults = config_class()
    out: dict[str, Any] = {}
    for name in _ARCHITECTURE_FIELDS:
        value = facts.get(name, ckpt.args.get(name))
        if name in given or value is None:
            continue
        if value != getattr(defaults, name):
            out[name] = list(value) if isinstance(value, tuple) else value
    # The rest of the trained configuration (resolution, its positional grid, num_select ...) as the run
    # saved it, like the reference's from_checkpoint: a model fine-tuned at 64 px must predict at 64 px.
    saved = ckpt.extra.get("model_config") if isinstance(ckpt.extra, dict) else None
    if not saved:  # e.g. a Roboflow bundle (``model`` + ``args``): its args say the trained resolution
        resolution = ckpt.args.get("resolution")
        if isinstance(resolution, int) and "resolution" not in given and resolution != defaults.resolution:
            out["resolution"] = resolution
    for name, value in (saved or {}).items():
        if (
            name in out
            or name in given
            or name in _NOT_RESTORED
            or name not in config_class.model_fields
            or value is None
        ):
            continue
        if name == "positional_encoding_size" and "resolution" in given:
            continue  # a caller's resolution brings its own positional grid
        if value != getattr(defaults, name):
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


class _TupleOutputs(nn.Module):
    """Expose ``(pred_boxes, pred_logits)`` as a tuple — the traced/exported output convention."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.network(x)
        return out["pred_boxes"], out["pred_logits"]
