"""The Review page's numbers: TP / FP / FN at a confidence and IoU, the worst-first gallery, a confusion
matrix with a background row and column, per-class AP / precision / recall, PR curves and the
F1-optimal confidence threshold — all from one :class:`~studio.services.review.data.ReviewData`.

Why a :class:`Review` object: the model already ran; a slider move must only re-count. Construction
computes every image's IoU matrix once; each IoU threshold is then matched once (a prediction's fate
only depends on higher-scoring ones, so the matching at any confidence is the all-predictions matching
cut at that confidence — see :mod:`studio.services.review.matching`) and :meth:`Review.score` is a few
vectorised passes over flat arrays of all boxes. The confidence-independent figures (pycocotools mAP,
PR curves, the F1 sweep) are computed by the training's own code in ``rfdetr_core.evaluation``, once,
so they are the numbers the run page shows. Re-scoring after ground-truth fixes is a new ``Review``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rfdetr_core.evaluation import STAT_NAMES, CocoEvaluator, sweep
from rfdetr_core.evaluation.coco_eval import (
    build_coco_ground_truth,
    load_detections,
    per_class_ap,
    run_cocoeval,
)
from studio.services.review import matching as rm
from studio.services.review.data import ReviewData

GALLERY_KINDS = ("errors", "fp_class", "fp_duplicate", "fp_background", "fn", "correct")
_FP_KINDS = {"fp_class": rm.FP_CLASS, "fp_duplicate": rm.FP_DUPLICATE, "fp_background": rm.FP_BACKGROUND}


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _prf(tp: np.ndarray, fp: np.ndarray, num_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 (0 where undefined, as the training sweep reports them)."""
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, num_gt)
    return precision, recall, _ratio(2 * precision * recall, precision + recall)


def _row_sets(mask: np.ndarray) -> list[frozenset[int]]:
    """Column indices set in each row of a boolean matrix."""
    rows, cols = np.nonzero(mask)
    bounds = np.searchsorted(rows, np.arange(mask.shape[0] + 1))
    cols = cols.tolist()
    return [frozenset(cols[a:b]) for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]


@dataclass(frozen=True)
class ImageResult:
    """One image's counts at a confidence / IoU. ``classes``: class indices of its ground truth and kept
    predictions; ``error_classes``: classes of its FPs (predicted class) and FNs; ``kind_classes``: the
    same per error kind; ``cells``: the confusion-matrix cells (matrix indices) it contributes to."""

    image_id: int
    index: int
    tp: int
    fp_class: int
    fp_duplicate: int
    fp_background: int
    fn: int
    f1: float
    n_errors: int
    classes: frozenset[int]
    error_classes: frozenset[int]
    kind_classes: dict[str, frozenset[int]]
    cells: frozenset[tuple[int, int]]

    @property
    def fp(self) -> int:
        return self.fp_class + self.fp_duplicate + self.fp_background


class _LazyMatches(Sequence):
    """Per-image :class:`~studio.services.review.matching.ImageMatch`, built when first indexed (the page
    renders a handful of images per slider move, so building all of them would be wasted)."""

    def __init__(self, review: Review, kind: np.ndarray, pred_gt: np.ndarray, gt_matched: np.ndarray) -> None:
        self._review, self._kind, self._pred_gt, self._gt_matched = review, kind, pred_gt, gt_matched
        self._built: dict[int, rm.ImageMatch] = {}

    def __len__(self) -> int:
        return len(self._review.data.images)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]
        if index not in self._built:
            r = self._review
            p = slice(r._pred_offsets[index], r._pred_offsets[index + 1])
            g = slice(r._gt_offsets[index], r._gt_offsets[index + 1])
            pred_gt = np.where(self._pred_gt[p] >= 0, self._pred_gt[p] - g.start, -1)
            self._built[index] = rm.assemble(
                self._kind[p], pred_gt, r._pred_labels[p], r._gt_labels[g], self._gt_matched[g]
            )
        return self._built[index]


