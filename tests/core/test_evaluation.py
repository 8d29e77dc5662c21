"""COCO evaluator vs a direct pycocotools run, and the F1 sweep vs hand counts and the reference."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rfdetr_core.evaluation import STAT_NAMES, CocoEvaluator, match_detections, sweep
from rfdetr_core.evaluation.sweep import ClassMatches, confidence_sweep

NUM_CLASSES = 4  # class 3 never has ground truth


def random_world(seed: int, num_images: int = 20):
    """Ground truth and predictions: jittered copies of GT, false positives, empty images, a crowd region."""
    rng = np.random.default_rng(seed)
    images, predictions, targets = [], [], []
    for index in range(num_images):
        image_id = index * 3  # ids need not be contiguous; 0 is a valid id
        width, height = int(rng.integers(200, 640)), int(rng.integers(200, 480))
        n_gt = 0 if index % 5 == 0 else int(rng.integers(1, 8))
        xy = rng.uniform(0, [width * 0.7, height * 0.7], (n_gt, 2))
        wh = rng.uniform(4, [width * 0.3, height * 0.3], (n_gt, 2))  # small, medium and large boxes
        gt = np.concatenate([xy, xy + wh], 1)
        gt_labels = rng.integers(0, NUM_CLASSES - 1, n_gt)
        crowd = np.zeros(n_gt, dtype=np.int64)
        if index == 3:
            crowd[0] = 1
        keep = rng.random(n_gt) < 0.8
        jitter = rng.normal(0, 0.08, (int(keep.sum()), 4)) * np.repeat(wh[keep], 2, axis=1)
        det = gt[keep] + jitter
        det_labels = np.where(
            rng.random(int(keep.sum())) < 0.85, gt_labels[keep], rng.integers(0, NUM_CLASSES, keep.sum())
        )
        n_fp = 0 if index % 7 == 1 else int(rng.integers(0, 6))
        fp_xy = rng.uniform(0, [width * 0.8, height * 0.8], (n_fp, 2))
        fp = np.concatenate([fp_xy, fp_xy + rng.uniform(4, 60, (n_fp, 2))], 1)
        det = np.concatenate([det, fp])
        det_labels = np.concatenate([det_labels, rng.integers(0, NUM_CLASSES, n_fp)])  # class 3 only here
        scores = rng.uniform(0.01, 1.0, len(det))
        images.append({"id": image_id, "width": width, "height": height})
        targets.append(
            {
                "boxes": torch.as_tensor(gt, dtype=torch.float32),
                "labels": torch.as_tensor(gt_labels),
                "iscrowd": torch.as_tensor(crowd),
                "image_id": torch.tensor([image_id]),
                "orig_size": torch.tensor([height, width]),
            }
        )
        predictions.append(
            {
                "boxes": torch.as_tensor(det, dtype=torch.float32),
                "scores": torch.as_tensor(scores, dtype=torch.float32),
                "labels": torch.as_tensor(det_labels),
            }
        )
    return images, predictions, targets


def direct_cocoeval(images, predictions, targets, max_dets: int = 100) -> COCOeval:
    """What anyone would write by hand with pycocotools: COCO json dicts, loadRes, COCOeval."""
    annotations, results = [], []
    for info, prediction, target in zip(images, predictions, targets, strict=True):
        for box, label, crowd in zip(
            target["boxes"].tolist(), target["labels"].tolist(), target["iscrowd"].tolist(), strict=True
        ):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": info["id"],
                    "category_id": label + 1,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": crowd,
                }
            )
        for box, label, score in zip(
            prediction["boxes"].tolist(),
            prediction["labels"].tolist(),
            prediction["scores"].tolist(),
            strict=True,
        ):
            results.append(
                {
                    "image_id": info["id"],
                    "category_id": label + 1,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": score,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": k + 1, "name": f"c{k}"} for k in range(NUM_CLASSES)],
        }
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.params.maxDets = [1, 10, max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.mark.parametrize("seed", range(3))
def test_coco_stats_equal_direct_pycocotools(seed: int) -> None:
    images, predictions, targets = random_world(seed)
    evaluator = CocoEvaluator([f"c{k}" for k in range(NUM_CLASSES)])
    for start in range(0, len(images), 4):  # in batches, as a validation loop feeds it
        evaluator.update(predictions[start : start + 4], targets[start : start + 4])
    metrics = evaluator.compute()
    direct = direct_cocoeval(images, predictions, targets)
    assert len(metrics["stats"]) == 12
    np.testing.assert_allclose(metrics["stats"], direct.stats, atol=1e-6, rtol=0)
    for name, value in zip(STAT_NAMES, direct.stats, strict=True):
        assert abs(metrics[name] - value) <= 1e-6, name
    assert (
        0.05 < metrics["mAP_50_95"] < 0.95 and min(metrics["stats"]) > -1
    )  # not trivial, every area band used
    precision = direct.eval["precision"]
    for k in range(NUM_CLASSES):
        expected = precision[:, :, k, 0, -1]
        row = metrics["per_class"][f"c{k}"]
        if k == NUM_CLASSES - 1:
            assert row["AP"] is None and row["num_gt"] == 0  # predictions but no ground truth
        else:
            assert abs(row["AP"] - expected[expected > -1].mean()) <= 1e-6 and row["num_gt"] > 0
            assert abs(row["AP50"] - precision[0, :, k, 0, -1][precision[0, :, k, 0, -1] > -1].mean()) <= 1e-6
    valid_ap = [r["AP"] for r in metrics["per_class"].values() if r["AP"] is not None]
    assert abs(np.mean(valid_ap) - metrics["mAP_50_95"]) <= 1e-6


def summary_from_arrays(evaluator: COCOeval, max_dets: int) -> list[float]:
    """The 12 COCO stats read straight from pycocotools' precision [T,R,K,A,M] / recall [T,K,A,M]."""
    precision, recall = evaluator.eval["precision"], evaluator.eval["recall"]
    at = evaluator.params.maxDets.index  # pycocotools sorts maxDets, so look each setting up

    def mean(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(valid.mean()) if valid.size else -1.0

    m = at(max_dets)
    iou_50, iou_75 = (int(np.flatnonzero(np.isclose(evaluator.params.iouThrs, t))[0]) for t in (0.5, 0.75))
    return [
        mean(precision[..., 0, m]),
        mean(precision[iou_50, ..., 0, m]),
        mean(precision[iou_75, ..., 0, m]),
        *(mean(precision[..., area, m]) for area in (1, 2, 3)),
        mean(recall[..., 0, at(1)]),
        mean(recall[..., 0, at(min(10, max_dets))]),
        *(mean(recall[..., area, m]) for area in (0, 1, 2, 3)),
    ]


@pytest.mark.parametrize("max_dets", [1, 3, 100])
def test_max_dets_is_passed_to_pycocotools(max_dets: int) -> None:
    """Every stat at the requested maxDets, read from a plain pycocotools run's own arrays.

    pycocotools' ``summarize`` computes mAP@[.5:.95] at a hard-coded maxDets=100 (-1 otherwise) and the
    other stats at the largest setting (10 when asked for 3), so only 100 can be compared to its stats.
    """
    images, predictions, targets = random_world(7)
    evaluator = CocoEvaluator([f"c{k}" for k in range(NUM_CLASSES)], max_dets=max_dets)
    evaluator.update(predictions, targets)
    direct = direct_cocoeval(images, predictions, targets, max_dets)
    stats = evaluator.compute()["stats"]
    np.testing.assert_allclose(stats, summary_from_arrays(direct, max_dets), atol=1e-9, rtol=0)
    assert stats[0] > 0
    if max_dets == 100:
        assert stats == [float(v) for v in direct.stats]


def test_no_detections_at_all_scores_zero() -> None:
    _, predictions, targets = random_world(1, num_images=4)
    empty = [
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
        for _ in predictions
    ]
    evaluator = CocoEvaluator([f"c{k}" for k in range(NUM_CLASSES)])
    evaluator.update(empty, targets)
    metrics = evaluator.compute()
    assert metrics["mAP_50_95"] == 0.0 and metrics["mAR"] == 0.0


def test_perfect_detections_score_one() -> None:
    _, _, targets = random_world(2, num_images=6)
    perfect = [
        {"boxes": t["boxes"], "scores": torch.ones(len(t["labels"])), "labels": t["labels"]} for t in targets
    ]
    for target in targets:
        target["iscrowd"] = torch.zeros_like(target["iscrowd"])
    evaluator = CocoEvaluator([f"c{k}" for k in range(NUM_CLASSES)])
    evaluator.update(perfect, targets)
    metrics = evaluator.compute()
    assert metrics["mAP_50_95"] == pytest.approx(1.0) and metrics["mAP_50"] == pytest.approx(1.0)


def test_duplicate_images_are_refused() -> None:
    _, predictions, targets = random_world(3, num_images=2)
    evaluator = CocoEvaluator(["a", "b", "c", "d"])
    evaluator.update(predictions, targets)
    with pytest.raises(ValueError, match="already evaluated"):
        evaluator.update(predictions[:1], targets[:1])


# ------------------------------------------------------------------------------------------------ sweep
def test_sweep_by_hand() -> None:
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([0, 0])}
    prediction = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]]),
        "scores": torch.tensor([0.9, 0.8, 0.6, 0.3]),
        "labels": torch.tensor([0, 0, 0, 0]),
    }
    result = sweep([prediction], [target], thresholds=[0.0, 0.5, 0.85, 0.95])
    # >=0.0: 2 TP, 2 FP -> P .5 R 1 ; >=0.5: 1 TP 2 FP -> P 1/3 R .5 ; >=0.85: 1 TP -> P 1 R .5 ; none -> 0
    np.testing.assert_allclose(result.precision[0], [0.5, 1 / 3, 1.0, 0.0])
    np.testing.assert_allclose(result.recall[0], [1.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(result.f1[0], [2 / 3, 0.4, 2 / 3, 0.0])
    assert result.best_threshold == 0.0  # first maximum
    summary = result.summary(["only"])
    assert summary["F1"] == pytest.approx(2 / 3) and summary["per_class"]["only"]["num_gt"] == 2


def test_crowd_overlaps_are_ignored_and_classes_without_gt_are_excluded() -> None:
    target = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [40, 40, 90, 90]]),
        "labels": torch.tensor([0, 0]),
        "iscrowd": torch.tensor([0, 1]),
    }
    prediction = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [45, 45, 85, 85], [45, 45, 85, 85]]),
        "scores": torch.tensor([0.9, 0.8, 0.7]),
        "labels": torch.tensor([0, 0, 1]),
    }
    matches = match_detections([prediction], [target])
    assert matches[0].true_positive == [True, False] and matches[0].ignored == [False, True]
    assert matches[0].num_gt == 1 and matches[1].num_gt == 0
    result = confidence_sweep(matches, [0.5])
    assert result.macro_f1[0] == pytest.approx(1.0)  # class 1 (no GT) does not drag the macro average down


