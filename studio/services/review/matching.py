"""TP / FP / FN of one image's predictions at a confidence and an IoU threshold (pure numpy).

Rules (the Review page's vocabulary; the TP rule is pycocotools' and the training F1 sweep's):

1. Only predictions scoring ``>= conf`` take part; the others are ``HIDDEN``.
2. Kept predictions are visited in descending score order (stable: equal scores keep their stored
   order) and each one claims the still-unclaimed ground-truth box **of its own class** with the highest
   IoU, provided that IoU is ``>= iou_thr`` (pycocotools skips a pair only when ``iou < thr``, so a pair
   exactly at the threshold matches; like pycocotools the threshold is capped at ``1 - 1e-10``). Equal
   IoUs go to the lower ground-truth index. Such a prediction is a ``TP``.
3. A kept prediction that claimed nothing is
   ``FP_DUPLICATE`` if it overlaps (IoU >= thr) a ground-truth box of its class — that box must already
   be claimed by a higher-scoring prediction, otherwise rule 2 would have given it to this one;
   else ``FP_CLASS`` if it overlaps (IoU >= thr) a ground-truth box of another class;
   else ``FP_BACKGROUND``.
4. Unclaimed ground truth is missed (FN).

Confusion matrix (rows: ground-truth class, columns: predicted class, ``BACKGROUND`` = no box): a TP adds
``(c, c)``. Each ``FP_CLASS`` prediction, in score order, is *paired* with the best-overlapping
(IoU >= thr) other-class ground-truth box that is still unclaimed and not yet paired, adding
``(gt class, pred class)`` — the "the model called this cat a dog" cell. Every other FP adds
``(BACKGROUND, pred class)``, and every missed ground-truth box that was not paired adds
``(gt class, BACKGROUND)``. A paired ground-truth box is still counted as FN in the totals.

Why the greedy matching is done in its own function, independent of ``conf``: a prediction's fate only
depends on the higher-scoring ones, so the matching of all predictions restricted to those scoring
``>= conf`` *is* the matching at ``conf``. :mod:`studio.services.review.metrics` matches once per IoU
threshold and re-scores a slider move without geometry; :func:`match_image` is the one-image reference
that its results are tested against.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from rfdetr_core.ops.boxes import box_iou_np
from studio.services.review.data import Boxes

TP, FP_CLASS, FP_DUPLICATE, FP_BACKGROUND = 0, 1, 2, 3
HIDDEN = -1
iou_matrix = box_iou_np  # the name metrics.py and tests/studio/test_review_matching.py use
BACKGROUND = -1  # "no box" side of a confusion cell in :class:`ImageMatch`
KIND_NAMES = {TP: "tp", FP_CLASS: "fp_class", FP_DUPLICATE: "fp_duplicate", FP_BACKGROUND: "fp_background"}


def effective_threshold(iou_thr: float) -> float:
    """The IoU a pair needs (``>=``), capped below 1 as pycocotools does so that 1.0 stays reachable."""
    return min(float(iou_thr), 1 - 1e-10)


def score_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score, ties in stored order (pycocotools sorts with a stable mergesort)."""
    return np.argsort(-np.asarray(scores, np.float64), kind="stable")


def greedy_match(
    iou: np.ndarray, pred_labels: np.ndarray, gt_labels: np.ndarray, order: np.ndarray, iou_thr: float
) -> np.ndarray:
    """Rule 2 for the predictions listed in ``order`` (score order): the claimed ground-truth index of each
    prediction, ``-1`` for none (and for predictions not in ``order``)."""
    matched = np.full(len(pred_labels), -1, np.int64)
    if len(order) == 0 or len(gt_labels) == 0:
        return matched
    thr = effective_threshold(iou_thr)
    candidate = (pred_labels[:, None] == gt_labels[None, :]) & (iou >= thr)
    rows = order[candidate[order].any(axis=1)]  # only these can claim anything
    claimed = np.zeros(len(gt_labels), bool)
    for row, values in zip(rows.tolist(), np.where(candidate[rows], iou[rows], -1.0), strict=True):
        free = np.where(claimed, -1.0, values)
        column = int(free.argmax())
        if free[column] >= 0:
            matched[row], claimed[column] = column, True
            if claimed.all():
                break
    return matched