@dataclass
class Scored:
    """All images matched at ``conf`` / ``iou_thr``. ``confusion`` is (K+1, K+1): rows ground-truth class,
    columns predicted class, the last row / column "background"; ``labels`` names its rows / columns."""

    conf: float
    iou_thr: float
    images: list[ImageResult]
    totals: dict[str, float]
    per_class: list[dict[str, Any]]
    confusion: np.ndarray
    labels: list[str]
    matches: Sequence[rm.ImageMatch] = field(repr=False)

    def gallery(
        self, class_index: int | None = None, kind: str | None = None, cell: tuple[int, int] | None = None
    ) -> list[ImageResult]:
        """Images worst first (most errors, then lowest F1, then image id), optionally filtered.

        ``kind``: one of :data:`GALLERY_KINDS` ("errors" = any error, "correct" = none). ``class_index``
        alone keeps images where the class occurs (ground truth or kept prediction); combined with an error
        kind it keeps images where *that class* has that kind of error (a missed cat, not a missed dog next
        to a correct cat). ``cell``: (row, col) of :attr:`confusion`.
        """
        if kind is not None and kind not in GALLERY_KINDS:
            raise ValueError(f"kind must be one of {GALLERY_KINDS}, got {kind!r}")
        chosen = []
        for res in self.images:
            if kind == "errors" and not res.n_errors or kind == "correct" and res.n_errors:
                continue
            if kind in _FP_KINDS or kind == "fn":
                if not getattr(res, kind):
                    continue
            if class_index is not None:
                pool = {None: res.classes, "correct": res.classes, "errors": res.error_classes}.get(kind)
                if class_index not in (res.kind_classes[kind] if pool is None else pool):
                    continue
            if cell is not None and tuple(cell) not in res.cells:
                continue
            chosen.append(res)
        return sorted(chosen, key=lambda r: (-r.n_errors, r.f1, r.image_id))


@dataclass(frozen=True)
class _Geometry:
    """Confidence-independent matching at one IoU threshold, over the flat arrays of a :class:`Review`."""

    matched: np.ndarray  # (n_pred,) global ground-truth index claimed by the prediction, -1
    same: np.ndarray  # (n_pred,) overlaps a same-class ground truth
    other: np.ndarray  # (n_pred,) overlaps an other-class ground truth
    gt_claim_score: np.ndarray  # (n_gt,) score of the prediction that claims it, -inf
    pair_candidates: dict[int, list[int]]  # prediction -> other-class overlapping ground truth, best first


