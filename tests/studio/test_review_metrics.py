"""The Review page's analysis (studio.services.review.metrics) on hand-made and generated ReviewData."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rfdetr_core.evaluation import sweep
from studio.services.review.data import Boxes, ReviewData, ReviewImage
from studio.services.review.matching import FP_CLASS, TP, match_image
from studio.services.review.metrics import Review

CAT, DOG, BIRD, BG = 0, 1, 2, 3
A, B, FAR, FAR2 = [0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60], [100, 100, 110, 110]


def image(image_id: int, gt: list, preds: list) -> ReviewImage:
    g = Boxes(np.array([b for b, _ in gt], float).reshape(-1, 4), np.array([c for _, c in gt], np.int64))
    p = Boxes(
        np.array([b for b, _, _ in preds], float).reshape(-1, 4),
        np.array([c for _, c, _ in preds], np.int64),
        np.array([s for _, _, s in preds], float),
    )
    return ReviewImage(image_id, Path(f"{image_id}.jpg"), 200, 150, g, p)


@pytest.fixture
def handmade() -> Review:
    """Six images; at conf .5 / IoU .5 each shows one situation (see the comments)."""
    return Review(
        ReviewData(
            1,
            "valid",
            "best",
            ["cat", "dog", "bird"],
            [
                image(
                    10, [(A, CAT), (B, DOG)], [(A, CAT, 0.9), (B, DOG, 0.8), (A, CAT, 0.7)]
                ),  # 2 TP + duplicate
                image(11, [(A, CAT)], [(A, DOG, 0.9)]),  # a cat called dog (paired) -> also a missed cat
                image(12, [(B, DOG)], []),  # a missed dog
                image(13, [], [(FAR, BIRD, 0.95)]),  # a bird in the background
                image(
                    14, [(A, CAT)], [(A, CAT, 0.95), (FAR, BIRD, 0.2)]
                ),  # correct at .5 (the bird is hidden)
                image(
                    15, [(A, CAT), (B, DOG)], [(A, CAT, 0.6), (FAR2, DOG, 0.55)]
                ),  # TP, background dog, missed dog
            ],
        )
    )


def ids(results) -> list[int]:
    return [r.image_id for r in results]


def test_confusion_matrix_counts(handmade):
    s = handmade.score(0.5, 0.5)
    expected = np.zeros((4, 4), np.int64)
    expected[CAT, CAT] = 3  # images 10, 14, 15
    expected[DOG, DOG] = 1  # 10
    expected[BG, CAT] = 1  # 10's duplicate
    expected[CAT, DOG] = 1  # 11
    expected[DOG, BG] = 2  # 12, 15
    expected[BG, BIRD] = 1  # 13
    expected[BG, DOG] = 1  # 15
    assert s.confusion.tolist() == expected.tolist()
    assert s.labels == ["cat", "dog", "bird", "background"]
    low = handmade.score(0.1, 0.5)
    assert low.confusion[BG, BIRD] == 2  # 14's bird appears


def test_totals_and_per_class(handmade):
    s = handmade.score(0.5, 0.5)
    t = s.totals
    assert (t["tp"], t["fp_class"], t["fp_duplicate"], t["fp_background"], t["fp"], t["fn"], t["num_gt"]) == (
        4,
        1,
        1,
        2,
        4,
        3,
        7,
    )
    assert t["precision"] == 0.5 and t["recall"] == pytest.approx(4 / 7)
    cat, dog, bird = s.per_class
    assert (cat["tp"], cat["fp"], cat["fn"], cat["num_gt"]) == (3, 1, 1, 4)
    assert (dog["tp"], dog["fp"], dog["fn"], dog["num_gt"]) == (1, 2, 2, 3)
    assert (bird["tp"], bird["fp"], bird["fn"], bird["num_gt"], bird["recall"]) == (0, 1, 0, 0, 0.0)
    assert t["macro_recall"] == pytest.approx((3 / 4 + 1 / 3) / 2)  # over classes with ground truth


def test_per_image_results_and_matches(handmade):
    s = handmade.score(0.5, 0.5)
    by_id = {r.image_id: r for r in s.images}
    r = by_id[11]
    assert (r.index, r.tp, r.fp_class, r.fn, r.n_errors, r.f1) == (1, 0, 1, 1, 2, 0.0)
    assert r.cells == {(CAT, DOG)} and r.classes == {CAT, DOG} and r.error_classes == {CAT, DOG}
    assert by_id[10].f1 == pytest.approx(0.8) and by_id[14].f1 == 1.0 and by_id[14].classes == {CAT}
    m = s.matches[1]
    assert m.pred_kind.tolist() == [FP_CLASS] and m.gt_confused_with.tolist() == [DOG]
    assert s.matches[-1].pred_kind.tolist()[0] == TP and len(s.matches) == 6


def test_gallery_order_and_filters(handmade):
    s = handmade.score(0.5, 0.5)
    assert ids(s.gallery()) == [11, 15, 12, 13, 10, 14]  # most errors, then lowest F1, then id
    assert ids(s.gallery(kind="errors")) == [11, 15, 12, 13, 10]
    assert ids(s.gallery(kind="correct")) == [14]
    assert ids(s.gallery(kind="fp_class")) == [11]
    assert ids(s.gallery(kind="fp_duplicate")) == [10]
    assert ids(s.gallery(kind="fp_background")) == [15, 13]
    assert ids(s.gallery(kind="fn")) == [11, 15, 12]
    assert ids(s.gallery(class_index=DOG)) == [11, 15, 12, 10]
    assert ids(s.gallery(class_index=DOG, kind="fn")) == [15, 12]  # dogs missed, not the cat of 11
    assert ids(s.gallery(class_index=CAT, kind="fn")) == [11]
    assert ids(s.gallery(class_index=CAT, kind="correct")) == [14]
    assert ids(s.gallery(class_index=BIRD)) == [13]
    assert ids(handmade.score(0.1).gallery(class_index=BIRD)) == [13, 14]
    assert ids(s.gallery(cell=(CAT, DOG))) == [11]
    assert ids(s.gallery(cell=(DOG, BG))) == [15, 12]
    assert ids(s.gallery(cell=(CAT, CAT))) == [15, 10, 14]
    assert ids(s.gallery(class_index=DOG, kind="errors", cell=(DOG, BG))) == [15, 12]
    assert ids(s.gallery(class_index=CAT, kind="errors", cell=(DOG, BG))) == []
    with pytest.raises(ValueError):
        s.gallery(kind="tp")


def random_data(seed: int, n_images: int = 30, n_preds: int = 40, k: int = 4, size: int = 200) -> ReviewData:
    """Boxes near the ground truth (right or wrong class, jittered) and in the background, random scores."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n_images):
        n_gt = int(rng.integers(0, 6))
        xy = rng.uniform(0, size - 60, (n_gt, 2))
        gt = np.concatenate([xy, xy + rng.uniform(10, 60, (n_gt, 2))], 1)
        gt_labels = rng.integers(0, k, n_gt)
        xy = rng.uniform(0, size - 40, (n_preds, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (n_preds, 2))], 1)
        labels = rng.integers(0, k, n_preds)
        if n_gt:
            near = rng.random(n_preds) < 0.5
            src = rng.integers(0, n_gt, n_preds)
            boxes[near] = gt[src[near]] + rng.normal(0, 4, (int(near.sum()), 4))
            boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
            right = near & (rng.random(n_preds) < 0.7)
            labels[right] = gt_labels[src[right]]
        scores = rng.random(n_preds).round(2)  # ties on purpose
        images.append(
            ReviewImage(
                100 + i, Path(f"{i}.jpg"), size, size, Boxes(gt, gt_labels), Boxes(boxes, labels, scores)
            )
        )
    return ReviewData(7, "valid", "best", [f"class{c}" for c in range(k)], images)


