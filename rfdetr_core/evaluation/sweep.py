"""Precision, recall and F1 as a function of the confidence threshold, and the F1-optimal threshold.

mAP averages over all thresholds; a deployed model runs at *one*. This module answers "which
threshold, and how good is the model there": every detection is matched once, COCO style, at IoU
0.5 (per image and class, highest score first, each ground truth claimed at most once; a detection
that only overlaps a crowd region is ignored, neither TP nor FP). Then, for each threshold ``t``,
the detections scoring ``>= t`` give per-class TP / FP counts, hence precision, recall and F1.

The overall ("macro") figures average over the classes that have ground truth, as the reference's
validation callback does; the overall best threshold maximises macro F1 (first maximum on ties).
Each class also gets its own F1-optimal threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rfdetr_core.ops.boxes import box_iou_np

DEFAULT_THRESHOLDS = np.linspace(0.0, 1.0, 101)


@dataclass
class ClassMatches:
    """Every detection of one class: its score, whether it is a TP, whether it is ignored (crowd)."""

    scores: list[float]
    true_positive: list[bool]
    ignored: list[bool]
    num_gt: int = 0


def _numpy(value: Any, dtype: Any) -> np.ndarray:
    if torch.is_tensor(value):
        value = (
            value.detach().cpu().float().numpy()
            if value.dtype == torch.bfloat16
            else value.detach().cpu().numpy()
        )
    return np.asarray(value, dtype=dtype)


def _greedy_match(iou: np.ndarray, crowd: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """TP / ignored flags of score-ordered detections (rows) against ground truth (columns)."""
    claimed = np.zeros(iou.shape[1], dtype=bool)
    tp = np.zeros(iou.shape[0], dtype=bool)
    ignored = np.zeros(iou.shape[0], dtype=bool)
    candidates = np.where(crowd[None, :], -1.0, iou)
    best_columns, best_ious = candidates.argmax(axis=1), candidates.max(axis=1)
    crowd_hit = (iou[:, crowd] >= threshold).any(axis=1) if crowd.any() else np.zeros(len(tp), dtype=bool)
    for row in range(iou.shape[0]):
        if best_ious[row] >= threshold:
            column = int(best_columns[row])
            if claimed[column]:  # the best one is taken: look among the free ones
                free = np.where(claimed, -1.0, candidates[row])
                column = int(free.argmax())
                if free[column] < threshold:
                    ignored[row] = crowd_hit[row]
                    continue
            tp[row], claimed[column] = True, True
        else:
            ignored[row] = crowd_hit[row]
    return tp, ignored


def match_detections(
    predictions: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]], iou_threshold: float = 0.5
) -> dict[int, ClassMatches]:
    """Match a list of images' predictions (``boxes`` xyxy, ``scores``, ``labels``) to their targets."""
    classes: dict[int, ClassMatches] = {}
    for prediction, target in zip(predictions, targets, strict=True):
        boxes = _numpy(prediction["boxes"], np.float64).reshape(-1, 4)
        scores = _numpy(prediction["scores"], np.float64).reshape(-1)
        labels = _numpy(prediction["labels"], np.int64).reshape(-1)
        gt_boxes = _numpy(target["boxes"], np.float64).reshape(-1, 4)
        gt_labels = _numpy(target["labels"], np.int64).reshape(-1)
        gt_crowd = _numpy(target.get("iscrowd", np.zeros(len(gt_labels))), np.int64).reshape(-1).astype(bool)
        iou = box_iou_np(boxes, gt_boxes) if len(boxes) and len(gt_boxes) else None
        for label in np.union1d(labels, gt_labels).tolist():
            entry = classes.setdefault(label, ClassMatches([], [], []))
            rows, columns = np.flatnonzero(labels == label), np.flatnonzero(gt_labels == label)
            crowd = gt_crowd[columns]
            entry.num_gt += int((~crowd).sum())
            if rows.size == 0:
                continue
            rows = rows[np.argsort(-scores[rows], kind="stable")]
            if columns.size:
                tp, ignored = _greedy_match(iou[np.ix_(rows, columns)], crowd, iou_threshold)
            else:
                tp, ignored = np.zeros(rows.size, dtype=bool), np.zeros(rows.size, dtype=bool)
            entry.scores.extend(scores[rows].tolist())
            entry.true_positive.extend(tp.tolist())
            entry.ignored.extend(ignored.tolist())
    return classes


