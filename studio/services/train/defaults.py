"""Model sizes and the training defaults the Train page proposes for this data and this machine.

Why a rule table rather than a search: the users are not ML specialists, so the page must open on
settings that will finish in reasonable time and fit in memory, with one line saying why. The rules
are deliberately simple (CPU -> the smallest model; more GPU memory -> a larger model and batch; fewer
images -> more epochs, since each epoch is short and small datasets need more passes).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from rfdetr_core.variants import VARIANTS
from studio.store import Image, ProjectStore


@dataclass(frozen=True)
class ModelSize:
    """What the size picker shows of one variant; every number comes from ``rfdetr_core.variants``."""

    name: str  # "Nano" ... "Large" (the variant class is f"RFDETR{name}")
    resolution: int
    block_size: int  # resolutions must be multiples of this
    params_m: float  # parameters in millions (COCO head)

    @property
    def label(self) -> str:
        return f"{self.name} · {self.resolution} px · {self.params_m:.1f} M parameters"


MODEL_SIZES: dict[str, ModelSize] = {
    v.name: ModelSize(v.name, v.resolution, v.block_size, v.params_m) for v in VARIANTS.values()
}
PRETRAINED_CHOICES = ("official", "local", "scratch")


@dataclass(frozen=True)
class Hardware:
    gpu_name: str | None
    gpu_memory_gb: float
    cpu_count: int

    @property
    def summary(self) -> str:
        if self.gpu_name:
            return f"GPU {self.gpu_name} ({self.gpu_memory_gb:.0f} GB)"
        return f"CPU only ({self.cpu_count} cores)"


@functools.cache
def detect_hardware() -> Hardware:
    """The first GPU and its memory, else the CPU (torch is imported here, not at app start)."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Hardware(props.name, props.total_memory / 2**30, os.cpu_count() or 1)
    return Hardware(None, 0.0, os.cpu_count() or 1)


def count_train_images(store: ProjectStore) -> int:
    """Labeled images that will land in the training split (unassigned ones train too)."""
    with store.session(readonly=True) as s:
        return int(
            s.scalar(
                select(func.count(Image.id)).where(
                    Image.status != "unlabeled", (Image.split == "train") | Image.split.is_(None)
                )
            )
            or 0
        )


def default_settings(n_train: int, hw: Hardware) -> tuple[dict[str, Any], str]:
    """``(settings, one-line explanation)`` for ``n_train`` training images on ``hw``."""
    if hw.gpu_name is None:
        size, batch, accum = "Nano", 2, 2
        why_hw = "no GPU found, so the smallest model (Nano) with a small batch"
    elif hw.gpu_memory_gb >= 40:
        size, batch, accum = "Medium", 16, 1
        why_hw = f"{hw.summary}: room for Medium with batch 16"
    elif hw.gpu_memory_gb >= 16:
        size, batch, accum = "Small", 8, 2
        why_hw = f"{hw.summary}: Small with batch 8 (×2 accumulation)"
    else:
        size, batch, accum = "Nano", 4, 4
        why_hw = f"{hw.summary}: Nano with batch 4 (×4 accumulation) to fit in memory"
    epochs = 100 if n_train < 100 else 50 if n_train < 1000 else 25
    settings = {
        "model_size": size,
        "epochs": epochs,
        "batch_size": batch,
        "grad_accum_steps": accum,
        "lr": 1e-4,
        "resolution": MODEL_SIZES[size].resolution,
        "early_stopping": n_train >= 100,
        "use_ema": True,
        "seed": 0,
        "pretrained": "official",
        "weights_path": "",
    }
    why = f"{why_hw}; {n_train} training images → {epochs} epochs."
    return settings, why