@pytest.fixture(scope="module")
def generated() -> Review:
    return Review(random_data(0))


@pytest.mark.parametrize(("conf", "iou_thr"), [(0.0, 0.5), (0.3, 0.5), (0.5, 0.75), (0.8, 0.3)])
def test_review_agrees_with_match_image(generated, conf, iou_thr):
    s = generated.score(conf, iou_thr)
    for i, im in enumerate(generated.data.images):
        ref, got = match_image(im.gt, im.preds, conf, iou_thr), s.matches[i]
        for name in ("pred_kind", "pred_gt", "gt_matched", "gt_confused_with"):
            assert getattr(got, name).tolist() == getattr(ref, name).tolist(), (i, name)
        assert got.confusion == ref.confusion
        res = s.images[i]
        assert (res.tp, res.fp_class, res.fp_duplicate, res.fp_background, res.fn, res.f1) == (
            ref.tp,
            ref.fp_class,
            ref.fp_duplicate,
            ref.fp_background,
            ref.fn,
            ref.f1,
        )
        bg = len(generated.class_names)
        assert res.cells == {(bg if r < 0 else r, bg if c < 0 else c) for r, c in ref.confusion}
    assert s.confusion.sum() == sum(sum(m.confusion.values()) for m in s.matches)


def brute_force_counts(data: ReviewData, conf: float, iou_thr: float) -> tuple[int, int, int]:
    """TP, FP, number of ground-truth boxes, by plain loops (independent of the code under test)."""
    tp = fp = n_gt = 0
    for im in data.images:
        n_gt += len(im.gt)
        taken = set()
        order = sorted(range(len(im.preds)), key=lambda j: -im.preds.scores[j])
        for j in order:
            if im.preds.scores[j] < conf:
                continue
            px1, py1, px2, py2 = im.preds.xyxy[j]
            best, best_iou = None, iou_thr
            for g in range(len(im.gt)):
                if g in taken or im.gt.labels[g] != im.preds.labels[j]:
                    continue
                gx1, gy1, gx2, gy2 = im.gt.xyxy[g]
                inter = max(0, min(px2, gx2) - max(px1, gx1)) * max(0, min(py2, gy2) - max(py1, gy1))
                iou = inter / ((px2 - px1) * (py2 - py1) + (gx2 - gx1) * (gy2 - gy1) - inter)
                if iou >= best_iou and (best is None or iou > best_iou):
                    best, best_iou = g, iou
            if best is None:
                fp += 1
            else:
                tp += 1
                taken.add(best)
    return tp, fp, n_gt


