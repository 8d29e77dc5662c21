"""``build_trainer``: a Lightning ``Trainer`` with RF-DETR's callbacks, loggers and loop settings.

Files a run writes into ``output_dir``:

- ``last.ckpt`` after every epoch (resume from it with ``resume=``) and ``checkpoint_<epoch>.ckpt``
  every ``checkpoint_interval`` epochs -- full Lightning state (optimizer, scheduler, EMA, counters);
- ``checkpoint_best_regular.pth`` / ``checkpoint_best_ema.pth`` / ``checkpoint_best_total.pth`` --
  official-format weights (see :mod:`~rfdetr_core.training.callbacks.best_model`);
- ``metrics.csv`` always (kept across resumes), TensorBoard event files when ``tensorboard`` is
  installed and enabled.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from rfdetr_core.config import ModelConfig
from rfdetr_core.train_config import TrainConfig
from rfdetr_core.training.callbacks import (
    BestModelCallback,
    COCOEvalCallback,
    DropPathCallback,
    EMACallback,
    RFDETREarlyStopping,
)

logger = logging.getLogger(__name__)


def resolve_precision(train_config: TrainConfig, model_config: ModelConfig, accelerator: str | None) -> str:
    """Mixed precision only where it pays: bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU."""
    if train_config.amp_dtype is None or not model_config.amp:
        return "32-true"
    wants_gpu = (accelerator or "auto") in ("auto", "gpu", "cuda")
    if not (wants_gpu and torch.cuda.is_available()):
        return "32-true"
    if train_config.amp_dtype == "fp16":
        return "16-mixed"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _keep_csv_history(csv_logger: CSVLogger, output_dir: str) -> None:
    """Lightning's CSV writer empties ``metrics.csv`` when it opens; a resumed run must append instead."""
    path = Path(output_dir) / "metrics.csv"
    if not path.is_file():
        return
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns, rows = list(reader.fieldnames or []), list(reader)
    experiment = csv_logger.experiment  # this is where the file gets removed
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    experiment.metrics_keys = columns


def build_loggers(train_config: TrainConfig) -> list[Any]:
    """CSV always; TensorBoard when enabled and importable."""
    out_dir = train_config.output_dir
    csv_logger = CSVLogger(save_dir=out_dir, name="", version="")
    if train_config.resume:
        _keep_csv_history(csv_logger, out_dir)
    loggers: list[Any] = [csv_logger]
    if train_config.tensorboard:
        try:
            import tensorboard  # noqa: F401  (TensorBoardLogger falls back silently without it)
            from pytorch_lightning.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(save_dir=out_dir, name="", version=""))
        except ImportError:
            logger.info("TensorBoard is not installed; logging metrics to metrics.csv only.")
    return loggers


def training_callbacks(train_config: TrainConfig, *, metric: str = "mAP_50_95") -> list[Callback]:
    """EMA, drop path, checkpoints, best model and early stopping, as ``train_config`` asks."""
    tc = train_config
    callbacks: list[Callback] = []
    if tc.use_ema:
        callbacks.append(EMACallback(tc.ema_decay, tc.ema_tau, tc.ema_update_interval))
    if tc.drop_path > 0:
        callbacks.append(DropPathCallback(tc.drop_path))
    if not tc.dont_save_weights:
        callbacks.append(
            ModelCheckpoint(
                dirpath=tc.output_dir,
                filename="last",
                every_n_epochs=1,
                save_top_k=1,
                save_on_train_epoch_end=True,
                enable_version_counter=False,
            )
        )
        callbacks.append(
            ModelCheckpoint(
                dirpath=tc.output_dir,
                filename="checkpoint_{epoch}",
                every_n_epochs=tc.checkpoint_interval,
                save_top_k=-1,
                save_on_train_epoch_end=True,
                enable_version_counter=False,
                auto_insert_metric_name=False,
            )
        )
    monitor, monitor_ema = f"val/{metric}", f"val/ema_{metric}"
    callbacks.append(
        BestModelCallback(
            tc.output_dir,
            monitor=monitor,
            monitor_ema=monitor_ema if tc.use_ema else None,
            skip_best_epochs=tc.skip_best_epochs,
            save=not tc.dont_save_weights,
        )
    )
    if tc.early_stopping:
        callbacks.append(
            RFDETREarlyStopping(
                tc.early_stopping_patience,
                tc.early_stopping_min_delta,
                tc.early_stopping_use_ema,
                monitor,
                monitor_ema,
                tc.skip_best_epochs,
            )
        )
    return callbacks


def build_trainer(
    train_config: TrainConfig,
    model_config: ModelConfig,
    *,
    accelerator: str | None = None,
    devices: Sequence[int] | int | str | None = None,
    callbacks: Sequence[Callback] = (),
    class_names: list[str] | None = None,
    include_training_callbacks: bool = True,
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """A ``Trainer`` for ``train_config``; ``callbacks`` (e.g. a studio progress hook) run after ours.

    ``trainer_kwargs`` are passed to ``pl.Trainer`` and win over the values derived here.
    """
    tc = train_config
    accelerator = accelerator or (tc.accelerator if tc.accelerator != "auto" else "auto")
    metric = "mAR" if tc.best_model_metric == "mar" else "mAP_50_95"
    all_callbacks: list[Callback] = [COCOEvalCallback(class_names or tc.class_names)]
    loggers: list[Any] | bool = False
    if include_training_callbacks:
        all_callbacks += training_callbacks(tc, metric=metric)
        loggers = build_loggers(tc)
    all_callbacks += list(callbacks)
    if tc.progress_bar == "rich":
        from pytorch_lightning.callbacks import RichProgressBar

        all_callbacks.append(RichProgressBar())
    kwargs: dict[str, Any] = {
        "accelerator": accelerator,
        "devices": devices if devices is not None else tc.devices,
        "max_epochs": tc.epochs,
        "precision": resolve_precision(tc, model_config, accelerator),
        "accumulate_grad_batches": tc.grad_accum_steps,
        "gradient_clip_val": tc.clip_max_norm if tc.clip_max_norm > 0 else None,
        "check_val_every_n_epoch": max(1, tc.eval_interval),
        "num_sanity_val_steps": tc.num_sanity_val_steps,
        "callbacks": all_callbacks,
        "logger": loggers,
        "log_every_n_steps": 10,
        "enable_progress_bar": tc.progress_bar is not None,
        "enable_model_summary": False,
        "enable_checkpointing": include_training_callbacks and not tc.dont_save_weights,
        "default_root_dir": tc.output_dir,
    }
    kwargs.update(trainer_kwargs)
    return pl.Trainer(**kwargs)
