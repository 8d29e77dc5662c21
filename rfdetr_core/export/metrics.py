"""Comparing two sets of raw outputs: detections, their agreement, and COCO mAP.

Max-abs differences of raw tensors say whether a float32 artefact is numerically faithful; for reduced
precision they are expected to grow, so the verifier also compares what users see — the decoded
detections — and, when labelled images exist, the accuracy both models reach.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from rfdetr_core.ops.boxes import box_iou_np, cxcywh_to_xyxy_np


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def decode(boxes: np.ndarray, logits: np.ndarray, size_hw: tuple[int, int], top_k: int = 100) -> dict:
    """One image's best ``top_k`` (query, class) pairs: xyxy pixels at *size_hw*, scores, labels.

    Same rule as the model's post-processing (top-k of sigmoid over every query/class pair), with a
    stable sort so equal scores keep a deterministic order.
    """
    prob = sigmoid(logits.astype(np.float64)).reshape(-1)
    num_classes = logits.shape[-1]
    order = np.argsort(-prob, kind="stable")[:top_k]
    query, labels = order // num_classes, order % num_classes
    height, width = size_hw
    xyxy = cxcywh_to_xyxy_np(boxes[query]) * [width, height, width, height]
    xyxy = np.clip(xyxy, 0, [width, height, width, height])
    return {"boxes": xyxy, "scores": prob[order], "labels": labels, "queries": query}


def match_detections(
    ref: list[dict], other: list[dict], top_k: int = 10, min_iou: float = 0.5
) -> dict[str, Any]:
    """How many of the reference's top-k detections the artefact reproduces: same class, IoU >= ``min_iou``
    (or every coordinate within 1 px).

    Each reference detection (best first) takes the unused artefact detection of its class with the
    highest IoU among the artefact's top ``3*top_k`` (reduced precision may reorder near-equal scores).
    Matching by box rather than by query index matters: a 1e-6 drift can swap two near-tied two-stage
    proposals, which moves an identical detection to another query. The box error is then measured in
    pixels of the model input.
    """
    total = matched = 0
    box_err: list[float] = []
    score_err: list[float] = []
    for r, o in zip(ref, other, strict=True):
        window = 3 * top_k
        o_boxes, o_labels = np.asarray(o["boxes"][:window]), np.asarray(o["labels"][:window])
        used = np.zeros(len(o_labels), bool)
        n = min(top_k, len(r["scores"]))
        r_boxes = np.asarray(r["boxes"][:n]).reshape(-1, 4)
        ious = box_iou_np(r_boxes, o_boxes) if n and len(o_labels) else np.zeros((n, 0))
        # a degenerate box (clipped flat at the image edge) has IoU 0 even with itself: within 1 px is a match
        if ious.size:
            ious = np.where(np.abs(r_boxes[:, None, :] - o_boxes[None, :, :]).max(-1) <= 1.0, 1.0, ious)
        for i in range(n):
            total += 1
            candidates = (o_labels == int(r["labels"][i])) & ~used & (ious[i] >= min_iou)
            if not candidates.any():
                continue
            j = int(np.argmax(np.where(candidates, ious[i], -1.0)))
            used[j] = True
            matched += 1
            box_err.append(float(np.abs(r["boxes"][i] - o_boxes[j]).max()))
            score_err.append(abs(float(r["scores"][i]) - float(o["scores"][j])))
    return {
        "top_k": top_k,
        "compared": total,
        "matched": matched,
        "match_rate": matched / total if total else 1.0,
        "max_box_error_px": max(box_err) if box_err else None,
        "max_score_error": max(score_err) if score_err else None,
    }


def load_coco(validation: str | Path | tuple[str | Path, str | Path]) -> tuple[Path, dict]:
    """``(image_dir, coco_dict)`` from a folder with ``_annotations.coco.json`` or an explicit pair."""
    if isinstance(validation, (tuple, list)):
        image_dir, ann = Path(validation[0]), Path(validation[1])
    else:
        image_dir = Path(validation)
        candidates = [image_dir / "_annotations.coco.json", *sorted(image_dir.glob("*.json"))]
        ann = next((c for c in candidates if c.is_file()), None)
        if ann is None:
            raise FileNotFoundError(f"No COCO annotation JSON found in {image_dir}")
    return image_dir, json.loads(ann.read_text())


def category_for_labels(
    class_names: list[str], coco: dict, class_ids: list[int] | None, num_logits: int
) -> dict:
    """Map logit column → category id: COCO sparse ids as-is, else by name, else by position."""
    if class_ids is not None:
        return {i: i for i in range(num_logits)}
    by_name = {c["name"]: c["id"] for c in coco.get("categories", [])}
    if class_names and all(n in by_name for n in class_names):
        return {i: by_name[n] for i, n in enumerate(class_names)}
    return {i: i for i in range(num_logits)}


def coco_map(coco: dict, detections: dict[int, dict], label_to_cat: dict[int, int]) -> dict[str, float]:
    """mAP@50:95 and mAP@50 of *detections* (image id → decoded dict in original pixels)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = []
    for image_id, det in detections.items():
        for box, score, label in zip(det["boxes"], det["scores"], det["labels"], strict=True):
            cat = label_to_cat.get(int(label))
            if cat is None:
                continue
            x0, y0, x1, y1 = (float(v) for v in box)
            results.append(
                {
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(score),
                }
            )
    if not results:
        return {"map50_95": 0.0, "map50": 0.0}
    gt = COCO()
    gt.dataset = {k: coco[k] for k in ("images", "annotations", "categories")}
    for ann in gt.dataset["annotations"]:
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = list(detections)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map50_95": max(float(ev.stats[0]), 0.0), "map50": max(float(ev.stats[1]), 0.0)}
