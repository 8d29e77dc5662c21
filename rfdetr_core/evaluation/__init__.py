"""Evaluation of detections: COCO mAP via pycocotools and the confidence-threshold F1 sweep."""

from rfdetr_core.evaluation.coco_eval import STAT_NAMES, CocoEvaluator, pixel_ground_truth
from rfdetr_core.evaluation.sweep import SweepResult, confidence_sweep, match_detections, sweep

__all__ = [
    "STAT_NAMES",
    "CocoEvaluator",
    "pixel_ground_truth",
    "SweepResult",
    "confidence_sweep",
    "match_detections",
    "sweep",
]