def _reference_module(name: str):
    """Load one file of ``rfdetr.evaluation`` on its own: the package ``__init__`` needs the reference's
    optional ``faster_coco_eval`` extra, which these two self-contained modules do not use."""
    import importlib.util

    import rfdetr

    path = Path(rfdetr.__file__).parent / "evaluation" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_reference_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.oracle
@pytest.mark.parametrize("seed", range(3))
def test_sweep_equals_reference(seed: int) -> None:
    sweep_confidence_thresholds = _reference_module("f1_sweep").sweep_confidence_thresholds
    build_matching_data = _reference_module("matching").build_matching_data

    _, predictions, targets = random_world(seed)
    reference = build_matching_data(predictions, targets, iou_threshold=0.5)
    ids = sorted(reference)
    thresholds = np.linspace(0, 1, 101)
    theirs = sweep_confidence_thresholds(
        [reference[c] for c in ids],
        thresholds,
        [i for i, c in enumerate(ids) if reference[c]["total_gt"] > 0],
    )
    ours = sweep(predictions, targets)
    assert ours.class_ids == ids
    for t, row in enumerate(theirs):
        assert ours.macro_f1[t] == pytest.approx(row["macro_f1"], abs=1e-12)
        assert ours.macro_precision[t] == pytest.approx(row["macro_precision"], abs=1e-12)
        assert ours.macro_recall[t] == pytest.approx(row["macro_recall"], abs=1e-12)
        np.testing.assert_allclose(ours.f1[:, t], row["per_class_f1"], atol=1e-12)
    best = max(theirs, key=lambda r: r["macro_f1"])
    assert ours.best_threshold == pytest.approx(best["confidence_threshold"])


