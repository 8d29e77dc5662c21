"""COCO box mAP of a model's detections, computed by pycocotools itself.

:class:`CocoEvaluator` collects per-image predictions and ground truth (pixel ``xyxy`` boxes and
contiguous label indices, the format the datasets and the post-processor produce), builds the two
in-memory COCO objects pycocotools expects and runs ``COCOeval`` on them. The numbers are therefore
pycocotools' own; the wrapper only has to get the conversion right (``xywh`` boxes, one category
per class *including classes without ground truth*, ground-truth ``area`` and ``iscrowd`` kept, an
empty result set when nothing was detected) and read the per-class AP out of the precision table.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rfdetr_core.ops.boxes import cxcywh_to_xyxy_np, xyxy_to_xywh_np

STAT_NAMES = (
    "mAP_50_95",
    "mAP_50",
    "mAP_75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "mAR_1",
    "mAR_10",
    "mAR",
    "mAR_small",
    "mAR_medium",
    "mAR_large",
)


def _array(value: Any, dtype: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _mean_valid(values: np.ndarray) -> float | None:
    """Mean of the entries pycocotools filled in (it writes -1 where a class has no ground truth)."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def pixel_ground_truth(target: dict[str, Any]) -> dict[str, Any]:
    """A training target (normalised ``cxcywh`` boxes) back in pixel ``xyxy`` of the original image.

    For evaluating straight from a validation batch; crowd regions are not in training targets, so
    prefer ``dataset.evaluation_target(index)`` where the dataset is at hand.
    """
    height, width = (float(v) for v in _array(target["orig_size"], np.float64)[:2])
    scale = np.array([width, height, width, height])
    boxes = cxcywh_to_xyxy_np(_array(target["boxes"], np.float64).reshape(-1, 4)) * scale
    out = dict(target, boxes=boxes)
    if "area" in target and "size" in target:
        size_h, size_w = (float(v) for v in _array(target["size"], np.float64)[:2])
        out["area"] = _array(target["area"], np.float64) * (width * height) / (size_w * size_h)
    return out


def build_coco_ground_truth(images: list[dict], annotations: list[dict], num_classes: int) -> COCO:
    """An in-memory pycocotools ``COCO`` with one category per class index."""
    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": label, "name": str(label)} for label in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_detections(ground_truth: COCO, detections: list[dict]) -> COCO:
    """``COCO.loadRes`` that also accepts an empty detection list (pycocotools crashes on one)."""
    if detections:
        with contextlib.redirect_stdout(io.StringIO()):
            return ground_truth.loadRes(detections)
    result = COCO()
    result.dataset = {
        "images": list(ground_truth.dataset["images"]),
        "annotations": [],
        "categories": list(ground_truth.dataset["categories"]),
    }
    with contextlib.redirect_stdout(io.StringIO()):
        result.createIndex()
    return result


def run_cocoeval(ground_truth: COCO, detections: COCO, max_dets: int = 100) -> COCOeval:
    """Evaluate boxes keeping at most ``max_dets`` detections per image (pycocotools' default: 100).

    Two pycocotools details make any other value wrong unless handled: ``evaluate`` sorts
    ``params.maxDets`` and ``summarize`` reads the last entry, so ``[1, 10, 3]`` would summarise at 10;
    hence the settings are capped at ``max_dets`` (``[1, 3, 3]``), keeping the requested one last. And
    ``summarize`` reads mAP@[.5:.95] (``stats[0]``) at a hard-coded ``maxDets=100`` (-1 for any other
    value), so that one is recomputed from the precision array the same way, at the last index.
    """
    evaluator = COCOeval(ground_truth, detections, iouType="bbox")
    evaluator.params.maxDets = [min(1, max_dets), min(10, max_dets), max_dets]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    all_areas = evaluator.params.areaRngLbl.index("all")
    ap = _mean_valid(evaluator.eval["precision"][:, :, :, all_areas, -1])
    evaluator.stats[0] = -1.0 if ap is None else ap
    return evaluator


