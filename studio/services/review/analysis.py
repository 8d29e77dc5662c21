"""What the Review page asks for, in one place: an analysed run (cached), the whole view of it at the
user's thresholds and filters, the worst-first gallery, one image's side-by-side view and the FiftyOne
hand-off.

Why a cache: building a :class:`~studio.services.review.metrics.Review` reads every stored prediction of
the split and computes its IoU matrices; pycocotools' AP is computed once per review on top. A slider
move must only re-score, so the built review is kept while neither the stored predictions nor the
split's ground truth changed. Ground truth is fingerprinted by the images' edit versions: saving an image
in the Label page bumps its version, so coming back to Review (or pressing *Re-score*) rebuilds against
the corrected labels — without running the model again.

Every file- or user-derived string (class names, file names) that this module puts into Markdown or HTML
goes through :mod:`studio.text`; gallery captions are plain text (the gallery shows them as typed).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select

from studio.errors import StudioError
from studio.services.review import fiftyone_bridge as fob
from studio.services.review import plots, render
from studio.services.review import predictions as rp
from studio.services.review.metrics import Review, Scored
from studio.store import Annotation, Image, ProjectStore
from studio.text import html_text, md_text, quote

CACHE_SIZE = 4
GALLERY_LIMIT = 48
KINDS = {
    "errors": "Images with errors",
    "fp_class": "Wrong class (FP)",
    "fp_duplicate": "Duplicate (FP)",
    "fp_background": "Background (FP)",
    "fn": "Missed (FN)",
    "correct": "No errors",
    "all": "All images",
}
NO_RUN = "No finished run yet: train one on the **Train** tab, then review it here."
NO_PREDICTIONS = (
    "No predictions for this run and split yet: press **Compute predictions** (runs the model once)."
)
_cache: OrderedDict[tuple, Review] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class Filters:
    """Which images the gallery shows: a class involved, an error kind, a confusion-matrix cell."""

    class_index: int | None = None
    kind: str = "errors"
    cell: tuple[int, int] | None = None


@dataclass(frozen=True)
class ReviewView:
    """Everything the page shows for one run, split, thresholds and filters, as plain data.

    ``status`` and ``detail`` are Markdown, ``counts`` HTML, ``gallery`` (picture, caption) pairs whose
    image ids are ``ids`` (same order); ``selected`` is the image in the detail view. Figures and the
    table are None when there is nothing reviewed yet.
    """

    status: str
    counts: str = ""
    gallery: list[tuple[np.ndarray, str]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    selected: int | None = None
    picture: np.ndarray | None = None
    detail: str = ""
    cell_text: str = ""
    confusion: Any = None
    pr: Any = None
    f1: Any = None
    table: Any = None
    best_conf: float | None = None
    class_names: list[str] | None = None


def ground_truth_token(store: ProjectStore, split: str) -> tuple[int, int, int]:
    """Changes whenever a box of the split is saved: (images, sum of edit versions, gt boxes)."""
    with store.session(readonly=True) as s:
        n, versions = s.execute(
            select(func.count(Image.id), func.coalesce(func.sum(Image.version), 0)).where(
                Image.split == split
            )
        ).one()
        boxes = s.scalar(
            select(func.count(Annotation.id))
            .join(Image)
            .where(Image.split == split, Annotation.source == "gt")
        )
    return int(n), int(versions), int(boxes or 0)


def open_review(
    store: ProjectStore, run_id: int, split: str, checkpoint: str = "best", rebuild: bool = False
) -> Review:
    """The analysed predictions of a run on a split (built once, then reused until labels change)."""
    info = rp.prediction_status(store, run_id, split, checkpoint)
    if info is None:
        raise StudioError(
            f"Run #{run_id} has no predictions on {quote(split)} yet: press *Compute predictions*."
        )
    key = (
        str(store.path.resolve()),
        run_id,
        split,
        checkpoint,
        str(info.created_at),
        ground_truth_token(store, split),
    )
    with _lock:
        if not rebuild and key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    review = Review(rp.load_review_data(store, run_id, split, checkpoint))
    with _lock:
        _cache[key] = review
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return review


# --------------------------------------------------------------------------- the page's view


def view(
    store: ProjectStore,
    run_id: int | None,
    split: str,
    conf: float,
    iou: float,
    filters: Filters | None = None,
    selected: int | None = None,
    rebuild: bool = False,
) -> ReviewView:
    """The page at these thresholds and filters; ``selected`` stays in the detail view while it is still
    in the gallery (else the worst image is shown)."""
    filters = filters or Filters()
    if run_id is None:
        return ReviewView(NO_RUN)
    info = rp.prediction_status(store, run_id, split)
    if info is None:
        return ReviewView(NO_PREDICTIONS)
    review = open_review(store, run_id, split, rebuild=rebuild)
    scored = review.score(conf, iou)
    items, ids, n_matching = gallery(review, scored, filters.class_index, filters.kind, filters.cell)
    selected = selected if selected in ids else (ids[0] if ids else None)
    picture, text = detail(review, scored, selected) if selected is not None else (None, "No image matches.")
    best = review.f1_optimal(iou)
    recorded = rp.recorded_map(store, run_id) if split == "valid" else None
    return ReviewView(
        status=status_text(info, review, recorded),
        counts=counts_html(scored.totals, conf, iou, _view_key(filters)),
        gallery=items,
        ids=ids,
        selected=selected,
        picture=picture,
        detail=text,
        cell_text=cell_text(scored.labels, filters.cell, n_matching),
        **_figures(review, scored, iou, conf, best),
        best_conf=float(best["threshold"]),
        class_names=list(review.data.class_names),
    )


def _figures(review: Review, scored: Scored, iou: float, conf: float, best: dict[str, Any]) -> dict:
    """The confusion matrix, PR and F1 curves and the per-class table (keyword arguments of the view)."""
    curve = best.get("curve") or {}
    rows = review.ap_table(scored)
    ap50 = {r["name"]: r["AP_50"] for r in rows if r.get("AP_50") is not None}
    return {
        "confusion": plots.confusion_figure(scored.confusion, scored.labels),
        "pr": plots.pr_figure(review.pr_curves(iou), ap50),
        "f1": plots.f1_figure(
            curve.get("thresholds", []),
            curve.get("f1", []),
            curve.get("precision", []),
            curve.get("recall", []),
            best.get("threshold"),
            conf,
        ),
        "table": plots.ap_table(with_best_conf(rows, best)),
    }


def _view_key(filters: Filters) -> str:
    cls = "" if filters.class_index is None else str(filters.class_index)
    cell = f"{filters.cell[0]},{filters.cell[1]}" if filters.cell else ""
    return f"{filters.kind}|{cls}|{cell}"


def status_text(info: rp.PredictionSetInfo | None, review: Review | None, recorded: dict | None) -> str:
    """When and how the predictions were made, and the mAP on the current labels next to the run's own."""
    if info is None:
        return NO_PREDICTIONS
    text = (
        f"Predictions of run #{info.run_id} ({info.checkpoint} checkpoint) on **{info.split}**: "
        f"{info.n_images} images, {info.n_predictions} boxes, computed {info.created_at:%Y-%m-%d %H:%M} "
        f"in {info.seconds:.1f} s."
    )
    if info.stale:
        text += " ⚠ The checkpoint or the split's images changed since: compute again to include them."
    if review is None:
        return text
    coco = review.coco_metrics()
    text += f"\n\n**mAP@50:95 {coco['mAP_50_95']:.4f} · mAP@50 {coco['mAP_50']:.4f}** on the current labels"
    if recorded and recorded.get("mAP_50_95") is not None and info.split == "valid":
        text += (
            f" (training reported {recorded['mAP_50_95']:.4f} / {recorded['mAP_50']:.4f} for the "
            f"{md_text(recorded.get('model', 'best'))} model at epoch {recorded.get('epoch')})"
        )
    if review.data.unknown_gt:
        text += (
            f". {review.data.unknown_gt} ground-truth boxes are of classes the model does not know (left out)"
        )
    return text + "."