@pytest.mark.parametrize(("conf", "iou_thr"), [(0.1, 0.5), (0.55, 0.5), (0.4, 0.7)])
def test_totals_equal_a_brute_force_count(generated, conf, iou_thr):
    tp, fp, n_gt = brute_force_counts(generated.data, conf, iou_thr)
    t = generated.score(conf, iou_thr).totals
    assert (t["tp"], t["fp"], t["tp"] + t["fn"]) == (tp, fp, n_gt)
    assert t["precision"] == pytest.approx(tp / (tp + fp), abs=1e-12)
    assert t["recall"] == pytest.approx(tp / n_gt, abs=1e-12)


def pycocotools_directly(data: ReviewData) -> COCOeval:
    k = len(data.class_names)
    annotations, detections = [], []
    for im in data.images:
        for (x1, y1, x2, y2), label in zip(im.gt.xyxy.tolist(), im.gt.labels.tolist(), strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": im.image_id,
                    "category_id": label,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        for (x1, y1, x2, y2), label, score in zip(
            im.preds.xyxy.tolist(), im.preds.labels.tolist(), im.preds.scores.tolist(), strict=True
        ):
            detections.append(
                {
                    "image_id": im.image_id,
                    "category_id": label,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    coco = COCO()
    coco.dataset = {
        "images": [{"id": im.image_id, "width": im.width, "height": im.height} for im in data.images],
        "annotations": annotations,
        "categories": [{"id": c, "name": str(c)} for c in range(k)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(detections), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_coco_metrics_equal_pycocotools(generated):
    ev = pycocotools_directly(generated.data)
    metrics = generated.coco_metrics()
    assert abs(metrics["mAP_50_95"] - ev.stats[0]) <= 1e-9
    assert abs(metrics["mAP_50"] - ev.stats[1]) <= 1e-9
    assert metrics["mAP_50"] > 0.1  # a meaningful case, not an all-zero one
    precision = ev.eval["precision"][:, :, :, 0, -1]
    for c, row in enumerate(metrics["per_class"]):
        p = precision[:, :, c]
        assert abs(row["AP_50_95"] - p[p > -1].mean()) <= 1e-9
        assert abs(row["AP_50"] - p[0][p[0] > -1].mean()) <= 1e-9
        assert row["num_gt"] == sum(int((im.gt.labels == c).sum()) for im in generated.data.images)
    assert generated.coco_metrics() is metrics  # computed once
    for name, (recall, curve) in generated.pr_curves(0.75).items():  # iouThrs[5] = .75
        c = generated.class_names.index(name)
        assert (curve == precision[5, :, c]).all() and (recall == ev.params.recThrs).all()


def test_pr_curves_and_ap_table(handmade):
    curves = handmade.pr_curves(0.5)
    assert set(curves) == {"cat", "dog"}  # no bird ground truth
    per_class = {row["name"]: row for row in handmade.coco_metrics()["per_class"]}
    for name, (recall, precision) in curves.items():
        assert recall.shape == precision.shape == (101,)
        assert precision.mean() == pytest.approx(per_class[name]["AP_50"], abs=1e-12)
    assert per_class["bird"]["AP_50"] is None
    s = handmade.score(0.5)
    table = handmade.ap_table(s)
    assert [row["name"] for row in table] == ["cat", "dog", "bird"]
    assert (table[0]["precision"], table[0]["recall"], table[0]["num_gt"]) == (0.75, 0.75, 4)
    assert table[1]["AP_50"] == per_class["dog"]["AP_50"]
    for off_grid in (0.52, 0.3):  # pycocotools only has .50:.05:.95: the nearest one is used
        assert all((handmade.pr_curves(off_grid)[n][1] == p).all() for n, (_, p) in curves.items())


def test_pr_curves_match_ap50_on_generated_data(generated):
    per_class = {row["name"]: row for row in generated.coco_metrics()["per_class"]}
    curves = generated.pr_curves(0.5)
    assert len(curves) == 4
    for name, (_, precision) in curves.items():
        assert precision.mean() == pytest.approx(per_class[name]["AP_50"], abs=1e-12)
    assert set(generated.pr_curves(0.75)) == set(curves)


def test_f1_optimal_equals_the_training_sweep(generated):
    data = generated.data
    preds = [
        {"boxes": im.preds.xyxy, "scores": im.preds.scores, "labels": im.preds.labels} for im in data.images
    ]
    targets = [{"boxes": im.gt.xyxy, "labels": im.gt.labels} for im in data.images]
    summary = sweep(preds, targets).summary(data.class_names)
    best = generated.f1_optimal(0.5)
    assert best["threshold"] == summary["threshold"]
    assert (best["f1"], best["precision"], best["recall"]) == (
        summary["F1"],
        summary["precision"],
        summary["recall"],
    )
    for name, row in summary["per_class"].items():
        assert best["per_class"][name]["threshold"] == row["best_threshold"]
        assert best["per_class"][name]["f1"] == row["best_f1"]
    curve = best["curve"]
    assert len(curve["thresholds"]) == len(curve["f1"]) == 101 and curve["f1"].max() == best["f1"]
    # the slider at the F1-optimal confidence shows the same macro F1 as training reports
    assert generated.score(best["threshold"], 0.5).totals["macro_f1"] == pytest.approx(best["f1"], abs=1e-12)


def test_empty_review_and_bad_labels():
    empty = Review(ReviewData(1, "valid", "best", ["cat"], []))
    s = empty.score(0.5)
    assert s.images == [] and s.confusion.tolist() == [[0, 0], [0, 0]] and s.totals["precision"] == 0.0
    with pytest.raises(ValueError, match="class index"):
        Review(ReviewData(1, "valid", "best", ["cat"], [image(1, [(A, 1)], [])]))
