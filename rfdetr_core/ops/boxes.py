"""The one home of box conversions and IoU: torch versions for the model and training, numpy twins for
evaluation, export checks and the studio.

Formats: ``xyxy`` = (x0, y0, x1, y1), ``xywh`` = (x, y, w, h) with a top-left corner (COCO, the studio's
database), ``cxcywh`` = (cx, cy, w, h) (the model's normalised outputs).

``torchvision.ops`` has pairwise IoU/GIoU but divides by the raw union and hull areas, so one
collapsed predicted box (width 0, which a saturated sigmoid produces early in training) turns a
whole cost matrix into NaN. Both versions here clamp those denominators at ``EPS``, which changes
nothing for boxes of non-zero area. The element-wise versions exist because the criterion only
needs matched pairs: building an N x N matrix to read its diagonal would waste quadratic memory on
every decoder layer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(cx, cy, w, h)`` -> ``(x0, y0, x1, y1)``; a negative width or height counts as 0.

    The clamp is the reference's, and it matters beyond the sign: ``clamp`` has zero gradient at
    exactly 0, so a query that outputs ``w == 0`` gets no width gradient from GIoU. Without it, the
    gradient of the few such queries at initialisation changed the norm that ``clip_max_norm``
    scales by, and with it every parameter's first update (issue 20).
    """
    cx, cy, w, h = boxes.unbind(-1)
    w, h = w.clamp(min=0.0), h.clamp(min=0.0)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``(x0, y0, x1, y1)`` -> ``(cx, cy, w, h)``."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


EPS = 1e-7


def _area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def paired_iou(boxes_a: Tensor, boxes_b: Tensor) -> tuple[Tensor, Tensor]:
    """IoU of ``boxes_a[i]`` with ``boxes_b[i]`` (xyxy), and the union it was divided by."""
    top_left = torch.maximum(boxes_a[..., :2], boxes_b[..., :2])
    bottom_right = torch.minimum(boxes_a[..., 2:], boxes_b[..., 2:])
    overlap = (bottom_right - top_left).clamp(min=0)
    inter = overlap[..., 0] * overlap[..., 1]
    union = _area(boxes_a) + _area(boxes_b) - inter
    return inter / union.clamp(min=EPS), union


def paired_giou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Generalised IoU of ``boxes_a[i]`` with ``boxes_b[i]`` (xyxy)."""
    iou, union = paired_iou(boxes_a, boxes_b)
    top_left = torch.minimum(boxes_a[..., :2], boxes_b[..., :2])
    bottom_right = torch.maximum(boxes_a[..., 2:], boxes_b[..., 2:])
    hull = (bottom_right - top_left).clamp(min=0)
    hull_area = hull[..., 0] * hull[..., 1]
    return iou - (hull_area - union) / hull_area.clamp(min=EPS)


def pairwise_giou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """``[N, M]`` generalised IoU of every box of ``boxes_a`` with every box of ``boxes_b`` (xyxy)."""
    return paired_giou(boxes_a[:, None, :], boxes_b[None, :, :])


# -- numpy twins -------------------------------------------------------------------------------------


def xywh_to_xyxy_np(boxes: np.ndarray) -> np.ndarray:
    """``(x, y, w, h)`` -> ``(x0, y0, x1, y1)`` for an ``[..., 4]`` array."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], axis=-1)


def cxcywh_to_xyxy_np(boxes: np.ndarray) -> np.ndarray:
    """``(cx, cy, w, h)`` -> ``(x0, y0, x1, y1)`` for an ``[..., 4]`` array (the torch version's twin,
    negative sizes clamped at 0 the same way)."""
    cx, cy, w, h = np.moveaxis(np.asarray(boxes, dtype=np.float64), -1, 0)
    w, h = np.maximum(w, 0.0), np.maximum(h, 0.0)
    return np.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), axis=-1)


def xyxy_to_xywh_np(boxes: np.ndarray) -> np.ndarray:
    """``(x0, y0, x1, y1)`` -> ``(x, y, w, h)`` for an ``[..., 4]`` array."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], axis=-1)


def box_iou_np(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """``[N, M]`` IoU of every xyxy box of ``boxes_a`` with every box of ``boxes_b`` (float64).

    Edge rules, the same for every caller: a reversed box (x1 < x0 or y1 < y0) has zero area, and a
    pair whose union is zero has IoU 0 (never NaN), so two identical points do not count as a match.
    """
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    overlap = np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2])
    inter = np.clip(overlap, 0, None).prod(axis=-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
