"""``run_training(model, **kwargs)``: what ``RFDETR.train(**kwargs)`` does.

Order matters and follows the RF-DETR API: arguments are checked (unknown names, resolution,
device), the dataset is opened and validated *before* any model work so a broken dataset fails in
a second with a clear message, the class count is aligned with the dataset (unless the user pinned
``num_classes``), then Lightning fits the model's own network in place. Afterwards the trained
weights and class names are on ``model`` (``predict()`` / ``export()`` work at once) and
``training_config.json`` records the run.

Receiving progress and stopping: pass Lightning callbacks with ``callbacks=[...]``, e.g.
:class:`~rfdetr_core.training.callbacks.progress.TrainingProgress` (documented there), whose
``request_stop()`` ends the run cleanly from another thread.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from pytorch_lightning.callbacks import Callback

from rfdetr_core.data import DatasetError, detect_num_classes, load_class_names, validate_dataset
from rfdetr_core.training.callbacks import StopRequested
from rfdetr_core.training.datamodule import RFDETRDataModule
from rfdetr_core.training.module import RFDETRModule
from rfdetr_core.training.trainer import build_trainer

if TYPE_CHECKING:
    from rfdetr_core.detr import RFDETR

logger = logging.getLogger(__name__)


def resolve_device(device: Any) -> tuple[str | None, list[int] | None]:
    """``"cpu"`` / ``"cuda[:N]"`` / ``"mps[:N]"`` / ``torch.device`` -> Lightning ``(accelerator, devices)``."""
    if device is None:
        return None, None
    try:
        resolved = torch.device(device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"Invalid device specifier for train(): {device!r}. "
            "Expected values like 'cpu', 'cuda', 'cuda:0', or torch.device(...)."
        ) from exc
    index = [resolved.index] if resolved.index is not None else None
    if resolved.type == "cpu":
        return "cpu", None
    if resolved.type == "cuda":
        return "gpu", index
    if resolved.type == "mps":
        return "mps", index
    warnings.warn(
        f"Device type {resolved.type!r} has no Lightning accelerator mapping; using auto-detection.",
        UserWarning,
        stacklevel=3,
    )
    return None, None


def apply_resolution(model: RFDETR, resolution: Any) -> None:
    """Validate a new training resolution and apply it (with the positional-encoding rule) in place.

    The position grid follows the resolution only when the variant derives it from the resolution
    (``pe == resolution // patch_size``); a pretrained-specific grid (Base: 37) is kept, because
    changing it would break loading its checkpoint.
    """
    if isinstance(resolution, bool):
        raise ValueError("resolution must be a positive integer")
    try:
        resolution = operator.index(resolution)
    except TypeError as exc:
        raise ValueError("resolution must be a positive integer") from exc
    if resolution <= 0:
        raise ValueError("resolution must be a positive integer")
    mc = model.model_config
    block = mc.patch_size * mc.num_windows
    if resolution % block:
        raise ValueError(
            f"resolution={resolution} is not divisible by patch_size ({mc.patch_size}) * num_windows "
            f"({mc.num_windows}) = {block}. Choose a resolution that is a multiple of {block}."
        )
    if mc.positional_encoding_size == mc.resolution // mc.patch_size:
        mc.positional_encoding_size = resolution // mc.patch_size
        _resample_position_grid(model.model.model, mc.positional_encoding_size)
    mc.resolution = resolution
    model.model.resolution = resolution
    model.model.args.resolution = resolution
    model.model.args.positional_encoding_size = mc.positional_encoding_size


def _resample_position_grid(network: torch.nn.Module, grid: int) -> None:
    """Give the backbone a ``grid x grid`` position table, as a network built at the new resolution has,
    so checkpoints written after training match their ``args`` (and load in the reference)."""
    from rfdetr_core.checkpoint import _fit_position_embeddings

    for name, param in list(network.named_parameters()):
        if name.endswith("embeddings.position_embeddings") and param.shape[1] != grid * grid + 1:
            state = {name: param.detach()}
            _fit_position_embeddings(state, {name: param.new_empty(1, grid * grid + 1, param.shape[2])})
            owner = network.get_submodule(name.rsplit(".", 1)[0])
            owner.position_embeddings = torch.nn.Parameter(state[name].contiguous())


def align_num_classes(model: RFDETR, dataset_dir: str) -> None:
    """Give the model as many classes as the dataset, unless the user set ``num_classes`` explicitly."""
    wanted = detect_num_classes(dataset_dir)
    mc = model.model_config
    if wanted == mc.num_classes:
        return
    if "num_classes" in mc.model_fields_set:
        logger.warning(
            "Dataset '%s' has %d classes but model was initialized with num_classes=%d. Using the model's "
            "configured value (%d). If this is unintentional, reinitialize the model with num_classes=%d.",
            dataset_dir,
            wanted,
            mc.num_classes,
            mc.num_classes,
            wanted,
        )
        return
    logger.info("Dataset has %d classes: resizing the class head from %d.", wanted, mc.num_classes)
    network = model.model.model
    network.reinitialize_detection_head(wanted + 1)
    mc.num_classes = wanted
    mc.model_fields_set.discard("num_classes")
    model.model.args.num_classes = wanted


def _split_callbacks(value: Any) -> list[Callback]:
    """Lightning callbacks pass through; the legacy ``{"on_fit_epoch_end": [...]}`` dict is dropped."""
    if value is None:
        return []
    if isinstance(value, dict):
        if any(value.values()):
            warnings.warn(
                "A callbacks dict is not supported; pass Lightning Callback objects "
                "(e.g. rfdetr_core.training.callbacks.TrainingProgress) in a list instead.",
                DeprecationWarning,
                stacklevel=3,
            )
        return []
    items = list(value) if isinstance(value, Sequence) else [value]
    bad = [type(c).__name__ for c in items if not isinstance(c, Callback)]
    if bad:
        raise TypeError(f"callbacks must be pytorch_lightning Callback objects, got {', '.join(bad)}")
    return items


def _pop_deprecated(kwargs: dict[str, Any]) -> None:
    for name, note in (
        ("start_epoch", "resume from a checkpoint with `resume`"),
        ("do_benchmark", "benchmarking is not part of train()"),
    ):
        if name in kwargs:
            kwargs.pop(name)
            warnings.warn(f"`{name}` is deprecated and ignored; {note}.", DeprecationWarning, stacklevel=3)


def check_dataset(dataset_dir: str | None, run_test: bool) -> list[str]:
    """Fail before training, with a readable message, on a missing or broken dataset; return class names."""
    if not dataset_dir:
        raise ValueError("train() needs dataset_dir: a COCO (Roboflow layout) or YOLO dataset folder.")
    if not os.path.isdir(dataset_dir):
        raise DatasetError(f"Dataset folder not found: {dataset_dir}")
    splits = ("train", "val", "test") if run_test else ("train", "val")
    class_map = validate_dataset(dataset_dir, splits)
    if len(class_map) == 0:
        raise DatasetError(f"The dataset {dataset_dir} declares no classes to train on.")
    return load_class_names(dataset_dir)


def write_training_config(model: RFDETR, config: Any) -> None:
    out = {
        "train_config": config.model_dump(mode="json"),
        "model_config": model.model_config.model_dump(mode="json"),
        "model_config_type": type(model.model_config).__name__,
        "class_names": model.model.class_names,
        "num_classes": len(model.model.class_names) if model.model.class_names else 0,
    }
    try:
        os.makedirs(config.output_dir, exist_ok=True)
        with open(os.path.join(config.output_dir, "training_config.json"), "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2, default=str)
    except OSError as exc:
        logger.warning("Could not save training_config.json to %s: %s", config.output_dir, exc)


def _fit(trainer: Any, module: RFDETRModule, datamodule: RFDETRDataModule, config: Any) -> None:
    """Fit (then test when asked); a stop request ends fit at once and is not an error."""
    try:
        trainer.fit(module, datamodule, ckpt_path=config.resume or None)
    except StopRequested:
        logger.info("Training stopped on request at step %d.", trainer.global_step)
        return
    if config.run_test and not trainer.interrupted:
        trainer.test(module, datamodule=datamodule, verbose=False)


def run_training(model: RFDETR, **kwargs: Any) -> None:
    """Fine-tune ``model`` in place; see :meth:`rfdetr_core.RFDETR.train` for the arguments."""
    extra_callbacks = _split_callbacks(kwargs.pop("callbacks", None))
    accelerator, devices = resolve_device(kwargs.pop("device", None))
    _pop_deprecated(kwargs)
    resolution = kwargs.pop("resolution", None)
    config = model.get_train_config(**kwargs)  # unknown or invalid arguments fail here
    if config.batch_size == "auto":
        config.batch_size = 4 if torch.cuda.is_available() else 2
        logger.info("batch_size='auto' resolved to %d (no memory probing in rfdetr_core).", config.batch_size)
    dataset_names = check_dataset(config.dataset_dir, config.run_test)
    if resolution is not None:
        apply_resolution(model, resolution)
    model.model_config.model_name = type(model).__name__
    align_num_classes(model, config.dataset_dir)
    class_names = list(config.class_names) if config.class_names is not None else dataset_names
    model.remove_optimized_model()  # a traced copy of the old weights would silently shadow the new ones

    module = RFDETRModule(model.model_config, config, model=model.model.model)
    module.class_names = class_names
    datamodule = RFDETRDataModule(model.model_config, config)
    trainer = build_trainer(
        config,
        model.model_config,
        accelerator=accelerator,
        devices=devices,
        callbacks=extra_callbacks,
        class_names=class_names,
    )
    try:
        _fit(trainer, module, datamodule, config)
    finally:
        network = module.model.to(model.model.device).eval()
        model.model.model = network
        model.model.class_names = class_names
        model.model.args.class_names = class_names
        model.model.args.num_classes = model.model_config.num_classes
    if trainer.is_global_zero:
        write_training_config(model, config)