def counts_html(totals: dict[str, Any], conf: float, iou: float, view_key: str = "") -> str:
    """The totals as tiles; ``data-*`` attributes say which thresholds and filters they belong to."""
    cells = [
        ("TP", totals["tp"], "ok"),
        ("Wrong class", totals["fp_class"], "bad"),
        ("Duplicate", totals["fp_duplicate"], "bad"),
        ("Background", totals["fp_background"], "bad"),
        ("Missed", totals["fn"], "bad"),
        ("Precision", f"{totals['precision']:.3f}", ""),
        ("Recall", f"{totals['recall']:.3f}", ""),
        ("F1", f"{totals['f1']:.3f}", ""),
    ]
    body = "".join(
        f"<div class='review-count {cls}' data-name='{name}'><b>{value}</b><span>{name}</span></div>"
        for name, value, cls in cells
    )
    return (
        f"<div class='review-counts' data-conf='{conf:g}' data-iou='{iou:g}' "
        f"data-view='{html_text(view_key)}' data-drawn='{time.time():.3f}'>{body}</div>"
    )


def cell_text(labels: list[str], cell: tuple[int, int] | None, n_matching: int) -> str:
    """The active confusion-matrix filter in words (empty without one)."""
    if cell is None:
        return ""
    row, col = (labels[k] if 0 <= k < len(labels) else f"#{k}" for k in cell)
    return (
        f"Matrix filter: ground truth **{md_text(row)}** → predicted **{md_text(col)}** · "
        f"{n_matching} image(s)"
    )


