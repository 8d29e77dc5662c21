"""``RFDETRDataModule``: datasets and loaders of one training run.

A dataset with fewer than ``MIN_TRAIN_BATCHES`` effective batches is sampled *with replacement*
up to that many batches per epoch: with 6 images and batch 4 an epoch would otherwise be a
single optimiser step, so the schedule, EMA warm-up and logging would all degenerate.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, RandomSampler

from rfdetr_core.config import ModelConfig
from rfdetr_core.data import (
    augment_config_from_train_kwargs,
    build_dataset,
    load_class_names,
    make_collate_fn,
    validate_dataset,
)
from rfdetr_core.train_config import TrainConfig

logger = logging.getLogger(__name__)

MIN_TRAIN_BATCHES = 5
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("val",)}


class RFDETRDataModule(pl.LightningDataModule):
    """Train / valid / test splits of ``train_config.dataset_dir`` (COCO or YOLO layout)."""

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig) -> None:
        super().__init__()
        if not train_config.dataset_dir:
            raise ValueError("train_config.dataset_dir is required to build the datasets.")
        self.model_config = model_config
        self.train_config = train_config
        self.datasets: dict[str, Any] = {}
        self.augment_config = augment_config_from_train_kwargs(
            train_config.aug_config,
            train_config.multi_scale,
            train_config.expanded_scales,
            train_config.scale_jitter,
        )

    # -- datasets --------------------------------------------------------------------------------
    def check(self, splits: tuple[str, ...] = ("train", "val")) -> None:
        """Open every split now so a broken dataset fails before any model work (clear message)."""
        validate_dataset(self.train_config.dataset_dir, splits)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets a stage needs (each once, however often Lightning calls this)."""
        for split in _STAGE_SPLITS.get(stage or "fit", ("train", "val")):
            if split not in self.datasets:
                self.datasets[split] = build_dataset(
                    self.train_config.dataset_dir,
                    split,
                    self.model_config.resolution,
                    self.augment_config,
                    block_size=self.model_config.block_size,
                )

    def dataset(self, split: str):
        """A built split (``train``, ``val`` or ``test``)."""
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        return self.datasets[split]

    @property
    def class_names(self) -> list[str] | None:
        """Names of the classes the model trains on (the train split's class list)."""
        try:
            return load_class_names(self.train_config.dataset_dir)
        except (OSError, ValueError):
            return None

    # -- loaders ---------------------------------------------------------------------------------
    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.train_config.num_workers
        pin = self.train_config.pin_memory
        persistent = self.train_config.persistent_workers
        return {
            "collate_fn": make_collate_fn(self.model_config.block_size),
            "num_workers": workers,
            "pin_memory": torch.cuda.is_available() if pin is None else pin,
            "persistent_workers": (workers > 0) if persistent is None else (persistent and workers > 0),
        }

    def _grad_accum_steps(self) -> int:
        trainer = getattr(self, "trainer", None)
        return (
            int(trainer.accumulate_grad_batches)
            if trainer is not None
            else self.train_config.grad_accum_steps
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        batch_size = int(self.train_config.batch_size)
        minimum = batch_size * self._grad_accum_steps() * MIN_TRAIN_BATCHES
        if len(dataset) < minimum:
            logger.info("Small dataset (%d < %d samples): sampling with replacement.", len(dataset), minimum)
            sampler = RandomSampler(dataset, replacement=True, num_samples=minimum)
            return DataLoader(dataset, batch_size=batch_size, sampler=sampler, **self._loader_kwargs())
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=True, drop_last=True, **self._loader_kwargs()
        )

    def _eval_loader(self, split: str) -> DataLoader:
        size = self.train_config.eval_batch_size or int(self.train_config.batch_size)
        return DataLoader(self.dataset(split), batch_size=size, shuffle=False, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("val")
