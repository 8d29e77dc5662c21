"""The Review page's service layer end to end on a real finished run: stored predictions, the cached
analysis, the gallery / detail pictures, and re-scoring after a ground-truth fix without the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from studio.services.label import labeling as lab
from studio.services.review import analysis as rv
from studio.services.review import plots
from studio.services.review import predictions as rp
from studio.services.review.matching import FP_BACKGROUND, TP
from studio.store import Category, Prediction
from tests.support.review_fixtures import copy_project


@pytest.fixture()
def reviewed(finished_run_template, tmp_path: Path):
    project, run_id = finished_run_template
    store = copy_project(project, tmp_path / "project")
    rp.compute_predictions(store, run_id, "valid")
    yield store, run_id
    store.close()


def _prediction_rows(store) -> tuple[int, str]:
    with store.session(readonly=True) as s:
        return s.scalar(select(func.count(Prediction.id))), str(
            s.scalar(select(func.max(Prediction.created_at)))
        )


def test_review_is_cached_until_labels_change(reviewed) -> None:
    store, run_id = reviewed
    first = rv.open_review(store, run_id, "valid")
    assert rv.open_review(store, run_id, "valid") is first
    assert rv.open_review(store, run_id, "valid", rebuild=True) is not first
    assert first.coco_metrics()["mAP_50_95"] == pytest.approx(
        rp.recorded_map(store, run_id)["mAP_50_95"], abs=1e-6
    )


def test_fixing_ground_truth_rescores_without_the_model(reviewed) -> None:
    """A confident 'background' false positive is really an object the labeler missed: adding it as a
    ground-truth box in the Label service turns it into a true positive on the next review."""
    store, run_id = reviewed
    before_rows = _prediction_rows(store)
    review = rv.open_review(store, run_id, "valid")
    scored = review.score(0.0, 0.5)
    # the highest-scoring background FP of the split
    best = None
    for k, image in enumerate(review.data.images):
        kinds = scored.matches[k].pred_kind
        for j in np.flatnonzero(kinds == FP_BACKGROUND):
            if best is None or image.preds.scores[j] > best[2]:
                best = (k, j, image.preds.scores[j])
    assert best is not None, "the tiny run makes background false positives"
    k, j, score = best
    image = review.data.images[k]
    x0, y0, x1, y1 = image.preds.xyxy[j]
    name = review.data.class_names[image.preds.labels[j]]
    with store.session(readonly=True) as s:
        category_id = s.scalar(select(Category.id).where(Category.name == name))
    state = lab.load_image(store, image.image_id)
    boxes = [*state.boxes, lab.Box(float(x0), float(y0), float(x1 - x0), float(y1 - y0), category_id)]
    lab.save_image(store, image.image_id, boxes, state.version)

    fixed = rv.open_review(store, run_id, "valid")  # the labels changed: rebuilt, not the cached one
    assert fixed is not review
    rescored = fixed.score(0.0, 0.5)
    assert rescored.matches[k].pred_kind[j] == TP
    assert rescored.totals["tp"] == scored.totals["tp"] + 1
    assert rescored.totals["fp"] == scored.totals["fp"] - 1  # other boxes on it turn duplicate / wrong class
    assert rescored.totals["fp_background"] <= scored.totals["fp_background"] - 1
    assert rescored.totals["num_gt"] == scored.totals["num_gt"] + 1
    assert _prediction_rows(store) == before_rows  # the model was not run again


def test_gallery_detail_and_tables(reviewed) -> None:
    store, run_id = reviewed
    review = rv.open_review(store, run_id, "valid")
    scored = review.score(0.2, 0.5)
    items, ids, total = rv.gallery(review, scored, kind="all")
    assert ids == [r.image_id for r in scored.gallery()] and len(ids) == len(review.data) == total
    assert rv.gallery(review, scored, kind="all", limit=3)[1:] == (ids[:3], total)
    assert all(img.ndim == 3 and img.dtype == np.uint8 for img, _ in items)
    assert all(caption.startswith(f"img {i}") for (_, caption), i in zip(items, ids, strict=True))
    errors_only = rv.gallery(review, scored, kind="errors")[1]
    assert set(errors_only) <= set(ids)
    picture, text = rv.detail(review, scored, ids[0])
    assert picture.shape[1] > picture.shape[0] and f"Image {ids[0]}" in text  # two panels side by side
    table = plots.ap_table(review.ap_table(scored))
    with_gt = table[table["GT boxes"] != 0]
    assert len(with_gt) and all(isinstance(v, float) for v in with_gt["AP@50:95"])
    with pytest.raises(Exception, match="not in this review"):
        rv.detail(review, scored, 10**9)
