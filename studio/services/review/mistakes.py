"""Suspected ground-truth mistakes from a run's stored predictions on one split.

Why from predictions: where a confident model and the ground truth disagree, the label is often the one
that is wrong (FiftyOne's "mistakenness" idea). We rank five kinds of disagreement so the user fixes
the likeliest mistakes first; each suspect carries its evidence and the fix the model suggests.

Notation: ``s`` is a prediction's score, IoU is box overlap (:func:`rfdetr_core.ops.boxes.box_iou_np`),
only predictions with ``s >= min_score`` (default 0.5) count as "confident". Scores are in [0, 1]:

- **missing** (fix: add the model's box): a confident prediction whose best IoU with any ground-truth
  box is below ``LOW_IOU`` (0.1). ``score = s * (1 - best_iou / LOW_IOU)``.
- **wrong_class** (fix: change the class): a confident prediction with IoU >= ``MATCH_IOU`` (0.5) to a
  ground-truth box of another class, while no prediction of that box's own class scores higher on it
  (IoU >= 0.5). ``score = s * iou * (1 - s_own)`` with ``s_own`` the best own-class score on the box.
- **loose** (fix: replace the box by the model's): a confident same-class prediction whose best IoU with
  a same-class ground-truth box lies in [``LOW_IOU``, ``TIGHT_IOU``) (0.1–0.7), and no same-class
  prediction fits that box tighter than ``TIGHT_IOU``. ``score = s * (1 - iou / TIGHT_IOU)``.
- **duplicate** (fix: delete the later box): two same-class ground-truth boxes with IoU >= ``DUP_IOU``
  (0.8). ``score = iou``.
- **spurious** (fix: delete the box): a ground-truth box no prediction of any class touches (IoU >=
  ``LOW_IOU`` with score >= 0.05) while the model finds that class well elsewhere.
  ``score = recall_c * (1 - best_touching_score)`` with ``recall_c`` the class's recall at ``min_score``.

The thresholds were set on planted errors (``bench/mistakes.py``): model jitter keeps a correct box's IoU
above ~0.75, a box shifted by half its size has IoU ~0.33, a re-drawn duplicate ~0.9.
A prediction is reported once (the first kind that applies in the order above).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rfdetr_core.ops.boxes import box_iou_np
from studio.services.review.data import ReviewData, ReviewImage
from studio.services.review.matching import greedy_match, score_order

LOW_IOU, MATCH_IOU, TIGHT_IOU, DUP_IOU, TOUCH_SCORE = 0.1, 0.5, 0.7, 0.8, 0.05
KINDS = ("missing", "wrong_class", "loose", "duplicate", "spurious")
FIXES = {
    "missing": "add_box",
    "wrong_class": "change_class",
    "loose": "replace_box",
    "duplicate": "delete_duplicate",
    "spurious": "delete_box",
}


@dataclass(frozen=True)
class Suspect:
    """One suspected mistake. Boxes are pixel ``[x0, y0, x1, y1]``; ``gt_id``/``pred_id`` are database ids
    (``gt_index``/``pred_index`` the positions in the image's arrays when there are no ids);
    ``gt_class`` is the labelled class, ``pred_class`` the model's (for a duplicate: the kept box's class)."""

    kind: str
    score: float
    image_id: int
    image_name: str
    fix: str
    gt_box: list[float] | None = None
    gt_class: str | None = None
    gt_id: int | None = None
    gt_index: int | None = None
    pred_box: list[float] | None = None
    pred_class: str | None = None
    pred_score: float | None = None
    pred_id: int | None = None
    pred_index: int | None = None
    other_gt_id: int | None = None  # duplicate: the box that stays

    @property
    def key(self) -> str:
        """Stable across re-loads of the same predictions (database ids, else array positions)."""
        gt = self.gt_id if self.gt_id is not None else f"i{self.gt_index}"
        pred = self.pred_id if self.pred_id is not None else f"i{self.pred_index}"
        return f"{self.kind}:{self.image_id}:{gt}:{pred}"

    def to_json(self) -> dict:
        return asdict(self) | {"key": self.key}


def _ids(arr: np.ndarray | None, k: int | None) -> int | None:
    return None if arr is None or k is None else int(arr[k])


def _box(xyxy: np.ndarray, k: int) -> list[float]:
    return [round(float(v), 2) for v in xyxy[k]]


def _suspect(
    im: ReviewImage, names: list[str], kind: str, score: float, g: int | None, p: int | None
) -> Suspect:
    gt, pr = im.gt, im.preds
    return Suspect(
        kind=kind,
        score=round(float(score), 4),
        image_id=im.image_id,
        image_name=im.shown_name,
        fix=FIXES[kind],
        gt_box=None if g is None else _box(gt.xyxy, g),
        gt_class=None if g is None else names[int(gt.labels[g])],
        gt_id=_ids(gt.ids, g),
        gt_index=g,
        pred_box=None if p is None else _box(pr.xyxy, p),
        pred_class=None if p is None else names[int(pr.labels[p])],
        pred_score=None if p is None else round(float(pr.scores[p]), 4),
        pred_id=_ids(pr.ids, p),
        pred_index=p,
    )


def _prediction_suspects(im: ReviewImage, names: list[str], min_score: float) -> list[Suspect]:
    """Missing, wrong-class and loose suspects of one image (one per confident prediction)."""
    gt, pr = im.gt, im.preds
    iou = box_iou_np(pr.xyxy, gt.xyxy) if len(gt) else np.zeros((len(pr), 0))
    same = pr.labels[:, None] == gt.labels[None, :]
    out: list[Suspect] = []
    for p in np.flatnonzero(pr.scores >= min_score).tolist():
        s, row = float(pr.scores[p]), iou[p]
        best = float(row.max()) if len(gt) else 0.0
        if best < LOW_IOU:
            out.append(_suspect(im, names, "missing", s * (1 - best / LOW_IOU), None, p))
            continue
        other = np.where(~same[p], row, -1.0)
        g = int(other.argmax()) if len(gt) else -1
        if g >= 0 and other[g] >= MATCH_IOU and not (same[p] & (row >= MATCH_IOU)).any():
            own = (pr.labels == gt.labels[g]) & (iou[:, g] >= MATCH_IOU)
            s_own = float(pr.scores[own].max()) if own.any() else 0.0
            if s_own < s:
                out.append(_suspect(im, names, "wrong_class", s * float(other[g]) * (1 - s_own), g, p))
                continue
        mine = np.where(same[p], row, -1.0)
        g = int(mine.argmax())
        if LOW_IOU <= mine[g] < TIGHT_IOU:
            fits = (pr.labels == gt.labels[g]) & (iou[:, g] >= TIGHT_IOU)
            if not fits.any():
                out.append(_suspect(im, names, "loose", s * (1 - float(mine[g]) / TIGHT_IOU), g, p))
    return out


def _duplicate_suspects(im: ReviewImage, names: list[str]) -> list[Suspect]:
    """Pairs of same-class ground-truth boxes that almost coincide; the later one is the suspect."""
    gt = im.gt
    if len(gt) < 2:
        return []
    iou = box_iou_np(gt.xyxy, gt.xyxy)
    out = []
    for a, b in zip(*np.nonzero(np.triu(iou >= DUP_IOU, k=1)), strict=True):
        if gt.labels[a] == gt.labels[b]:
            found = _suspect(im, names, "duplicate", float(iou[a, b]), int(b), None)
            out.append(
                Suspect(
                    **{**asdict(found), "other_gt_id": _ids(gt.ids, int(a)), "pred_class": found.gt_class}
                )
            )
    return out


def class_recall(data: ReviewData, min_score: float, iou_thr: float = MATCH_IOU) -> np.ndarray:
    """Recall per model class at ``min_score`` (greedy same-class matching, as on the Review page)."""
    found = np.zeros(len(data.class_names))
    total = np.zeros(len(data.class_names))
    for im in data.images:
        total += np.bincount(im.gt.labels, minlength=len(total))[: len(total)]
        keep = np.flatnonzero(im.preds.scores >= min_score)
        if len(keep) == 0 or len(im.gt) == 0:
            continue
        iou = box_iou_np(im.preds.xyxy, im.gt.xyxy)
        order = keep[score_order(im.preds.scores[keep])]
        matched = greedy_match(iou, im.preds.labels, im.gt.labels, order, iou_thr)
        hit = im.gt.labels[matched[matched >= 0]]
        found += np.bincount(hit, minlength=len(found))[: len(found)]
    return np.divide(found, total, out=np.zeros_like(found), where=total > 0)


def _spurious_suspects(im: ReviewImage, names: list[str], recall: np.ndarray) -> list[Suspect]:
    gt, pr = im.gt, im.preds
    if len(gt) == 0:
        return []
    iou = box_iou_np(pr.xyxy, gt.xyxy) if len(pr) else np.zeros((0, len(gt)))
    touching = (iou >= LOW_IOU) & (pr.scores[:, None] >= TOUCH_SCORE)
    out = []
    for g in range(len(gt)):
        best = float(pr.scores[touching[:, g]].max()) if touching[:, g].any() else 0.0
        if best < MATCH_IOU:  # nothing confident near it (a real but hard object still gets some score)
            score = float(recall[int(gt.labels[g])]) * (1 - best)
            if score > 0:
                out.append(_suspect(im, names, "spurious", score, g, None))
    return out


def find_suspects(
    data: ReviewData, *, min_score: float = 0.5, dismissed: set[str] | frozenset[str] = frozenset()
) -> list[Suspect]:
    """All suspects of the split, highest score first (ties: image order), minus the dismissed keys."""
    recall = class_recall(data, min_score)
    names = data.class_names
    found: list[Suspect] = []
    for im in data.images:
        found += _prediction_suspects(im, names, min_score)
        found += _duplicate_suspects(im, names)
        found += _spurious_suspects(im, names, recall)
    kept = [s for s in found if s.key not in dismissed]
    return sorted(kept, key=lambda s: -s.score)


__all__ = ["FIXES", "KINDS", "Suspect", "class_recall", "find_suspects"]
