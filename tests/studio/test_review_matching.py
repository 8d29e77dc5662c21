"""One image's TP / FP / FN rules (studio.services.review.matching) on hand-made boxes."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from studio.services.review.data import Boxes
from studio.services.review.matching import (
    BACKGROUND,
    FP_BACKGROUND,
    FP_CLASS,
    FP_DUPLICATE,
    HIDDEN,
    TP,
    iou_matrix,
    match_image,
)

CAT, DOG, BIRD = 0, 1, 2
A = [0, 0, 10, 10]
B = [20, 20, 30, 30]
FAR = [50, 50, 60, 60]


def gt(*items: tuple[list[float], int]) -> Boxes:
    if not items:
        return Boxes.empty()
    return Boxes(np.array([b for b, _ in items], float), np.array([c for _, c in items], np.int64))


def preds(*items: tuple[list[float], int, float]) -> Boxes:
    if not items:
        return Boxes.empty(with_scores=True)
    return Boxes(
        np.array([b for b, _, _ in items], float),
        np.array([c for _, c, _ in items], np.int64),
        np.array([s for _, _, s in items], float),
    )


def test_tp_duplicate_wrong_class_background_and_miss():
    m = match_image(
        gt((A, CAT), (B, DOG)),
        preds((A, CAT, 0.9), (A, CAT, 0.8), (A, DOG, 0.7), (FAR, CAT, 0.6)),
        conf=0.5,
        iou_thr=0.5,
    )
    assert m.pred_kind.tolist() == [TP, FP_DUPLICATE, FP_CLASS, FP_BACKGROUND]
    assert m.pred_kind.dtype == np.int8
    assert m.gt_matched.tolist() == [True, False]
    assert m.pred_gt.tolist() == [0, -1, -1, -1]  # the dog on the matched cat cannot be paired
    assert m.gt_confused_with.tolist() == [-1, -1]
    assert (m.tp, m.fp_class, m.fp_duplicate, m.fp_background, m.fn) == (1, 1, 1, 1, 1)
    assert m.n_errors == 4 and m.f1 == pytest.approx(2 / (2 + 3 + 1))
    assert m.confusion == {(CAT, CAT): 1, (BACKGROUND, CAT): 2, (BACKGROUND, DOG): 1, (DOG, BACKGROUND): 1}


def test_wrong_class_is_paired_with_the_missed_box():
    m = match_image(gt((A, CAT)), preds((A, DOG, 0.9)), conf=0.5, iou_thr=0.5)
    assert m.pred_kind.tolist() == [FP_CLASS]
    assert m.pred_gt.tolist() == [0] and m.gt_confused_with.tolist() == [DOG]
    assert (m.fp_class, m.fn) == (1, 1)  # the cat is still missed
    assert m.confusion == {(CAT, DOG): 1}  # ... but it is not also counted as (cat, background)


def test_each_ground_truth_is_paired_once_best_overlap_first():
    slightly_off = [1, 0, 11, 10]
    m = match_image(
        gt((A, CAT), (slightly_off, BIRD)),
        preds((slightly_off, DOG, 0.6), (A, DOG, 0.9)),
        conf=0.5,
        iou_thr=0.5,
    )
    assert m.pred_kind.tolist() == [FP_CLASS, FP_CLASS]
    # the 0.9 dog takes the cat (IoU 1), the 0.6 dog the bird (IoU 1)
    assert m.pred_gt.tolist() == [1, 0] and m.gt_confused_with.tolist() == [DOG, DOG]
    m = match_image(gt((A, CAT)), preds((A, DOG, 0.9), (A, BIRD, 0.8)), conf=0.5, iou_thr=0.5)
    assert m.pred_gt.tolist() == [0, -1]
    assert m.confusion == {(CAT, DOG): 1, (BACKGROUND, BIRD): 1}


def test_pairing_skips_a_box_found_by_a_lower_scoring_prediction():
    m = match_image(gt((A, CAT)), preds((A, DOG, 0.9), (A, CAT, 0.6)), conf=0.5, iou_thr=0.5)
    assert m.pred_kind.tolist() == [FP_CLASS, TP]
    assert m.confusion == {(BACKGROUND, DOG): 1, (CAT, CAT): 1}
    assert m.gt_confused_with.tolist() == [-1]


def test_duplicate_wins_over_wrong_class():
    m = match_image(gt((A, CAT), (A, DOG)), preds((A, CAT, 0.9), (A, CAT, 0.8)), conf=0.5, iou_thr=0.5)
    assert m.pred_kind.tolist() == [TP, FP_DUPLICATE]


@pytest.mark.parametrize(("height", "expected"), [(4.999, FP_BACKGROUND), (5.0, TP), (5.001, TP)])
def test_iou_just_below_exactly_at_and_above_the_threshold(height, expected):
    box = [0, 0, 10, height]  # IoU with A = height / 10
    m = match_image(gt((A, CAT)), preds((box, CAT, 0.9)), conf=0.5, iou_thr=0.5)
    assert m.pred_kind.tolist() == [expected]
    m = match_image(gt((A, CAT)), preds((A, CAT, 0.9), (box, CAT, 0.8)), conf=0.5, iou_thr=0.5)
    assert m.pred_kind.tolist() == [TP, FP_DUPLICATE if expected == TP else FP_BACKGROUND]
    m = match_image(gt((A, DOG)), preds((box, CAT, 0.9)), conf=0.5, iou_thr=0.5)
    assert m.pred_kind.tolist() == [FP_CLASS if expected == TP else FP_BACKGROUND]


def test_threshold_equality_is_a_match_in_pycocotools_too():
    """pycocotools counts a pair at exactly the IoU threshold as a match: AP@.5 = 1, AP@.55 = 0."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "width": 20, "height": 20}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100.0, "iscrowd": 0}
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        dets = coco.loadRes([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 5], "score": 0.9}])
        ev = COCOeval(coco, dets, "bbox")
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, 0, 0, -1]
    # iouThrs[0] = .5, [1] = .55; pycocotools divides by tp + fp + eps, hence "almost" 1
    assert (precision[0] > 1 - 1e-9).all() and (precision[1] == 0).all()
    m = match_image(gt((A, CAT)), preds(([0, 0, 10, 5], CAT, 0.9)), conf=0.5, iou_thr=0.5)
    assert m.tp == 1
    assert match_image(gt((A, CAT)), preds(([0, 0, 10, 5], CAT, 0.9)), conf=0.5, iou_thr=0.55).tp == 0


