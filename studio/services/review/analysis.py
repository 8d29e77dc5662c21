"""What the Review page asks for, in one place: an analysed run (cached), the worst-first gallery and
one image's side-by-side view.

Why a cache: building a :class:`~studio.services.review.metrics.Review` reads every stored prediction of
the split and computes its IoU matrices; pycocotools' AP is computed once per review on top. A slider
move must only re-score, so the built review is kept while neither the stored predictions nor the
split's ground truth changed. Ground truth is fingerprinted by the images' edit versions: saving an image
in the Label page bumps its version, so coming back to Review (or pressing *Re-score*) rebuilds against
the corrected labels — without running the model again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from sqlalchemy import func, select

from studio.errors import StudioError
from studio.services.review import predictions as rp
from studio.services.review import render
from studio.services.review.metrics import Review, Scored
from studio.store import Annotation, Image, ProjectStore

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
_cache: OrderedDict[tuple, Review] = OrderedDict()
_lock = threading.Lock()


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
        raise StudioError(f"Run #{run_id} has no predictions on '{split}' yet: press *Compute predictions*.")
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


def gallery(
    review: Review,
    scored: Scored,
    class_index: int | None = None,
    kind: str = "errors",
    cell: tuple[int, int] | None = None,
    limit: int = GALLERY_LIMIT,
) -> tuple[list[tuple[np.ndarray, str]], list[int], int]:
    """Thumbnails (worst first, at most ``limit``) with captions, their image ids in the same order, and
    how many images match the filters in all."""
    results = scored.gallery(class_index=class_index, kind=None if kind == "all" else kind, cell=cell)
    items, ids = [], []
    names = review.data.class_names
    for res in results[:limit]:
        image = review.data.images[res.index]
        match = scored.matches[res.index]
        thumb = render.thumbnail(image, match.pred_kind, match.gt_matched, names)
        items.append((thumb, render.caption(_counts(res))))
        ids.append(res.image_id)
    return items, ids, len(results)


def _counts(res: Any) -> dict[str, Any]:
    return {
        "image_id": res.image_id,
        "tp": res.tp,
        "fp_class": res.fp_class,
        "fp_duplicate": res.fp_duplicate,
        "fp_background": res.fp_background,
        "fn": res.fn,
        "f1": res.f1,
    }


def detail(review: Review, scored: Scored, image_id: int) -> tuple[np.ndarray, str]:
    """Ground truth and predictions of one image side by side, and a line describing its errors."""
    try:
        index = review.data.index_of(int(image_id))
    except KeyError:
        raise StudioError(f"Image {image_id} is not in this review.") from None
    image = review.data.images[index]
    match = scored.matches[index]
    picture = render.render_side_by_side(image, match.pred_kind, match.gt_matched, review.data.class_names)
    res = next(r for r in scored.images if r.index == index)
    text = (
        f"**Image {image.image_id}** (`{image.path.name}`, {image.width}×{image.height}) · "
        f"{res.tp} TP · {res.fp_class} wrong class · {res.fp_duplicate} duplicate · "
        f"{res.fp_background} background · {res.fn} missed · F1 {res.f1:.2f}"
    )
    return picture, text
