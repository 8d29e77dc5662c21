"""Progress and per-epoch metrics for a caller watching a training run (the studio), and a clean stop.

Usage::

    from rfdetr_core.training.callbacks import ProgressEvent, TrainingProgress

    def show(event: ProgressEvent) -> None:        # called in the training thread/process
        print(event.kind, event.epoch, event.step, event.total_steps, event.eta_s, event.metrics)

    progress = TrainingProgress(show, every_n_steps=10)
    model.train(dataset_dir=..., epochs=20, callbacks=[progress])
    # from any other thread (a "Stop" button, a signal handler):
    progress.request_stop()

Events (``ProgressEvent.kind``):

``"start"``   once, with ``total_steps`` (optimiser steps of the whole run) and ``max_epochs``.
``"step"``    every ``every_n_steps`` optimiser steps: ``loss`` (this step's), ``eta_s``.
``"epoch"``   after each epoch, once validation has run: ``metrics`` holds the flat numbers
              Lightning logged (``train/loss``, ``val/mAP_50``, ``val/mAP_50_95``, ``val/F1``,
              ``val/precision``, ``val/recall``, ``val/AP/<class>``, ``val/ema_*`` ...) and
              ``details`` the nested COCO result (per-class AP / F1 / P / R) when available.
``"end"``     once, ``stopped`` tells whether :meth:`TrainingProgress.request_stop` ended it.

``request_stop()`` only sets a flag; the run ends after the current optimisation step or the current
validation batch (never after a whole validation pass: Lightning's ``should_stop`` would first run the
full validation of the epoch, which took minutes on a CPU). It ends by raising :class:`StopRequested`
from the batch hook, which Lightning passes through ``on_exception``; ``train()`` catches it and
returns normally. Finished epochs keep what they wrote: their metrics, ``checkpoint_best_*.pth``
(``checkpoint_best_total.pth`` is written from the best epoch so far) and ``last.ckpt`` of the last
finished epoch, the state to resume from; the epoch cut short is not recorded and its ``"epoch"``
event is not sent. A callback that raises does not kill the run: the error is logged and the event
dropped.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch

logger = logging.getLogger(__name__)


class StopRequested(Exception):
    """Raised from a batch hook after :meth:`TrainingProgress.request_stop`: ends ``fit`` at once.

    An exception (not ``trainer.should_stop``) because Lightning honours ``should_stop`` only at the
    end of a training batch and then still runs the epoch's whole validation pass.
    """


@dataclass
class ProgressEvent:
    """One progress report. Times in seconds; ``step`` counts optimiser steps since the run began."""

    kind: str
    epoch: int
    max_epochs: int
    step: int
    total_steps: int
    elapsed_s: float
    eta_s: float | None = None
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False

    @property
    def fraction(self) -> float:
        """Share of the run done, 0..1."""
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


def _flat_metrics(trainer: pl.Trainer) -> dict[str, float]:
    out = {}
    for key, value in trainer.callback_metrics.items():
        number = float(value.item() if isinstance(value, torch.Tensor) else value)
        if not math.isnan(number):
            out[key.removesuffix("_epoch")] = number
    return out


class TrainingProgress(pl.Callback):
    """Report progress to ``on_event`` and stop the run on request (thread-safe)."""

    def __init__(
        self, on_event: Callable[[ProgressEvent], None] | None = None, every_n_steps: int = 1
    ) -> None:
        super().__init__()
        self.on_event = on_event
        self.every_n_steps = max(1, int(every_n_steps))
        self.events: list[ProgressEvent] = []  # epoch/start/end events, kept for callers that poll
        self._stop = threading.Event()
        self._t0 = 0.0
        self._start_step = 0
        self._last_step = -1

    def request_stop(self) -> None:
        """Ask the run to end after the current step (safe from any thread)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def _event(self, trainer: pl.Trainer, kind: str, **extra: Any) -> ProgressEvent:
        step = int(trainer.global_step)
        total = int(trainer.estimated_stepping_batches) if trainer.max_epochs else 0
        elapsed = time.monotonic() - self._t0
        done = step - self._start_step
        eta = elapsed / done * max(0, total - step) if done > 0 and total else None
        return ProgressEvent(
            kind=kind,
            epoch=int(trainer.current_epoch),
            max_epochs=int(trainer.max_epochs or 0),
            step=step,
            total_steps=total,
            elapsed_s=elapsed,
            eta_s=eta,
            **extra,
        )

    def _emit(self, event: ProgressEvent, keep: bool = True) -> None:
        if keep:
            self.events.append(event)
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a broken UI hook must not kill a long training run
            logger.exception("Progress callback failed on a %r event", event.kind)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.monotonic()
        self._start_step = int(trainer.global_step)
        self._emit(self._event(trainer, "start"))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = int(trainer.global_step)
        if step != self._last_step and step % self.every_n_steps == 0:
            self._last_step = step
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            value = float(loss.detach()) if isinstance(loss, torch.Tensor) else None
            self._emit(self._event(trainer, "step", loss=value), keep=False)
        self._check_stop()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise StopRequested("training stopped on request")

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._check_stop()  # a stop asked during validation or data loading: no further step

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._check_stop()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, StopRequested):
            self._emit(self._event(trainer, "end", metrics=_flat_metrics(trainer), stopped=True))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        details: dict[str, Any] = {}
        for callback in trainer.callbacks:
            if (
                hasattr(callback, "last_metrics")
                and callback.last_metrics.get("epoch") == trainer.current_epoch
            ):
                details = callback.last_metrics
        self._emit(self._event(trainer, "epoch", metrics=_flat_metrics(trainer), details=details))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._emit(self._event(trainer, "end", metrics=_flat_metrics(trainer), stopped=self._stop.is_set()))
