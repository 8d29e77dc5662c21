"""Stop training when validation mAP has not improved for ``patience`` evaluations.

By default the watched value is ``max(regular mAP, EMA mAP)`` -- either model getting better means
the run is still learning; ``use_ema=True`` watches the EMA model alone. The counter is part of
the checkpoint, so a resumed run keeps its patience.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl

logger = logging.getLogger(__name__)


class RFDETREarlyStopping(pl.Callback):
    """Set ``trainer.should_stop`` after ``patience`` evaluations without a ``min_delta`` gain."""

    def __init__(
        self,
        patience: int = 10,
        min_delta: float = 0.001,
        use_ema: bool = False,
        monitor: str = "val/mAP_50_95",
        monitor_ema: str = "val/ema_mAP_50_95",
        skip_best_epochs: int = 0,
    ) -> None:
        super().__init__()
        self.patience, self.min_delta, self.use_ema = patience, min_delta, use_ema
        self.monitor, self.monitor_ema = monitor, monitor_ema
        self.skip_best_epochs = skip_best_epochs
        self.best = -math.inf
        self.wait = 0
        self.stopped_epoch: int | None = None

    def current(self, metrics: dict[str, Any]) -> float | None:
        """The value this callback judges (None when the metrics are missing)."""

        def read(key: str) -> float | None:
            value = metrics.get(key)
            return None if value is None or math.isnan(float(value)) else float(value)

        regular, ema = read(self.monitor), read(self.monitor_ema)
        if self.use_ema:
            return ema
        values = [v for v in (regular, ema) if v is not None]
        return max(values) if values else None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch < self.skip_best_epochs:
            return
        value = self.current(trainer.callback_metrics)
        if value is None:
            return
        if value > self.best + self.min_delta:
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = trainer.current_epoch
            trainer.should_stop = True
            logger.info(
                "Early stopping at epoch %d: no mAP gain > %g for %d evaluations (best %.4f).",
                trainer.current_epoch,
                self.min_delta,
                self.patience,
                self.best,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict.get("best", -math.inf))
        self.wait = int(state_dict.get("wait", 0))
        self.stopped_epoch = state_dict.get("stopped_epoch")