def test_per_class_best_threshold() -> None:
    matches = {
        0: ClassMatches([0.9, 0.7, 0.4], [True, False, True], [False] * 3, num_gt=2),
        1: ClassMatches([0.95, 0.2], [True, False], [False] * 2, num_gt=1),
    }
    summary = confidence_sweep(matches, [0.1, 0.3, 0.5, 0.8]).summary(["a", "b"])
    assert summary["per_class"]["b"]["best_threshold"] == 0.3 and summary["per_class"]["b"]["best_f1"] == 1.0
    assert summary["per_class"]["a"]["best_f1"] == pytest.approx(0.8)  # 2 TP 1 FP at 0.1 / 0.3


def test_validation_targets_convert_back_to_the_dataset_ground_truth(tmp_path: Path) -> None:
    from rfdetr_core.data import build_dataset
    from rfdetr_core.evaluation import pixel_ground_truth
    from tests.support.detection_data import LEAVES, make_coco_dataset

    make_coco_dataset(tmp_path, {"train": 2, "valid": 5})
    dataset = build_dataset(tmp_path, "valid", 256)
    evaluator = CocoEvaluator(LEAVES)
    for index in range(len(dataset)):
        truth = dataset.evaluation_target(index)
        converted = pixel_ground_truth(dataset[index][1])
        np.testing.assert_allclose(converted["boxes"], truth["boxes"].numpy(), atol=1e-3)
        np.testing.assert_allclose(converted["area"], truth["area"].numpy(), rtol=1e-5)
        perfect = {
            "boxes": converted["boxes"],
            "scores": np.ones(len(truth["labels"])),
            "labels": truth["labels"],
        }
        evaluator.update([perfect], [truth])
    metrics = evaluator.compute()
    assert metrics["mAP_50_95"] == pytest.approx(1.0)
    assert {name for name, row in metrics["per_class"].items() if row["num_gt"]} <= set(LEAVES)
