"""Stochastic-depth (drop-path) rate of the ViT blocks, set before every training step.

The per-step schedule is a list of peak rates; within the backbone the rate grows linearly from 0
at the first block to the peak at the last (deeper blocks are more redundant, so dropping them
regularises with the least damage).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn


def drop_schedule(
    rate: float,
    epochs: int,
    steps_per_epoch: int,
    cutoff_epoch: int = 0,
    mode: str = "standard",
    schedule: str = "constant",
) -> np.ndarray:
    """Peak drop rate of every optimiser step: constant (``standard``), only before ``cutoff_epoch``
    (``early``, constant or linearly decaying) or only after it (``late``)."""
    if mode not in ("standard", "early", "late"):
        raise ValueError(f"mode must be 'standard', 'early' or 'late', got {mode!r}")
    total = max(1, epochs) * max(1, steps_per_epoch)
    if mode == "standard":
        return np.full(total, rate)
    cutoff = cutoff_epoch * steps_per_epoch
    out = np.zeros(total)
    if mode == "early":
        out[:cutoff] = rate if schedule == "constant" else np.linspace(rate, 0.0, cutoff)
    else:
        out[cutoff:] = rate
    return out


def vit_blocks(model: nn.Module) -> list[nn.Module]:
    """The backbone blocks that carry a ``drop_path`` module, in depth order."""
    return [
        m
        for name, m in model.named_modules()
        if name.startswith("backbone") and hasattr(m, "drop_path") and hasattr(m.drop_path, "drop_prob")
    ]


def set_drop_path(model: nn.Module, peak: float) -> None:
    blocks = vit_blocks(model)
    for block, rate in zip(blocks, torch.linspace(0.0, peak, len(blocks)).tolist(), strict=True):
        block.drop_path.drop_prob = rate


class DropPathCallback(pl.Callback):
    """Apply ``drop_schedule(...)[global_step]`` to the model's ViT blocks before each step."""

    def __init__(
        self,
        drop_path: float = 0.0,
        cutoff_epoch: int = 0,
        mode: str = "standard",
        schedule: str = "constant",
    ) -> None:
        super().__init__()
        self.drop_path, self.cutoff_epoch, self.mode, self.schedule = drop_path, cutoff_epoch, mode, schedule
        self._rates: np.ndarray | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epochs = int(trainer.max_epochs or 1)
        per_epoch = max(1, int(trainer.estimated_stepping_batches) // epochs)
        self._rates = drop_schedule(
            self.drop_path, epochs, per_epoch, self.cutoff_epoch, self.mode, self.schedule
        )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._rates is not None and trainer.global_step < len(self._rates):
            set_drop_path(pl_module.model, float(self._rates[trainer.global_step]))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        set_drop_path(pl_module.model, 0.0)
