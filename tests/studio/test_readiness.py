"""Readiness verdicts on hand-made prediction sets where the right threshold is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.services.review.data import Boxes, ReviewData, ReviewImage
from studio.services.review.readiness import readiness, sentence, wilson

BOX = np.array([[10, 10, 60, 60], [100, 100, 150, 150]], float)
FAR = np.array([[250, 180, 300, 230]], float)


def _image(k: int, hit_scores: list[float], false_scores: list[float], labels=(0, 0)) -> ReviewImage:
    preds = np.vstack([BOX[: len(hit_scores)], np.repeat(FAR, len(false_scores), axis=0)])
    pred_labels = list(labels[: len(hit_scores)]) + [0] * len(false_scores)
    return ReviewImage(
        k,
        Path(f"/nowhere/{k}.png"),
        320,
        240,
        Boxes(BOX, np.asarray(labels, np.int64)),
        Boxes(preds.reshape(-1, 4), np.asarray(pred_labels, np.int64), np.asarray(hit_scores + false_scores)),
    )


def test_threshold_is_the_highest_meeting_both_targets():
    # 50 images, 100 objects; 96 found at 0.9, the last 4 only at 0.3; false alarms at 0.6 (x1) and 0.2 (x10)
    images = [_image(k, [0.9, 0.9], []) for k in range(48)]
    images += [_image(48, [0.3, 0.3], [0.6]), _image(49, [0.3, 0.3], [0.2] * 10)]
    data = ReviewData(1, "valid", "best", ["cell"], images)
    v = readiness(data, target_recall=0.95, max_false_alarms_per_100=2.0)
    assert v["ready"] and v["threshold"] == 0.9 and v["threshold_range"] == [0.3, 0.9]
    assert v["recall"] == 0.96 and v["false_alarms_per_100"] == 0 and not v["too_small_to_tell"]
    strict = readiness(data, target_recall=0.99, max_false_alarms_per_100=2.0)
    assert strict["ready"] and strict["threshold"] == 0.3 and strict["false_alarms_per_100"] == 2.0
    never = readiness(data, target_recall=1.0, max_false_alarms_per_100=1.0)
    assert not never["ready"] and never["missing_classes"] == ["cell"]
    row = never["classes"][0]
    assert row["recall_short_by"] > 0 and "Not ready" in never["summary"]


def test_per_class_target_names_the_class_that_misses_and_advice():
    # class 1 ("rare") is found only half the time; it has few boxes
    images = [_image(k, [0.9, 0.9], []) for k in range(40)]
    images += [_image(40 + k, [0.9, 0.1] if k % 2 else [0.9], [], labels=(0, 1)) for k in range(10)]
    data = ReviewData(1, "valid", "best", ["common", "rare"], images)
    v = readiness(data, 0.8, 2.0, per_class={"rare": (0.9, 2.0)})
    assert not v["ready"] and v["missing_classes"] == ["rare"]
    rare = v["classes"][1]
    assert rare["recall"] == 0.5 and abs(rare["recall_short_by"] - 0.4) < 1e-9 and v["threshold"] == 0.1
    assert any("label more rare" in a for a in rare["advice"])


def test_five_images_are_too_small_to_tell():
    data = ReviewData(1, "valid", "best", ["cell"], [_image(k, [0.9, 0.9], []) for k in range(5)])
    v = readiness(data)
    assert v["ready"] and v["too_small_to_tell"] and "too small to tell" in v["summary"]


def test_sentence_and_wilson():
    assert sentence("white blood cells", 93, 100, 4, 97).startswith(
        "Out of 100 white blood cells, the model finds 93"
    )
    assert "about 1 in 24 of its detections is wrong" in sentence("cells", 93, 100, 4, 97)
    lo, hi = wilson(93, 100)
    assert 0.85 < lo < 0.93 < hi < 0.97 and wilson(0, 0) == (0.0, 1.0)
