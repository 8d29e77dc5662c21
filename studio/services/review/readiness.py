"""Is the model ready? A job-level target answered in plain words.

The user states "find at least ``target_recall`` of the objects" and "at most ``max_false_alarms_per_100``
false alarms per 100 images". Predictions are matched once at IoU 0.5 over all scores (greedy, as on the
Review page); because a prediction's fate depends only on higher-scoring ones, TP/FP at any threshold
``t`` are the counts of matched/unmatched predictions scoring ``>= t``. Recall falls and false alarms fall
as ``t`` rises, so the thresholds meeting both form an interval; we recommend its **highest** point (fewest
false alarms while still meeting the recall target) and report the interval.

Uncertainty: a 95 % Wilson score interval on recall (found / labelled) and on the wrong share
(false / detections). A split is "too small to tell" when it has fewer than ``MIN_IMAGES`` (20) images or
fewer than ``MIN_OBJECTS`` (30) labelled objects, or the recall interval is wider than 0.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rfdetr_core.ops.boxes import box_iou_np
from studio.services.review.data import ReviewData
from studio.services.review.matching import greedy_match, score_order

MIN_IMAGES, MIN_OBJECTS, MAX_WIDTH, Z = 20, 30, 0.2, 1.96
SMALL_PX = 16  # an object under 16 px (square root of its area) at the model's input resolution


def wilson(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``k / n`` ((0, 1) when ``n`` is 0)."""
    if n == 0:
        return 0.0, 1.0
    p, d = k / n, 1 + z * z / n
    mid = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, mid - half), min(1.0, mid + half)


@dataclass(frozen=True)
class _Flat:
    """Every prediction of the split: score, class, matched-or-not; labelled objects per class."""

    scores: np.ndarray
    labels: np.ndarray
    tp: np.ndarray
    gt_per_class: np.ndarray
    n_images: int


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _flatten(data: ReviewData, iou_thr: float = 0.5) -> _Flat:
    n_cls = len(data.class_names)
    scores, labels, tp, gt = [], [], [], np.zeros(n_cls, np.int64)
    for im in data.images:
        gt += np.bincount(im.gt.labels, minlength=n_cls)[:n_cls]
        if len(im.preds) == 0:
            continue
        iou = box_iou_np(im.preds.xyxy, im.gt.xyxy) if len(im.gt) else np.zeros((len(im.preds), 0))
        matched = greedy_match(iou, im.preds.labels, im.gt.labels, score_order(im.preds.scores), iou_thr)
        scores.append(im.preds.scores)
        labels.append(im.preds.labels)
        tp.append(matched >= 0)
    return _Flat(_cat(scores, float), _cat(labels, np.int64), _cat(tp, bool), gt, len(data.images))


def _counts(flat: _Flat, t: float, cls: int | None) -> tuple[int, int, int]:
    """(found, false alarms, labelled) at threshold ``t``, overall or for class ``cls``."""
    keep = flat.scores >= t
    if cls is not None:
        keep &= flat.labels == cls
    n_gt = int(flat.gt_per_class.sum() if cls is None else flat.gt_per_class[cls])
    return int((keep & flat.tp).sum()), int((keep & ~flat.tp).sum()), n_gt


def _meets(flat: _Flat, t: float, targets: dict[int | None, tuple[float, float]]) -> bool:
    for cls, (recall, fa) in targets.items():
        found, false, n_gt = _counts(flat, t, cls)
        if n_gt and found / n_gt < recall - 1e-12:
            return False
        if 100 * false / max(flat.n_images, 1) > fa + 1e-12:
            return False
    return True


def _candidates(flat: _Flat) -> list[float]:
    """Thresholds where the counts change: each distinct score, plus one above all (nothing kept)."""
    top = float(flat.scores.max()) + 1e-6 if len(flat.scores) else 1.0
    return sorted(set(flat.scores.tolist())) + [top]


