"""RF-DETR training: loss blocks (matcher, criterion) and the Lightning stack.

The Lightning pieces (``RFDETRModule``, ``RFDETRDataModule``, ``build_trainer``, ``run_training``)
are imported lazily so that importing the loss blocks does not pull in Lightning.
"""

from typing import Any

from rfdetr_core.training.criterion import SetCriterion, build_weight_dict
from rfdetr_core.training.matcher import HungarianMatcher

_LAZY = {
    "RFDETRModule": "rfdetr_core.training.module",
    "RFDETRDataModule": "rfdetr_core.training.datamodule",
    "build_trainer": "rfdetr_core.training.trainer",
    "run_training": "rfdetr_core.training.train_api",
}

__all__ = ["HungarianMatcher", "SetCriterion", "build_weight_dict", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rfdetr_core.training' has no attribute {name!r}")