def test_iou_of_one_is_reachable():
    m = match_image(gt((A, CAT)), preds((A, CAT, 0.9)), conf=0.5, iou_thr=1.0)
    assert m.tp == 1


def test_confidence_filtering():
    boxes = gt((A, CAT))
    p = preds((A, CAT, 0.4), (FAR, DOG, 0.3))
    low = match_image(boxes, p, conf=0.3, iou_thr=0.5)  # a score equal to conf is kept
    assert low.pred_kind.tolist() == [TP, FP_BACKGROUND]
    mid = match_image(boxes, p, conf=0.35, iou_thr=0.5)
    assert mid.pred_kind.tolist() == [TP, HIDDEN] and mid.fp == 0
    high = match_image(boxes, p, conf=0.5, iou_thr=0.5)
    assert high.pred_kind.tolist() == [HIDDEN, HIDDEN]
    assert (high.tp, high.fn, high.gt_matched.tolist()) == (0, 1, [False])
    assert high.confusion == {(CAT, BACKGROUND): 1}


def test_greedy_order_is_by_score_not_by_storage():
    left, right = [0, 0, 10, 10], [4, 0, 14, 10]
    between = [1.5, 0, 11.5, 10]  # IoU .74 with left (its best), .60 with right
    # stored low-score first: visited in storage order it would take `left` and leave the exact box a duplicate
    m = match_image(
        gt((left, CAT), (right, CAT)), preds((between, CAT, 0.6), (left, CAT, 0.9)), conf=0.1, iou_thr=0.5
    )
    assert m.pred_kind.tolist() == [TP, TP]
    assert m.pred_gt.tolist() == [1, 0]
    # with the scores swapped, `between` claims `left` first and the exact box (IoU .43 with right) is a duplicate
    m = match_image(
        gt((left, CAT), (right, CAT)), preds((between, CAT, 0.9), (left, CAT, 0.6)), conf=0.1, iou_thr=0.5
    )
    assert m.pred_kind.tolist() == [TP, FP_DUPLICATE] and m.fn == 1


def test_matching_is_per_class():
    m = match_image(
        gt((A, CAT), (A, DOG), (B, BIRD)),
        preds((A, DOG, 0.9), (A, CAT, 0.8), (B, BIRD, 0.7), (B, CAT, 0.6)),
        conf=0.5,
        iou_thr=0.5,
    )
    assert m.pred_kind.tolist() == [TP, TP, TP, FP_CLASS]
    assert m.pred_gt.tolist() == [1, 0, 2, -1]  # the bird is found, so the cat on it is not paired
    assert m.confusion == {(CAT, CAT): 1, (DOG, DOG): 1, (BIRD, BIRD): 1, (BACKGROUND, CAT): 1}


def test_empty_images():
    nothing = match_image(gt(), preds(), conf=0.5, iou_thr=0.5)
    assert (nothing.tp, nothing.fp, nothing.fn, nothing.f1, nothing.confusion) == (0, 0, 0, 1.0, {})
    only_preds = match_image(gt(), preds((A, CAT, 0.9)), conf=0.5, iou_thr=0.5)
    assert only_preds.pred_kind.tolist() == [FP_BACKGROUND] and only_preds.f1 == 0.0
    only_gt = match_image(gt((A, CAT)), preds(), conf=0.5, iou_thr=0.5)
    assert (only_gt.fn, only_gt.confusion) == (1, {(CAT, BACKGROUND): 1})


def test_precomputed_iou_is_used_and_checked():
    g, p = gt((A, CAT)), preds((A, CAT, 0.9))
    assert match_image(g, p, 0.5, 0.5, iou=np.zeros((1, 1))).pred_kind.tolist() == [FP_BACKGROUND]
    with pytest.raises(ValueError, match="shape"):
        match_image(g, p, 0.5, 0.5, iou=np.zeros((2, 1)))


def test_iou_matrix_equals_pycocotools():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, (2, 30, 2))
    wh = rng.uniform(1, 40, (2, 30, 2))
    a, b = np.concatenate([xy[0], xy[0] + wh[0]], 1), np.concatenate([xy[1], xy[1] + wh[1]], 1)
    expected = mask_utils.iou(np.concatenate([xy[0], wh[0]], 1), np.concatenate([xy[1], wh[1]], 1), [0] * 30)
    assert np.abs(iou_matrix(a, b) - expected).max() < 1e-12
    assert iou_matrix(a, b[:0]).shape == (30, 0)
