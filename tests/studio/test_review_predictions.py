"""Stored predictions for the Review page, on a real tiny run trained once per session (real SQLite,
real checkpoint, real images). The key check: mAP from the stored rows equals the run's own
validation mAP for the model in its best checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update

from rfdetr_core.data import load_class_names
from rfdetr_core.evaluation import CocoEvaluator
from studio.errors import StudioError
from studio.services.review.predictions import (
    PredictionCancelled,
    compute_predictions,
    load_review_data,
    prediction_status,
    recorded_map,
    review_splits,
    reviewable_runs,
)
from studio.services.train import runs
from studio.store import Annotation, Category, Image, Prediction, ProjectStore, Run
from tests.support.review_fixtures import best_checkpoint, copy_project
from tests.support.studio_run_fixtures import TINY_RUN

pytestmark = pytest.mark.slow


@pytest.fixture
def project(finished_run_template: tuple[Path, int], tmp_path: Path):
    template, run_id = finished_run_template
    store = copy_project(template, tmp_path / "project")
    yield store, run_id
    store.close()


def _coco_map(data) -> dict:
    evaluator = CocoEvaluator(data.class_names)
    preds = [
        {"boxes": im.preds.xyxy, "scores": im.preds.scores, "labels": im.preds.labels} for im in data.images
    ]
    gts = [
        {
            "boxes": im.gt.xyxy,
            "labels": im.gt.labels,
            "image_id": im.image_id,
            "orig_size": (im.height, im.width),
        }
        for im in data.images
    ]
    evaluator.update(preds, gts)
    return evaluator.compute()


def _rows(store: ProjectStore, run_id: int) -> list[tuple]:
    with store.session(readonly=True) as s:
        return s.execute(
            select(Prediction.id, Prediction.image_id, Prediction.class_index, Prediction.score)
            .where(Prediction.run_id == run_id)
            .order_by(Prediction.id)
        ).all()


def test_stored_predictions_reproduce_the_runs_validation_map(project) -> None:
    store, run_id = project
    with store.session(readonly=True) as s:
        run = s.get(Run, run_id)
        snapshot = store.path / run.dataset_snapshot["path"]
        n_valid = s.scalar(select(func.count()).select_from(Image).where(Image.split == "valid"))
    assert prediction_status(store, run_id) is None
    seen: list[tuple[int, int]] = []
    info = compute_predictions(store, run_id, progress=lambda done, total: seen.append((done, total)))
    assert (info.n_images, info.stale, info.split, info.checkpoint) == (n_valid, False, "valid", "best")
    assert seen[-1] == (n_valid, n_valid) and len(seen) >= 2
    assert info.n_predictions == len(_rows(store, run_id)) > 0
    data = load_review_data(store, run_id)
    assert [im.image_id for im in data.images] == sorted(im.image_id for im in data.images)
    assert run.class_names == load_class_names(snapshot) != []  # recorded by the trainer
    assert data.class_names == run.class_names and data.unknown_gt == 0
    assert all(np.all(np.diff(im.preds.scores) <= 0) for im in data.images)  # post-processing order kept
    recorded = recorded_map(store, run_id)
    assert recorded["model"] in ("ema", "regular") and recorded["epoch"] >= 1
    assert recorded["mAP_50"] > 0.05 and recorded["mAP_50_95"] > 0  # so the comparison can fail
    ours = _coco_map(data)
    assert ours["mAP_50_95"] == pytest.approx(recorded["mAP_50_95"], abs=1e-6)
    assert ours["mAP_50"] == pytest.approx(recorded["mAP_50"], abs=1e-6)


def test_recompute_replaces_rows_and_staleness(project) -> None:
    store, run_id = project
    first = compute_predictions(store, run_id)
    rows = _rows(store, run_id)
    second = compute_predictions(store, run_id)
    again = _rows(store, run_id)
    assert len(again) == len(rows) == second.n_predictions == first.n_predictions
    with store.session(readonly=True) as s:  # replaced, not appended
        assert s.scalar(select(func.count()).select_from(Prediction)) == len(rows)
    assert [r[1:] for r in again] == [r[1:] for r in rows]  # same model, same images: same detections
    assert prediction_status(store, run_id).stale is False
    with store.session() as s:  # an image joins the valid split
        moved = s.scalar(select(Image.id).where(Image.split == "train").order_by(Image.id).limit(1))
        s.execute(update(Image).where(Image.id == moved).values(split="valid"))
    assert prediction_status(store, run_id).stale is True
    data = load_review_data(store, run_id)
    assert len(data.images[data.index_of(moved)].preds) == 0 and data.meta["stale"] is True
    compute_predictions(store, run_id)
    assert prediction_status(store, run_id).stale is False
    path = best_checkpoint(store, run_id)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # checkpoint rewritten
    assert prediction_status(store, run_id).stale is True


def test_cancel_keeps_previous_predictions(project) -> None:
    store, run_id = project
    with store.session() as s:  # small batches so the run has several of them
        s.execute(
            update(Run).where(Run.id == run_id).values(config={**s.get(Run, run_id).config, "batch_size": 1})
        )
    compute_predictions(store, run_id)
    before, status = _rows(store, run_id), prediction_status(store, run_id)
    calls = []

    def stop_on_second() -> bool:
        calls.append(1)
        return len(calls) >= 2

    with pytest.raises(PredictionCancelled):
        compute_predictions(store, run_id, should_stop=stop_on_second)
    assert _rows(store, run_id) == before and prediction_status(store, run_id) == status


def test_ground_truth_is_read_live_and_unknown_classes_are_counted(project) -> None:
    store, run_id = project
    compute_predictions(store, run_id)
    before = load_review_data(store, run_id)
    k = next(i for i, im in enumerate(before.images) if len(im.gt))
    image = before.images[k]
    ann_id = int(image.gt.ids[0])
    with store.session() as s:  # the user fixes a box on the Label page
        s.execute(update(Annotation).where(Annotation.id == ann_id).values(w=Annotation.w - 3))
        hexagon = Category(name="hexagon")
        s.add(hexagon)
        s.flush()
        s.add(Annotation(image_id=image.image_id, category_id=hexagon.id, x=1, y=1, w=5, h=5, source="gt"))
        s.add(
            Annotation(image_id=image.image_id, category_id=hexagon.id, x=2, y=2, w=5, h=5, source="proposal")
        )
    after = load_review_data(store, run_id)
    fixed = after.images[k]
    row = list(fixed.gt.ids).index(ann_id)
    assert fixed.gt.xyxy[row, 2] == pytest.approx(image.gt.xyxy[0, 2] - 3)
    assert len(fixed.gt) == len(image.gt) and after.unknown_gt == 1  # proposals are not ground truth
    for a, b in zip(before.images, after.images, strict=True):
        np.testing.assert_array_equal(a.preds.xyxy, b.preds.xyxy)
        np.testing.assert_array_equal(a.preds.ids, b.preds.ids)


def test_runs_splits_and_clear_errors(project) -> None:
    store, run_id = project
    assert [rid for _, rid in reviewable_runs(store)] == [run_id]
    assert review_splits(store, run_id) == ["valid"]
    with pytest.raises(StudioError, match="no images in the 'test' split"):
        compute_predictions(store, run_id, split="test")
    with store.session() as s:
        moved = s.scalar(select(Image.id).where(Image.split == "train").limit(1))
        s.execute(update(Image).where(Image.id == moved).values(split="test"))
    assert review_splits(store, run_id) == ["valid", "test"]
    info = compute_predictions(store, run_id, split="test")
    assert info.n_images == 1 and prediction_status(store, run_id, "valid") is None
    queued = runs.create_run(store, dict(TINY_RUN))  # never started: no checkpoint
    assert [rid for _, rid in reviewable_runs(store)] == [run_id]
    with pytest.raises(StudioError, match="has not started"):
        compute_predictions(store, queued)
    with pytest.raises(StudioError, match="does not exist"):
        compute_predictions(store, 999)
    with pytest.raises(StudioError, match="compute them first"):
        load_review_data(store, run_id, "valid")
    best_checkpoint(store, run_id).unlink()
    with pytest.raises(StudioError, match="missing"):
        compute_predictions(store, run_id)
    assert reviewable_runs(store) == []
