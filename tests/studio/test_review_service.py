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
from studio.store import Category, Image, Prediction
from studio.text import md_text
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


def _original_names(store) -> dict[int, str]:
    with store.session(readonly=True) as s:
        return {image_id: name for image_id, name in s.execute(select(Image.id, Image.original_name))}


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
    original = _original_names(store)
    # the user's own file names, never "img 12" or the stored file's content hash (issue 19 item 7)
    assert all(caption.startswith(original[i] + " · ") for (_, caption), i in zip(items, ids, strict=True))
    assert not any(review.data.images[0].path.stem in caption for _, caption in items)
    errors_only = rv.gallery(review, scored, kind="errors")[1]
    assert set(errors_only) <= set(ids)
    picture, text = rv.detail(review, scored, ids[0])
    assert picture.shape[1] > picture.shape[0]  # two panels side by side
    assert text.startswith(f"**{md_text(original[ids[0]])}** · image #{ids[0]} · ")
    table = plots.ap_table(review.ap_table(scored))
    with_gt = table[table["GT boxes"] != 0]
    assert len(with_gt) and all(isinstance(v, float) for v in with_gt["AP@50:95"])
    with pytest.raises(Exception, match="not in this review"):
        rv.detail(review, scored, 10**9)


def test_view_is_the_page_at_thresholds_and_filters(reviewed) -> None:
    store, run_id = reviewed
    view = rv.view(store, run_id, "valid", 0.3, 0.5, rv.Filters(kind="all"))
    review = rv.open_review(store, run_id, "valid")
    assert view.ids == rv.gallery(review, review.score(0.3, 0.5), kind="all")[1]
    assert view.selected == view.ids[0] and view.picture is not None
    assert "data-conf='0.3'" in view.counts and "data-view='all||'" in view.counts
    assert view.class_names == review.data.class_names and 0.0 <= view.best_conf <= 1.0
    # the selected image stays selected while it is in the gallery, else the worst one is shown
    assert (
        rv.view(store, run_id, "valid", 0.3, 0.5, rv.Filters(kind="all"), view.ids[1]).selected == view.ids[1]
    )
    assert rv.view(store, run_id, "valid", 0.3, 0.5, rv.Filters(kind="all"), 10**9).selected == view.ids[0]
    missed = rv.view(
        store, run_id, "valid", 0.3, 0.5, rv.Filters(kind="all", cell=(0, len(view.class_names)))
    )
    assert "→ predicted **background**" in missed.cell_text and set(missed.ids) <= set(view.ids)
    assert rv.view(store, None, "valid", 0.3, 0.5).status == rv.NO_RUN
    assert rv.view(store, run_id, "test", 0.3, 0.5).status == rv.NO_PREDICTIONS


def test_file_names_are_the_users_and_escaped(reviewed) -> None:
    """A file name is shown as the user's file had it, as text: markup in it is not run (issue 13)."""
    store, run_id = reviewed
    hostile = "<img src=x onerror=window.__xss=1>_*x*_.png"
    with store.session() as s:
        image = s.scalars(select(Image).where(Image.split == "valid").order_by(Image.id)).first()
        image.original_name, image_id = hostile, image.id
    view = rv.view(store, run_id, "valid", 0.0, 0.5, rv.Filters(kind="all"), image_id)
    assert view.selected == image_id
    assert view.detail.startswith(f"**{md_text(hostile)}** · image #{image_id}")
    assert "<img" not in view.detail and "&lt;img" in view.detail
    caption = view.gallery[view.ids.index(image_id)][1]
    assert caption.startswith(hostile + " · ")  # the gallery shows captions as plain text


def test_page_texts_escape_class_names() -> None:
    assert rv.cell_text(["<b>cat</b>", "background"], (0, 1), 3) == (
        "Matrix filter: ground truth **&lt;b&gt;cat&lt;/b&gt;** → predicted **background** · 3 image(s)"
    )
    assert rv.cell_text(["cat"], None, 0) == ""
    totals = dict(
        tp=1, fp_class=0, fp_duplicate=0, fp_background=2, fn=3, precision=0.3, recall=0.25, f1=0.27
    )
    html = rv.counts_html(totals, 0.4, 0.5, "all|<x>'|")
    assert "data-view='all|&lt;x&gt;&#x27;|'" in html and "data-name='Missed'><b>3</b>" in html
    assert rv.parse_cell("2,3,1712345678901") == (2, 3) and rv.parse_cell("2") is None
    assert rv.parse_cell(None) is None and rv.parse_cell("a,b") is None