def per_class_ap(evaluator: COCOeval) -> list[dict[str, float | None]]:
    """AP@[.5:.95], AP@.5 and AR of every category, in category order (``None`` without ground truth)."""
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    recall = evaluator.eval["recall"]  # [T, K, A, M]
    iou_50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    rows = []
    for k in range(precision.shape[2]):
        rows.append(
            {
                "AP": _mean_valid(precision[:, :, k, 0, -1]),
                "AP50": _mean_valid(precision[iou_50, :, k, 0, -1]),
                "AR": _mean_valid(recall[:, k, 0, -1]),
            }
        )
    return rows


class CocoEvaluator:
    """Accumulate detections and ground truth image by image, then compute COCO metrics.

    Ground truth per image: ``boxes`` (pixel ``xyxy``), ``labels``, optionally ``image_id``,
    ``iscrowd``, ``area`` (defaults to the box area) and ``orig_size`` (``h, w``). Predictions per
    image: ``boxes`` (pixel ``xyxy``), ``scores``, ``labels``. Tensors or arrays both work.
    """

    def __init__(self, class_names: Sequence[str], max_dets: int = 100) -> None:
        self.class_names = list(class_names)
        self.max_dets = max_dets
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.detections: list[dict[str, Any]] = []
        self._seen: set[int] = set()

    def update(self, predictions: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Add a batch: one prediction dict and one ground-truth dict per image."""
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions for {len(targets)} images")
        for prediction, target in zip(predictions, targets, strict=True):
            self._add_image(prediction, target)

    def _add_image(self, prediction: dict[str, Any], target: dict[str, Any]) -> None:
        image_id = (
            int(_array(target["image_id"], np.int64).reshape(-1)[0])
            if "image_id" in target
            else len(self.images)
        )
        if image_id in self._seen:
            raise ValueError(f"image id {image_id} was already evaluated")
        self._seen.add(image_id)
        info: dict[str, Any] = {"id": image_id}
        if "orig_size" in target:
            info["height"], info["width"] = (int(v) for v in _array(target["orig_size"], np.int64)[:2])
        self.images.append(info)
        boxes = xyxy_to_xywh_np(_array(target["boxes"], np.float64).reshape(-1, 4))
        labels = _array(target["labels"], np.int64).reshape(-1)
        crowd = _array(target.get("iscrowd", np.zeros(len(labels))), np.int64).reshape(-1)
        area = (
            _array(target["area"], np.float64).reshape(-1) if "area" in target else boxes[:, 2] * boxes[:, 3]
        )
        for box, label, is_crowd, box_area in zip(boxes, labels, crowd, area, strict=True):
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,  # pycocotools treats id 0 as "unmatched"
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [float(v) for v in box],
                    "area": float(box_area),
                    "iscrowd": int(is_crowd),
                }
            )
        det_boxes = xyxy_to_xywh_np(_array(prediction["boxes"], np.float64).reshape(-1, 4))
        det_scores = _array(prediction["scores"], np.float64).reshape(-1)
        det_labels = _array(prediction["labels"], np.int64).reshape(-1)
        for box, score, label in zip(det_boxes, det_scores, det_labels, strict=True):
            self.detections.append(
                {
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [float(v) for v in box],
                    "score": float(score),
                }
            )

    def compute(self) -> dict[str, Any]:
        """The 12 COCO statistics by name, ``stats`` (the raw list) and ``per_class`` (keyed by class name)."""
        if not self.images:
            raise ValueError("nothing to evaluate: no images were added")
        ground_truth = build_coco_ground_truth(self.images, self.annotations, len(self.class_names))
        evaluator = run_cocoeval(ground_truth, load_detections(ground_truth, self.detections), self.max_dets)
        stats = [float(v) for v in evaluator.stats]
        metrics: dict[str, Any] = dict(zip(STAT_NAMES, stats, strict=True))
        metrics["stats"] = stats
        gt_counts = np.bincount(
            [a["category_id"] for a in self.annotations if not a["iscrowd"]], minlength=len(self.class_names)
        )
        metrics["per_class"] = {
            name: dict(row, num_gt=int(gt_counts[k]))
            for k, (name, row) in enumerate(zip(self.class_names, per_class_ap(evaluator), strict=True))
        }
        return metrics
