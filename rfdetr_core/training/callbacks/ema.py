"""Exponential moving average of the weights, with the tau warm-up RF-DETR uses.

Why a warm-up: with a fixed decay of 0.993 the average would remember the random/pretrained start
for hundreds of steps. The effective decay ``decay * (1 - exp(-n / tau))`` (``n`` = updates so
far, counted from 1) starts near 0 -- the average follows the model -- and approaches ``decay``
after a few ``tau`` steps.

The averaged copy lives on the module as ``pl_module.ema_model`` so validation can score it next
to the live weights, and its state goes into Lightning checkpoints so a resumed run continues the
same average. At the end of training the live network takes the averaged weights, as in the
reference, so what ``RFDETR.train()`` leaves behind is the EMA model.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn


def ema_decay(decay: float, tau: float, updates: int) -> float:
    """Effective decay of update number ``updates`` (1-based)."""
    return decay * (1.0 - math.exp(-updates / tau)) if tau > 0 else decay


class EMACallback(pl.Callback):
    """Keep ``pl_module.ema_model``, an EMA of ``pl_module.model``, updated every ``update_interval_steps``."""

    def __init__(self, decay: float = 0.993, tau: float = 100, update_interval_steps: int = 1) -> None:
        super().__init__()
        self.decay = decay
        self.tau = tau
        self.update_interval_steps = max(1, int(update_interval_steps))
        self.updates = 0
        self.ema_model: nn.Module | None = None
        self._last_step = -1
        self._pending: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.ema_model is None:
            self.ema_model = copy.deepcopy(pl_module.model).eval().requires_grad_(False)
        if self._pending is not None:
            self.ema_model.load_state_dict(self._pending)
            self._pending = None
        pl_module.attach_ema(self.ema_model)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights into the average (float tensors lerp, integer buffers copy)."""
        assert self.ema_model is not None
        self.updates += 1
        weight = 1.0 - ema_decay(self.decay, self.tau, self.updates)
        averaged, live = [], []
        for ema_value, value in zip(
            self.ema_model.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if ema_value.is_floating_point():
                averaged.append(ema_value)
                live.append(value.detach())
            else:
                ema_value.copy_(value)
        if averaged:
            torch._foreach_lerp_(averaged, live, weight)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step  # counts optimiser steps, so accumulation windows update once
        if step > max(0, self._last_step) and step % self.update_interval_steps == 0:
            self._last_step = step
            self.update(pl_module.model)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.ema_model is not None:
            pl_module.model.load_state_dict(self.ema_model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"updates": self.updates, "last_step": self._last_step}
        if self.ema_model is not None:
            state["ema_state_dict"] = {k: v.detach().clone() for k, v in self.ema_model.state_dict().items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.updates = int(state_dict.get("updates", 0))
        self._last_step = int(state_dict.get("last_step", -1))
        self._pending = state_dict.get("ema_state_dict")