class Review:
    """A run's stored predictions on a split, analysed; see the module docstring."""

    def __init__(self, data: ReviewData) -> None:
        self.data = data
        self.class_names = list(data.class_names)
        k = len(self.class_names)
        images = data.images
        for im in images:
            if im.preds.scores is None:
                raise ValueError(f"image {im.image_id}: predictions need scores")
            for boxes in (im.gt, im.preds):
                if len(boxes) and (boxes.labels.min() < 0 or boxes.labels.max() >= k):
                    raise ValueError(f"image {im.image_id}: class index outside 0..{k - 1}")
        n_pred = np.array([len(im.preds) for im in images], np.int64)
        n_gt = np.array([len(im.gt) for im in images], np.int64)
        self._pred_offsets = np.concatenate([[0], np.cumsum(n_pred)]).tolist()
        self._gt_offsets = np.concatenate([[0], np.cumsum(n_gt)]).tolist()
        self._pred_image = np.repeat(np.arange(len(images)), n_pred)
        self._gt_image = np.repeat(np.arange(len(images)), n_gt)
        self._scores = np.concatenate([im.preds.scores for im in images] + [np.zeros(0)]).astype(np.float64)
        self._pred_labels = np.concatenate(
            [im.preds.labels for im in images] + [np.zeros(0, np.int64)]
        ).astype(np.int64)
        self._gt_labels = np.concatenate([im.gt.labels for im in images] + [np.zeros(0, np.int64)]).astype(
            np.int64
        )
        # per image (image, descending score, stored order) — the same order as review_matching.score_order
        self._order = np.lexsort((-self._scores, self._pred_image))
        self._ious = [rm.iou_matrix(im.preds.xyxy, im.gt.xyxy) for im in images]
        self._geometries: dict[float, _Geometry] = {}
        self._coco: tuple[dict[str, Any], Any] | None = None
        self._f1: dict[float, dict[str, Any]] = {}

    def _geometry(self, iou_thr: float) -> _Geometry:
        key = float(iou_thr)
        if key not in self._geometries:
            matched = np.full(len(self._scores), -1, np.int64)
            same, other = np.zeros(len(self._scores), bool), np.zeros(len(self._scores), bool)
            candidates: dict[int, list[int]] = {}
            thr = rm.effective_threshold(key)
            for i, iou in enumerate(self._ious):
                p0, p1 = self._pred_offsets[i], self._pred_offsets[i + 1]
                g0, g1 = self._gt_offsets[i], self._gt_offsets[i + 1]
                if p0 == p1 or g0 == g1:
                    continue
                labels, gt_labels = self._pred_labels[p0:p1], self._gt_labels[g0:g1]
                local = rm.greedy_match(iou, labels, gt_labels, self._order[p0:p1] - p0, key)
                matched[p0:p1] = np.where(local >= 0, local + g0, -1)
                same[p0:p1], other[p0:p1] = rm.overlap_flags(iou, labels, gt_labels, key)
                hits = (labels[:, None] != gt_labels[None, :]) & (iou >= thr)
                for row in np.flatnonzero(other[p0:p1]).tolist():
                    columns = np.flatnonzero(hits[row])
                    columns = columns[np.argsort(-iou[row, columns], kind="stable")]
                    candidates[p0 + row] = (columns + g0).tolist()
            claim = np.full(len(self._gt_labels), -np.inf)
            claim[matched[matched >= 0]] = self._scores[matched >= 0]
            self._geometries[key] = _Geometry(matched, same, other, claim, candidates)
        return self._geometries[key]

    def score(self, conf: float, iou_thr: float = 0.5) -> Scored:
        """Every image matched at confidence ``conf`` (predictions scoring ``>= conf``) and ``iou_thr``."""
        geo = self._geometry(iou_thr)
        kept = self._scores >= conf
        kind = rm.classify(kept, geo.matched, geo.same, geo.other)
        gt_matched = geo.gt_claim_score >= conf
        paired = np.full(len(self._scores), -1, np.int64)
        taken = gt_matched.copy()
        for row in self._order[kind[self._order] == rm.FP_CLASS].tolist():
            for column in geo.pair_candidates[row]:
                if not taken[column]:
                    paired[row], taken[column] = column, True
                    break
        pred_gt = np.where(kind == rm.TP, geo.matched, paired)
        confusion, cells = self._confusion(kept, kind, paired, gt_matched, taken)
        images = self._image_results(kept, kind, gt_matched, cells)
        totals, per_class = self._summaries(kept, kind, gt_matched)
        return Scored(
            float(conf),
            float(iou_thr),
            images,
            totals,
            per_class,
            confusion,
            self.class_names + ["background"],
            _LazyMatches(self, kind, pred_gt, gt_matched),
        )

    def _confusion(
        self,
        kept: np.ndarray,
        kind: np.ndarray,
        paired: np.ndarray,
        gt_matched: np.ndarray,
        taken: np.ndarray,
    ) -> tuple[np.ndarray, list[frozenset[tuple[int, int]]]]:
        """The (K+1)² matrix and each image's set of cells (see review_matching for the rules)."""
        bg = len(self.class_names)
        side = bg + 1
        rows = np.where(kind == rm.TP, self._pred_labels, bg)
        rows[paired >= 0] = self._gt_labels[paired[paired >= 0]]
        missed = ~taken  # neither claimed nor paired
        flat = np.concatenate(
            [rows[kept] * side + self._pred_labels[kept], self._gt_labels[missed] * side + bg]
        )
        where = np.concatenate([self._pred_image[kept], self._gt_image[missed]])
        confusion = np.bincount(flat, minlength=side * side).reshape(side, side)
        keys = np.unique(where * side * side + flat)
        image_of, cell = keys // (side * side), keys % (side * side)
        bounds = np.searchsorted(image_of, np.arange(len(self.data.images) + 1)).tolist()
        pairs = list(zip((cell // side).tolist(), (cell % side).tolist(), strict=True))
        return confusion, [frozenset(pairs[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def _image_results(
        self,
        kept: np.ndarray,
        kind: np.ndarray,
        gt_matched: np.ndarray,
        cells: list[frozenset[tuple[int, int]]],
    ) -> list[ImageResult]:
        n, k = len(self.data.images), len(self.class_names)
        counts = np.bincount(self._pred_image[kept] * 4 + kind[kept], minlength=n * 4).reshape(n, 4)
        fn = np.bincount(self._gt_image[~gt_matched], minlength=n)
        present = np.zeros((n, k), bool)
        present[self._pred_image[kept], self._pred_labels[kept]] = True
        present[self._gt_image, self._gt_labels] = True
        masks = {}
        for name, code in _FP_KINDS.items():
            masks[name] = np.zeros((n, k), bool)
            masks[name][self._pred_image[kind == code], self._pred_labels[kind == code]] = True
        masks["fn"] = np.zeros((n, k), bool)
        masks["fn"][self._gt_image[~gt_matched], self._gt_labels[~gt_matched]] = True
        any_error = np.logical_or.reduce(list(masks.values()))
        sets = {name: _row_sets(mask) for name, mask in masks.items()}
        classes, error_classes = _row_sets(present), _row_sets(any_error)
        results = []
        for i, (im, (tp, fc, fd, fb), f) in enumerate(
            zip(self.data.images, counts.tolist(), fn.tolist(), strict=True)
        ):
            fp = fc + fd + fb
            results.append(
                ImageResult(
                    im.image_id,
                    i,
                    tp,
                    fc,
                    fd,
                    fb,
                    f,
                    rm.image_f1(tp, fp, f),
                    fp + f,
                    classes[i],
                    error_classes[i],
                    {name: s[i] for name, s in sets.items()},
                    cells[i],
                )
            )
        return results

    def _summaries(
        self, kept: np.ndarray, kind: np.ndarray, gt_matched: np.ndarray
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Totals (micro over boxes, and macro over classes with ground truth as training reports) and
        per-class rows."""
        k = len(self.class_names)
        tp = np.bincount(self._pred_labels[kind == rm.TP], minlength=k)
        fp = np.bincount(self._pred_labels[kept & (kind != rm.TP)], minlength=k)
        num_gt = np.bincount(self._gt_labels, minlength=k)
        fn = np.bincount(self._gt_labels[~gt_matched], minlength=k)
        precision, recall, f1 = _prf(tp, fp, num_gt)
        by_kind = np.bincount(kind[kept], minlength=4)
        micro = _prf(tp.sum(), fp.sum(), num_gt.sum())
        with_gt = num_gt > 0
        macro = [float(m[with_gt].mean()) if with_gt.any() else 0.0 for m in (precision, recall, f1)]
        totals = {
            "tp": int(by_kind[rm.TP]),
            "fp_class": int(by_kind[rm.FP_CLASS]),
            "fp_duplicate": int(by_kind[rm.FP_DUPLICATE]),
            "fp_background": int(by_kind[rm.FP_BACKGROUND]),
            "fp": int(fp.sum()),
            "fn": int(fn.sum()),
            "num_gt": int(num_gt.sum()),
            "precision": float(micro[0]),
            "recall": float(micro[1]),
            "f1": float(micro[2]),
            "macro_precision": macro[0],
            "macro_recall": macro[1],
            "macro_f1": macro[2],
        }
        per_class = [
            {
                "name": name,
                "tp": int(tp[c]),
                "fp": int(fp[c]),
                "fn": int(fn[c]),
                "num_gt": int(num_gt[c]),
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
            }
            for c, name in enumerate(self.class_names)
        ]
        return totals, per_class

    # -- confidence-independent figures, computed by rfdetr_core.evaluation (the training's code) --

    def _dicts(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Predictions and targets in the format ``rfdetr_core.evaluation`` takes."""
        preds = [
            {"boxes": im.preds.xyxy, "scores": im.preds.scores, "labels": im.preds.labels}
            for im in self.data.images
        ]
        targets = [
            {
                "boxes": im.gt.xyxy,
                "labels": im.gt.labels,
                "image_id": im.image_id,
                "orig_size": (im.height, im.width),
            }
            for im in self.data.images
        ]
        return preds, targets

    def _cocoeval(self) -> tuple[dict[str, Any], Any]:
        if self._coco is None:
            evaluator = CocoEvaluator(self.class_names, max_dets=100)
            evaluator.update(*self._dicts())
            if not evaluator.images:
                raise ValueError("nothing to evaluate: the split has no images")
            # CocoEvaluator.compute() in steps, to keep the COCOeval object (its precision table) for PR curves
            ground_truth = build_coco_ground_truth(
                evaluator.images, evaluator.annotations, len(self.class_names)
            )
            coco_eval = run_cocoeval(
                ground_truth, load_detections(ground_truth, evaluator.detections), evaluator.max_dets
            )
            metrics: dict[str, Any] = {n: float(v) for n, v in zip(STAT_NAMES, coco_eval.stats, strict=True)}
            num_gt = np.bincount(self._gt_labels, minlength=len(self.class_names))
            metrics["per_class"] = [
                {
                    "name": name,
                    "AP_50_95": row["AP"],
                    "AP_50": row["AP50"],
                    "AR": row["AR"],
                    "num_gt": int(num_gt[c]),
                }
                for c, (name, row) in enumerate(zip(self.class_names, per_class_ap(coco_eval), strict=True))
            ]
            self._coco = (metrics, coco_eval)
        return self._coco

    def coco_metrics(self) -> dict[str, Any]:
        """pycocotools over all stored predictions, as training's validation: the 12 COCO statistics by name
        (``mAP_50_95``, ``mAP_50``, ...) and ``per_class`` rows (name, AP_50_95, AP_50, AR, num_gt; AP is
        None for a class without ground truth). Computed once."""
        return self._cocoeval()[0]

    def ap_table(self, scored: Scored) -> list[dict[str, Any]]:
        """Per class: AP@50:95 and AP@50 (all predictions) next to precision / recall at ``scored``'s conf."""
        coco = self.coco_metrics()["per_class"]
        return [
            {
                "name": ap["name"],
                "AP_50_95": ap["AP_50_95"],
                "AP_50": ap["AP_50"],
                "precision": pr["precision"],
                "recall": pr["recall"],
                "num_gt": ap["num_gt"],
            }
            for ap, pr in zip(coco, scored.per_class, strict=True)
        ]

    def pr_curves(self, iou_thr: float = 0.5) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per class with ground truth: (recall, precision) on pycocotools' 101 recall points, area "all",
        100 detections per image, at the pycocotools IoU threshold (0.50, 0.55, ..., 0.95) nearest to
        ``iou_thr`` — pycocotools has no others, and the page's IoU slider may ask for e.g. 0.3 (-> 0.50)."""
        coco_eval = self._cocoeval()[1]
        nearest = int(np.argmin(np.abs(coco_eval.params.iouThrs - iou_thr)))
        precision = coco_eval.eval["precision"][nearest, :, :, 0, -1]  # [R, K]
        recall = np.asarray(coco_eval.params.recThrs, np.float64)
        return {
            name: (recall.copy(), precision[:, c].copy())
            for c, name in enumerate(self.class_names)
            if (precision[:, c] > -1).any()
        }

    def f1_optimal(self, iou_thr: float = 0.5) -> dict[str, Any]:
        """The F1-optimal confidence by ``rfdetr_core.evaluation.sweep`` (the training's numbers at IoU 0.5):
        ``threshold``, ``f1`` / ``precision`` / ``recall`` (macro over classes with ground truth) there,
        ``per_class`` {name: each class's own best threshold, f1, precision, recall, num_gt} and ``curve``
        (``thresholds``, ``f1``, ``precision``, ``recall`` arrays) for a plot. Computed once per IoU."""
        key = float(iou_thr)
        if key not in self._f1:
            result = sweep(*self._dicts(), iou_threshold=key)
            best = result.best_index
            per_class = {}
            for row, class_id in enumerate(result.class_ids):
                own = int(np.argmax(result.f1[row]))
                per_class[self.class_names[class_id]] = {
                    "threshold": float(result.thresholds[own]),
                    "f1": float(result.f1[row, own]),
                    "precision": float(result.precision[row, own]),
                    "recall": float(result.recall[row, own]),
                    "num_gt": int(result.num_gt[row]),
                }
            self._f1[key] = {
                "threshold": result.best_threshold,
                "f1": float(result.macro_f1[best]),
                "precision": float(result.macro_precision[best]),
                "recall": float(result.macro_recall[best]),
                "per_class": per_class,
                "curve": {
                    "thresholds": result.thresholds.copy(),
                    "f1": result.macro_f1.copy(),
                    "precision": result.macro_precision.copy(),
                    "recall": result.macro_recall.copy(),
                },
            }
        return self._f1[key]
