"""Training building blocks: Hungarian matching and the RF-DETR loss (the Lightning loop lives elsewhere)."""

from rfdetr_core.training.criterion import SetCriterion, build_weight_dict
from rfdetr_core.training.matcher import HungarianMatcher

__all__ = ["HungarianMatcher", "SetCriterion", "build_weight_dict"]