def with_best_conf(rows: list[dict], best: dict[str, Any]) -> list[dict]:
    """Per-class rows plus each class's own F1-optimal confidence (None for a class without ground truth)."""
    per_class = best.get("per_class") or {}
    return [
        {
            **row,
            "best_conf": (per_class.get(row["name"]) or {}).get("threshold") if row.get("num_gt") else None,
        }
        for row in rows
    ]


def parse_cell(text: str | None) -> tuple[int, int] | None:
    """The cell of the hidden click target's ``"row,col,timestamp"`` (None when it is not one)."""
    try:
        row, col = (int(v) for v in str(text).split(",")[:2])
    except (TypeError, ValueError):
        return None
    return row, col


def f1_threshold(store: ProjectStore, run_id: int, split: str, iou: float) -> float:
    """The confidence with the best F1 at ``iou``, rounded as the slider shows it."""
    return round(float(open_review(store, run_id, split).f1_optimal(iou)["threshold"]), 2)


def detail_of(
    store: ProjectStore, run_id: int, split: str, conf: float, iou: float, image_id: int
) -> tuple[np.ndarray, str]:
    """:func:`detail` of one image at the current thresholds."""
    review = open_review(store, run_id, split)
    return detail(review, review.score(conf, iou), image_id)


# --------------------------------------------------------------------------- gallery and detail


def gallery(
    review: Review,
    scored: Scored,
    class_index: int | None = None,
    kind: str = "errors",
    cell: tuple[int, int] | None = None,
    limit: int = GALLERY_LIMIT,
) -> tuple[list[tuple[np.ndarray, str]], list[int], int]:
    """Thumbnails (worst first, at most ``limit``) captioned with the user's file name, their image ids in
    the same order, and how many images match the filters in all."""
    results = scored.gallery(class_index=class_index, kind=None if kind == "all" else kind, cell=cell)
    items, ids = [], []
    names = review.data.class_names
    for res in results[:limit]:
        image = review.data.images[res.index]
        match = scored.matches[res.index]
        thumb = render.thumbnail(image, match.pred_kind, match.gt_matched, names)
        items.append((thumb, render.caption(_counts(res, image.shown_name))))
        ids.append(res.image_id)
    return items, ids, len(results)


def _counts(res: Any, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "image_id": res.image_id,
        "tp": res.tp,
        "fp_class": res.fp_class,
        "fp_duplicate": res.fp_duplicate,
        "fp_background": res.fp_background,
        "fn": res.fn,
        "f1": res.f1,
    }


def detail(review: Review, scored: Scored, image_id: int) -> tuple[np.ndarray, str]:
    """Ground truth and predictions of one image side by side, and a line naming it (the user's file
    name, as the Label page does) and describing its errors."""
    try:
        index = review.data.index_of(int(image_id))
    except KeyError:
        raise StudioError(f"Image {image_id} is not in this review.") from None
    image = review.data.images[index]
    match = scored.matches[index]
    picture = render.render_side_by_side(image, match.pred_kind, match.gt_matched, review.data.class_names)
    res = next(r for r in scored.images if r.index == index)
    text = (
        f"**{md_text(image.shown_name)}** · image #{image.image_id} · {image.width}×{image.height} · "
        f"{res.tp} TP · {res.fp_class} wrong class · {res.fp_duplicate} duplicate · "
        f"{res.fp_background} background · {res.fn} missed · F1 {res.f1:.2f}"
    )
    return picture, text


# --------------------------------------------------------------------------- FiftyOne


def open_fiftyone(
    store: ProjectStore,
    run_id: int,
    split: str,
    conf: float,
    iou: float,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """Every stored prediction goes to FiftyOne (so its mAP is the review's); the App's confidence
    filter then plays the role of the page's slider. Returns the Markdown with the App's link."""
    data = rp.load_review_data(store, run_id, split)
    name = fob.dataset_name(store.project().name, run_id, split)
    ours = open_review(store, run_id, split).coco_metrics()["mAP_50_95"]
    summary = fob.build_dataset(data, name, conf=0.0, iou=iou, progress=progress)
    url = fob.launch_app(name)
    fo_map = "—" if summary.mAP is None else format(summary.mAP, ".4f")
    return (
        f"FiftyOne dataset **{md_text(summary.name)}**: {summary.n_samples} samples, {summary.n_gt} "
        f"ground-truth and {summary.n_predictions} predicted boxes; `evaluate_detections` (eval key "
        f"`{summary.eval_key}`, IoU {iou:g}) mAP {fo_map} (Review: {ours:.4f}). Filter by confidence ≥ "
        f"{conf:g} in the App to see what this page shows. **[Open the FiftyOne App]({url})** ({url})"
    )
