"""Label-mistake finder on planted errors in a hand-built ReviewData, and fixes through the real store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.services.label.fixes import apply_fix, dismiss, dismissed
from studio.services.label.labeling import UndoHistory, load_image, undo
from studio.services.review.data import Boxes, ReviewData, ReviewImage
from studio.services.review.mistakes import find_suspects
from studio.store.db import ProjectStore
from studio.store.models import Annotation, Category, Image

NAMES = ["cat", "dog"]
CLEAN = np.array([[10, 10, 50, 50], [100, 100, 160, 150], [200, 20, 260, 90]], float)


def _image(image_id: int, gt: np.ndarray, gt_labels, preds: np.ndarray, pred_labels, scores, gt_ids=None):
    n = len(gt_labels)
    return ReviewImage(
        image_id,
        Path(f"/nowhere/{image_id}.png"),
        320,
        240,
        Boxes(
            np.asarray(gt, float).reshape(-1, 4),
            np.asarray(gt_labels, np.int64),
            None,
            np.asarray(gt_ids if gt_ids is not None else range(10 * image_id, 10 * image_id + n), np.int64),
        ),
        Boxes(
            np.asarray(preds, float).reshape(-1, 4),
            np.asarray(pred_labels, np.int64),
            np.asarray(scores, float),
            np.arange(len(pred_labels), dtype=np.int64) + 100 * image_id,
        ),
        name=f"photo_{image_id}.jpg",
    )


def planted() -> ReviewData:
    good = [_image(k, CLEAN, [0, 1, 0], CLEAN + 1, [0, 1, 0], [0.9, 0.9, 0.9]) for k in range(1, 6)]
    missing = _image(6, CLEAN[:2], [0, 1], CLEAN + 1, [0, 1, 0], [0.9, 0.9, 0.95])
    wrong = _image(7, CLEAN, [0, 0, 0], CLEAN + 1, [0, 1, 0], [0.9, 0.92, 0.9])
    shifted = CLEAN.copy()
    shifted[1] += [30, 0, 30, 0]  # half its width
    loose = _image(8, shifted, [0, 1, 0], CLEAN + 1, [0, 1, 0], [0.9, 0.93, 0.9])
    dup = _image(9, np.vstack([CLEAN, CLEAN[2] + 2]), [0, 1, 0, 0], CLEAN + 1, [0, 1, 0], [0.9, 0.9, 0.9])
    spurious_gt = np.vstack([CLEAN, [[280, 180, 310, 220]]])
    spurious = _image(10, spurious_gt, [0, 1, 0, 0], CLEAN + 1, [0, 1, 0], [0.9, 0.9, 0.9])
    return ReviewData(1, "valid", "best", NAMES, good + [missing, wrong, loose, dup, spurious])


def test_each_planted_kind_is_found_on_its_image_and_ranked_above_noise():
    suspects = find_suspects(planted())
    by_kind = {s.kind: s for s in suspects}
    assert set(by_kind) == {"missing", "wrong_class", "loose", "duplicate", "spurious"}
    assert {k: s.image_id for k, s in by_kind.items()} == {
        "missing": 6,
        "wrong_class": 7,
        "loose": 8,
        "duplicate": 9,
        "spurious": 10,
    }
    assert len(suspects) == 5  # the clean images yield nothing
    assert by_kind["missing"].fix == "add_box" and by_kind["missing"].pred_box == [201, 21, 261, 91]
    assert by_kind["wrong_class"].gt_class == "cat" and by_kind["wrong_class"].pred_class == "dog"
    assert by_kind["loose"].gt_box == [130, 100, 190, 150] and by_kind["loose"].fix == "replace_box"
    assert by_kind["duplicate"].gt_id == 93 and by_kind["duplicate"].other_gt_id == 92
    assert (
        by_kind["spurious"].gt_box == [280, 180, 310, 220]
        and by_kind["spurious"].image_name == "photo_10.jpg"
    )
    scores = [s.score for s in suspects]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)


def test_a_less_confident_missing_prediction_ranks_lower():
    data = planted()
    low = _image(11, CLEAN[:2], [0, 1], CLEAN + 1, [0, 1, 0], [0.9, 0.9, 0.6])
    data = ReviewData(1, "valid", "best", NAMES, data.images + [low])
    missing = [s for s in find_suspects(data) if s.kind == "missing"]
    assert [s.image_id for s in missing] == [6, 11] and missing[0].score > missing[1].score


def _store_with_image(tmp_path: Path) -> tuple[ProjectStore, int, dict[str, int], list[int]]:
    store = ProjectStore.create(tmp_path / "proj", "mistakes")
    with store.session() as s:
        cats = [Category(name=n) for n in NAMES]
        s.add_all(cats)
        s.flush()
        im = Image(
            file_name="images/x.png",
            original_name="photo.jpg",
            width=320,
            height=240,
            split="valid",
            content_hash="h" * 64,
            status="labeled",
        )
        s.add(im)
        s.flush()
        rows = [
            Annotation(image_id=im.id, category_id=cats[0].id, x=b[0], y=b[1], w=b[2] - b[0], h=b[3] - b[1])
            for b in CLEAN[:2]
        ]
        s.add_all(rows)
        s.flush()
        return store, im.id, {c.name: c.id for c in cats}, [r.id for r in rows]


def test_fixes_are_checked_saves_and_undo(tmp_path):
    store, image_id, cats, ann = _store_with_image(tmp_path)
    gt_ids = ann
    preds = np.vstack([CLEAN[0], CLEAN[1], CLEAN[2]])
    data = ReviewData(
        1,
        "valid",
        "best",
        NAMES,
        [_image(image_id, CLEAN[:2], [0, 0], preds, [0, 1, 1], [0.9, 0.95, 0.9], gt_ids)],
    )
    suspects = {s.kind: s for s in find_suspects(data)}
    assert set(suspects) == {"wrong_class", "missing"}
    history = UndoHistory()
    v = load_image(store, image_id).version
    result = apply_fix(store, suspects["wrong_class"], v, history)
    assert [b.category_id for b in result.state.boxes] == [cats["cat"], cats["dog"]]
    result = apply_fix(store, suspects["missing"], result.state.version, history)
    assert len(result.state.boxes) == 3 and result.state.boxes[2].category_id == cats["dog"]
    try:
        apply_fix(store, suspects["missing"], v, history)  # stale version: refused
        raise AssertionError("a stale fix was saved")
    except Exception as exc:  # noqa: BLE001
        assert "Not saved" in str(exc)
    back = undo(store, history, image_id, result.state.version)
    back = undo(store, history, image_id, back.state.version)
    assert [(b.category_id, b.w) for b in back.state.boxes] == [(cats["cat"], 40.0), (cats["cat"], 60.0)]


def test_dismissed_suspects_stay_dismissed_for_that_run_only(tmp_path):
    store, *_ = _store_with_image(tmp_path)
    data = planted()
    first = find_suspects(data)[0]
    dismiss(store, 1, first.key)
    dismiss(store, 1, first.key)
    reopened = ProjectStore.open(tmp_path / "proj")
    assert dismissed(reopened, 1) == {first.key} and dismissed(reopened, 2) == set()
    left = find_suspects(data, dismissed=dismissed(reopened, 1))
    assert first.key not in {s.key for s in left} and len(left) == 4


def test_health_report_reads_the_store_and_is_json_ready(tmp_path):
    import json

    from studio.services.review.readiness import health_report
    from studio.store.models import Prediction, PredictionSet, Run

    store, image_id, cats, _ = _store_with_image(tmp_path)
    with store.session() as s:
        run = Run(
            name="r", model_size="Nano", status="completed", class_names=NAMES, config={"resolution": 320}
        )
        s.add(run)
        s.flush()
        s.add(
            PredictionSet(
                run_id=run.id,
                checkpoint="best",
                split="valid",
                checkpoint_path="",
                checkpoint_mtime_ns=0,
                checkpoint_size=0,
                class_names=NAMES,
                image_ids=[image_id],
                n_images=1,
                n_predictions=3,
                seconds=0.0,
            )
        )
        for b, c, sc in zip(CLEAN, [0, 1, 1], [0.9, 0.95, 0.9], strict=True):
            s.add(
                Prediction(
                    run_id=run.id,
                    image_id=image_id,
                    class_index=c,
                    checkpoint="best",
                    x=b[0],
                    y=b[1],
                    w=b[2] - b[0],
                    h=b[3] - b[1],
                    score=sc,
                )
            )
        run_id = run.id
    report = json.loads(json.dumps(health_report(store, run_id, "valid")))
    assert {s["kind"] for s in report["suspects"]} == {"wrong_class", "missing"}
    assert report["suspects"][0]["image_name"] == "photo.jpg" and report["readiness"]["too_small_to_tell"]
    dismiss(store, run_id, report["suspects"][0]["key"])
    assert health_report(store, run_id, "valid")["suspect_count"] == 1