def sentence(name: str, found: int, n_gt: int, false: int, kept: int) -> str:
    """ "Out of 100 cells, the model finds 93 (likely 88–96); about 1 in 25 of its detections is wrong." """
    if n_gt == 0:
        return f"There are no labelled {name} objects in this split to check against."
    lo, hi = wilson(found, n_gt)
    text = (
        f"Out of 100 {name}, the model finds {round(100 * found / n_gt)} "
        f"(likely between {math.floor(100 * lo)} and {math.ceil(100 * hi)})"
    )
    if kept == 0:
        return text + "; it reports nothing at this threshold."
    if false == 0:
        return text + "; none of its detections here is wrong."
    return text + f"; about 1 in {max(1, round(kept / false))} of its detections is wrong."


def _too_small(flat: _Flat) -> bool:
    n_gt = int(flat.gt_per_class.sum())
    lo, hi = wilson(n_gt // 2, n_gt)
    return flat.n_images < MIN_IMAGES or n_gt < MIN_OBJECTS or hi - lo > MAX_WIDTH


def _small_share(data: ReviewData, cls: int, resolution: int | None) -> float:
    """Share of the class's labelled boxes under ``SMALL_PX`` once the image is resized to ``resolution``."""
    sizes = []
    for im in data.images:
        scale = (resolution or max(im.width, im.height)) / max(im.width, im.height)
        wh = im.gt.xyxy[im.gt.labels == cls, 2:] - im.gt.xyxy[im.gt.labels == cls, :2]
        sizes += (np.sqrt(np.clip(wh[:, 0] * wh[:, 1], 0, None)) * scale).tolist()
    return float(np.mean(np.array(sizes) < SMALL_PX)) if sizes else 0.0


def _advice(
    data: ReviewData, flat: _Flat, cls: int, suspects: list | None, resolution: int | None
) -> list[str]:
    """What would most likely help a class that misses its target, most likely first."""
    name, counts = data.class_names[cls], flat.gt_per_class
    hints = []
    others = np.delete(counts, cls)
    if len(others) and counts[cls] < 0.5 * np.median(others):
        hints.append(
            f"label more {name}: {int(counts[cls])} boxes here against a median of "
            f"{int(np.median(others))} for the other classes"
        )
    n_sus = sum(1 for s in suspects or [] if name in (s.gt_class, s.pred_class))
    if n_sus:
        hints.append(f"check {n_sus} suspected label mistake(s) involving {name}")
    small = _small_share(data, cls, resolution)
    if small >= 0.25:
        hints.append(
            f"{round(100 * small)} % of {name} are under {SMALL_PX} px at this resolution: "
            "train at a higher resolution"
        )
    return hints


def _class_rows(data: ReviewData, flat: _Flat, t: float, targets: dict, suspects, resolution) -> list[dict]:
    rows = []
    for cls, name in enumerate(data.class_names):
        found, false, n_gt = _counts(flat, t, cls)
        recall_target, fa_target = targets.get(cls, targets[None])
        recall = found / n_gt if n_gt else None
        fa = 100 * false / max(flat.n_images, 1)
        short = max(0.0, recall_target - recall) if recall is not None else 0.0
        row = {
            "class": name,
            "objects": n_gt,
            "found": found,
            "false_alarms": false,
            "recall": recall,
            "recall_interval": list(wilson(found, n_gt)),
            "false_alarms_per_100": fa,
            "recall_short_by": short,
            "false_alarms_over_by": max(0.0, fa - fa_target),
            "sentence": sentence(name, found, n_gt, false, found + false),
        }
        row["meets"] = short == 0 and row["false_alarms_over_by"] == 0
        row["advice"] = [] if row["meets"] else _advice(data, flat, cls, suspects, resolution)
        rows.append(row)
    return rows


def readiness(
    review_data: ReviewData,
    target_recall: float = 0.95,
    max_false_alarms_per_100: float = 2.0,
    per_class: dict[str, tuple[float, float]] | None = None,
    *,
    suspects: list | None = None,
    resolution: int | None = None,
) -> dict:
    """The verdict (JSON-ready, keys in ``docs/health.md``). ``per_class`` maps a class name to its own
    (recall, false alarms per 100 images) target; the others get the overall one, which also applies to
    all classes together. ``suspects`` (from ``find_suspects``) and ``resolution`` feed the advice."""
    flat = _flatten(review_data)
    index = {n: i for i, n in enumerate(review_data.class_names)}
    targets: dict = {None: (target_recall, max_false_alarms_per_100)}
    targets |= {index[n]: tuple(v) for n, v in (per_class or {}).items() if n in index}
    meeting = [t for t in _candidates(flat) if _meets(flat, t, targets)]
    ready = bool(meeting)
    if ready:
        t = max(meeting)
    else:  # show the classes at the lowest threshold that keeps false alarms in budget (best recall)
        fa_ok = [t for t in _candidates(flat) if _meets(flat, t, {None: (0.0, max_false_alarms_per_100)})]
        t = min(fa_ok) if fa_ok else max(_candidates(flat))
    found, false, n_gt = _counts(flat, t, None)
    rows = _class_rows(review_data, flat, t, targets, suspects, resolution)
    return {
        "ready": ready,
        "threshold": round(float(t), 4),
        "threshold_range": [round(min(meeting), 4), round(max(meeting), 4)] if ready else None,
        "target_recall": target_recall,
        "max_false_alarms_per_100": max_false_alarms_per_100,
        "images": flat.n_images,
        "objects": n_gt,
        "recall": found / n_gt if n_gt else None,
        "recall_interval": list(wilson(found, n_gt)),
        "false_alarms_per_100": 100 * false / max(flat.n_images, 1),
        "too_small_to_tell": _too_small(flat),
        "sentence": sentence("objects", found, n_gt, false, found + false),
        "classes": rows,
        "missing_classes": [r["class"] for r in rows if not r["meets"]],
        "summary": _summary(ready, t, rows, _too_small(flat)),
    }


def _summary(ready: bool, t: float, rows: list[dict], too_small: bool) -> str:
    if ready:
        text = f"Ready: at confidence {t:.2f} the model meets both targets on this split."
    else:
        misses = [r["class"] for r in rows if not r["meets"]]
        text = "Not ready: no confidence threshold meets both targets; short: " + ", ".join(misses) + "."
    if too_small:
        text += " Warning: this split is too small to tell (the figures may be far off)."
    return text


def health_report(
    store,
    run_id: int,
    split: str = "valid",
    *,
    target_recall: float = 0.95,
    max_false_alarms_per_100: float = 2.0,
    per_class: dict[str, tuple[float, float]] | None = None,
    min_score: float = 0.5,
    checkpoint: str = "best",
    limit: int | None = None,
) -> dict:
    """Suspected mistakes + readiness verdict of a run on a split, JSON-ready (``docs/health.md``)."""
    from studio.services.label.fixes import dismissed
    from studio.services.review.mistakes import find_suspects
    from studio.services.review.predictions import load_review_data

    data = load_review_data(store, run_id, split, checkpoint)
    suspects = find_suspects(data, min_score=min_score, dismissed=dismissed(store, run_id))
    verdict = readiness(
        data,
        target_recall,
        max_false_alarms_per_100,
        per_class,
        suspects=suspects,
        resolution=_resolution(store, run_id),
    )
    return {
        "run_id": run_id,
        "split": split,
        "checkpoint": checkpoint,
        "in_sample": split == "train",
        "suspects": [s.to_json() for s in suspects[:limit]],
        "suspect_count": len(suspects),
        "readiness": verdict,
    }


def _resolution(store, run_id: int) -> int | None:
    from studio.store.models import Run

    with store.session(readonly=True) as s:
        run = s.get(Run, run_id)
        settings = (run.config or {}) if run is not None else {}
    value = settings.get("resolution") if isinstance(settings, dict) else None
    return int(value) if value else None


__all__ = ["MIN_IMAGES", "MIN_OBJECTS", "health_report", "readiness", "sentence", "wilson"]