@dataclass
class SweepResult:
    """Curves over ``thresholds`` for every class id in ``class_ids`` (rows) and their macro average."""

    thresholds: np.ndarray  # [T]
    class_ids: list[int]
    num_gt: np.ndarray  # [C]
    precision: np.ndarray  # [C, T]
    recall: np.ndarray  # [C, T]
    f1: np.ndarray  # [C, T]
    macro_precision: np.ndarray  # [T]
    macro_recall: np.ndarray  # [T]
    macro_f1: np.ndarray  # [T]

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.macro_f1))

    @property
    def best_threshold(self) -> float:
        return float(self.thresholds[self.best_index])

    def summary(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """Plain-number summary: overall F1/precision/recall at the best threshold, and per class."""
        best = self.best_index
        per_class = {}
        for row, class_id in enumerate(self.class_ids):
            own = int(np.argmax(self.f1[row]))
            name = (
                class_names[class_id]
                if class_names is not None and class_id < len(class_names)
                else str(class_id)
            )
            per_class[name] = {
                "num_gt": int(self.num_gt[row]),
                "f1": float(self.f1[row, best]),
                "precision": float(self.precision[row, best]),
                "recall": float(self.recall[row, best]),
                "best_threshold": float(self.thresholds[own]),
                "best_f1": float(self.f1[row, own]),
            }
        return {
            "threshold": self.best_threshold,
            "F1": float(self.macro_f1[best]),
            "precision": float(self.macro_precision[best]),
            "recall": float(self.macro_recall[best]),
            "per_class": per_class,
        }


def _counts_above(matches: ClassMatches, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP counts among detections scoring ``>= t`` for every threshold ``t`` (sort + suffix sums)."""
    scores = np.asarray(matches.scores, dtype=np.float64)
    keep = ~np.asarray(matches.ignored, dtype=bool) & ~np.isnan(scores)
    scores = scores[keep]
    tp = np.asarray(matches.true_positive, dtype=bool)[keep]
    order = np.argsort(scores, kind="stable")
    scores, tp = scores[order], tp[order]
    tp_suffix = np.concatenate([np.cumsum(tp[::-1])[::-1], [0]])
    fp_suffix = np.concatenate([np.cumsum(~tp[::-1])[::-1], [0]])
    first = np.searchsorted(scores, thresholds, side="left")
    return tp_suffix[first], fp_suffix[first]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(
        numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0
    )


def confidence_sweep(
    matches: dict[int, ClassMatches], thresholds: Sequence[float] | None = None
) -> SweepResult:
    """Precision / recall / F1 per class and macro-averaged, at every threshold."""
    grid = np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, dtype=np.float64)
    class_ids = sorted(matches)
    shape = (len(class_ids), len(grid))
    precision, recall, f1 = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    num_gt = np.array([matches[c].num_gt for c in class_ids], dtype=np.int64)
    for row, class_id in enumerate(class_ids):
        tp, fp = _counts_above(matches[class_id], grid)
        precision[row] = _ratio(tp.astype(np.float64), (tp + fp).astype(np.float64))
        recall[row] = _ratio(tp.astype(np.float64), np.full(len(grid), float(num_gt[row])))
        f1[row] = _ratio(2 * precision[row] * recall[row], precision[row] + recall[row])
    with_gt = num_gt > 0
    if with_gt.any():
        macro = [m[with_gt].mean(axis=0) for m in (precision, recall, f1)]
    else:
        macro = [np.zeros(len(grid)) for _ in range(3)]
    return SweepResult(grid, class_ids, num_gt, precision, recall, f1, *macro)


def sweep(
    predictions: Sequence[dict[str, Any]],
    targets: Sequence[dict[str, Any]],
    thresholds: Sequence[float] | None = None,
    iou_threshold: float = 0.5,
) -> SweepResult:
    """:func:`match_detections` followed by :func:`confidence_sweep`."""
    return confidence_sweep(match_detections(predictions, targets, iou_threshold), thresholds)
