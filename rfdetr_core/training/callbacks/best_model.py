"""Keep the best weights of a run in the official RF-DETR checkpoint format.

``checkpoint_best_regular.pth`` holds the live model of the best epoch by ``monitor`` (default
``val/mAP_50_95``), ``checkpoint_best_ema.pth`` the EMA model of the best epoch by
``monitor_ema``; both are ``{"model", "args", "epoch", "model_name", "model_config"}`` files that
load in our ``RFDETR.from_checkpoint`` and in the reference (whose ``from_checkpoint`` rebuilds a
non-default architecture -- fewer queries, another resolution -- from ``model_config``). At the end of fitting the overall winner (EMA
only if strictly better) is written as ``checkpoint_best_total.pth`` without the ``epoch`` key --
the file meant for deployment.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import pytorch_lightning as pl

from rfdetr_core import checkpoint as ckpt_io

logger = logging.getLogger(__name__)

REGULAR, EMA, TOTAL = "checkpoint_best_regular.pth", "checkpoint_best_ema.pth", "checkpoint_best_total.pth"


def _metric(trainer: pl.Trainer, key: str | None) -> float | None:
    value = trainer.callback_metrics.get(key) if key else None
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


class BestModelCallback(pl.Callback):
    """Write the best regular / EMA weights when the monitored metric improves (strictly)."""

    def __init__(
        self,
        output_dir: str,
        monitor: str = "val/mAP_50_95",
        monitor_ema: str | None = "val/ema_mAP_50_95",
        skip_best_epochs: int = 0,
        save: bool = True,
    ) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.monitor, self.monitor_ema = monitor, monitor_ema
        self.skip_best_epochs = skip_best_epochs
        self.save = save
        self.best: dict[str, float] = {}
        self.best_epoch: dict[str, int] = {}

    def _write(self, pl_module: pl.LightningModule, name: str, state: dict, epoch: int | None) -> None:
        extra: dict[str, Any] = {"model_config": pl_module.model_config.model_dump(mode="json")}
        if epoch is not None:
            extra["epoch"] = epoch
        notes = getattr(pl_module.train_config, "notes", None)
        if notes is not None:
            extra["notes"] = notes
        ckpt_io.save_checkpoint(
            os.path.join(self.output_dir, name),
            state=state,
            args=pl_module.checkpoint_args(),
            model_name=pl_module.model_config.model_name,
            extra=extra,
        )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch < self.skip_best_epochs:
            return
        tracks = [("regular", self.monitor, pl_module.model)]
        if getattr(pl_module, "ema_model", None) is not None:
            tracks.append(("ema", self.monitor_ema, pl_module.ema_model))
        for track, key, network in tracks:
            value = _metric(trainer, key)
            if value is None or value <= self.best.get(track, -math.inf):
                continue
            self.best[track], self.best_epoch[track] = value, trainer.current_epoch
            if self.save and trainer.is_global_zero:
                self._write(
                    pl_module,
                    REGULAR if track == "regular" else EMA,
                    network.state_dict(),
                    trainer.current_epoch,
                )
            logger.info("New best %s model: %s=%.4f at epoch %d", track, key, value, trainer.current_epoch)

    def winner(self) -> str | None:
        """``"ema"`` when the EMA model's best is strictly higher, else ``"regular"`` (None if nothing scored)."""
        if not self.best:
            return None
        return "ema" if self.best.get("ema", -math.inf) > self.best.get("regular", -math.inf) else "regular"

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        winner = self.winner()
        if winner is None or not self.save or not trainer.is_global_zero:
            return
        source = os.path.join(self.output_dir, EMA if winner == "ema" else REGULAR)
        ckpt = ckpt_io.load_checkpoint(source)
        keep = {k: v for k, v in ckpt.extra.items() if k in ("model_config", "notes")}
        ckpt_io.save_checkpoint(
            os.path.join(self.output_dir, TOTAL),
            state=ckpt.state,
            args=ckpt.args,
            model_name=ckpt.model_name,
            extra={**keep, "best_total_source": winner},
        )

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """A run stopped on request still gets its deployable ``checkpoint_best_total.pth``."""
        from rfdetr_core.training.callbacks.progress import StopRequested

        if isinstance(exception, StopRequested):
            self.on_fit_end(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best), "best_epoch": dict(self.best_epoch)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = dict(state_dict.get("best", {}))
        self.best_epoch = dict(state_dict.get("best_epoch", {}))