def overlap_flags(
    iou: np.ndarray, pred_labels: np.ndarray, gt_labels: np.ndarray, iou_thr: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction: overlaps a same-class ground truth, overlaps an other-class one (IoU >= thr)."""
    if len(gt_labels) == 0:
        none = np.zeros(len(pred_labels), bool)
        return none, none.copy()
    hit = iou >= effective_threshold(iou_thr)
    same = pred_labels[:, None] == gt_labels[None, :]
    return (hit & same).any(axis=1), (hit & ~same).any(axis=1)


def classify(
    kept: np.ndarray, matched: np.ndarray, same_overlap: np.ndarray, other_overlap: np.ndarray
) -> np.ndarray:
    """Rule 1 and 3: the outcome code (int8) of every prediction."""
    kind = np.where(
        matched >= 0,
        TP,
        np.where(same_overlap, FP_DUPLICATE, np.where(other_overlap, FP_CLASS, FP_BACKGROUND)),
    )
    return np.where(kept, kind, HIDDEN).astype(np.int8)


def pair_wrong_class(
    iou: np.ndarray,
    pred_labels: np.ndarray,
    gt_labels: np.ndarray,
    pred_kind: np.ndarray,
    order: np.ndarray,
    gt_matched: np.ndarray,
    iou_thr: float,
) -> np.ndarray:
    """The ground-truth index each ``FP_CLASS`` prediction is paired with for the confusion matrix (-1)."""
    paired = np.full(len(pred_labels), -1, np.int64)
    taken = gt_matched.copy()
    thr = effective_threshold(iou_thr)
    for row in order[pred_kind[order] == FP_CLASS].tolist():
        free = np.where((gt_labels != pred_labels[row]) & ~taken & (iou[row] >= thr), iou[row], -1.0)
        column = int(free.argmax())
        if free[column] >= 0:
            paired[row], taken[column] = column, True
    return paired


def image_f1(tp: int, fp: int, fn: int) -> float:
    """Per-image F1 = 2TP / (2TP + FP + FN); 1.0 for an image with nothing to find and nothing found."""
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 1.0


@dataclass(frozen=True, eq=False)
class ImageMatch:
    """Outcome of one image. ``pred_kind`` (n_pred,) int8 codes (``HIDDEN`` below conf); ``pred_gt`` (n_pred,)
    the ground-truth index a TP claimed or an FP_CLASS was paired with (-1); ``gt_matched`` (n_gt,) bool;
    ``gt_confused_with`` (n_gt,) the predicted class of the wrong-class box paired with it (-1);
    ``confusion``: ``{(gt class, pred class): count}`` with ``BACKGROUND`` (-1) for "no box"."""

    pred_kind: np.ndarray
    pred_gt: np.ndarray
    gt_matched: np.ndarray
    gt_confused_with: np.ndarray
    tp: int
    fp_class: int
    fp_duplicate: int
    fp_background: int
    fn: int
    f1: float
    confusion: dict[tuple[int, int], int]

    @property
    def fp(self) -> int:
        return self.fp_class + self.fp_duplicate + self.fp_background

    @property
    def n_errors(self) -> int:
        return self.fp + self.fn


def assemble(
    pred_kind: np.ndarray,
    pred_gt: np.ndarray,
    pred_labels: np.ndarray,
    gt_labels: np.ndarray,
    gt_matched: np.ndarray,
) -> ImageMatch:
    """Counts and confusion contributions of one image from its per-box outcome arrays."""
    paired = (pred_kind == FP_CLASS) & (pred_gt >= 0)
    gt_confused_with = np.full(len(gt_labels), -1, np.int64)
    gt_confused_with[pred_gt[paired]] = pred_labels[paired]
    counts = np.bincount(pred_kind[pred_kind >= 0].astype(np.int64), minlength=4)
    fn = int((~gt_matched).sum())
    kept = pred_kind >= 0
    rows = np.where(pred_kind == TP, pred_labels, BACKGROUND)
    rows[paired] = gt_labels[pred_gt[paired]]
    cells = Counter(zip(rows[kept].tolist(), pred_labels[kept].tolist(), strict=True))
    missed = ~gt_matched & (gt_confused_with < 0)
    cells.update((int(label), BACKGROUND) for label in gt_labels[missed].tolist())
    tp, fp = int(counts[TP]), int(counts[1:].sum())
    return ImageMatch(
        pred_kind,
        pred_gt,
        gt_matched,
        gt_confused_with,
        tp,
        int(counts[FP_CLASS]),
        int(counts[FP_DUPLICATE]),
        int(counts[FP_BACKGROUND]),
        fn,
        image_f1(tp, fp, fn),
        dict(cells),
    )


def match_image(
    gt: Boxes, preds: Boxes, conf: float, iou_thr: float, iou: np.ndarray | None = None
) -> ImageMatch:
    """Apply the module's rules to one image. ``iou`` is the precomputed (n_pred, n_gt) IoU matrix of
    ``preds.xyxy`` against ``gt.xyxy`` (computed here when omitted)."""
    if preds.scores is None:
        raise ValueError("predictions need scores")
    if iou is None:
        iou = box_iou_np(preds.xyxy, gt.xyxy)
    if iou.shape != (len(preds), len(gt)):
        raise ValueError(f"iou must have shape ({len(preds)}, {len(gt)}), got {iou.shape}")
    kept = preds.scores >= conf
    order = score_order(preds.scores)
    order = order[kept[order]]
    matched = greedy_match(iou, preds.labels, gt.labels, order, iou_thr)
    same, other = overlap_flags(iou, preds.labels, gt.labels, iou_thr)
    pred_kind = classify(kept, matched, same, other)
    gt_matched = np.zeros(len(gt), bool)
    gt_matched[matched[matched >= 0]] = True
    paired = pair_wrong_class(iou, preds.labels, gt.labels, pred_kind, order, gt_matched, iou_thr)
    pred_gt = np.where(matched >= 0, matched, paired)
    return assemble(pred_kind, pred_gt, preds.labels, gt.labels, gt_matched)
