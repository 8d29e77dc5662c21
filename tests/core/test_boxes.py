"""rfdetr_core.ops.boxes, the one home of box conversions and IoU: against pycocotools and torchvision,
and the edge rules every caller (evaluation sweep, export checks, the studio's review) relies on."""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import box_convert, box_iou

from rfdetr_core.ops.boxes import (
    box_iou_np,
    cxcywh_to_xyxy,
    cxcywh_to_xyxy_np,
    xywh_to_xyxy_np,
    xyxy_to_cxcywh,
    xyxy_to_xywh_np,
)


def _random_xywh(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(0, 50, (n, 2)), rng.uniform(1, 40, (n, 2))], axis=1)


def test_numpy_iou_equals_pycocotools_and_torchvision() -> None:
    a, b = _random_xywh(1, 30), _random_xywh(2, 20)
    ours = box_iou_np(xywh_to_xyxy_np(a), xywh_to_xyxy_np(b))
    np.testing.assert_allclose(ours, mask_utils.iou(a, b, [0] * len(b)), rtol=0, atol=1e-12)
    tv = box_iou(torch.from_numpy(xywh_to_xyxy_np(a)), torch.from_numpy(xywh_to_xyxy_np(b))).numpy()
    np.testing.assert_allclose(ours, tv, rtol=0, atol=1e-12)


def test_numpy_iou_edge_rules() -> None:
    box = [0, 0, 10, 10]
    reversed_box = [10, 10, 0, 0]  # zero area, so it overlaps nothing
    point = [5, 5, 5, 5]
    iou = box_iou_np([box, reversed_box, point], [box, point])
    np.testing.assert_array_equal(iou, [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # point vs point: 0, not NaN
    assert box_iou_np(np.zeros((0, 4)), [box]).shape == (0, 1)
    assert box_iou_np([box], np.zeros((0, 4))).shape == (1, 0)
    assert box_iou_np(box, box).shape == (1, 1)  # a single box is one row


def test_conversions_round_trip_and_match_torchvision() -> None:
    xywh = _random_xywh(3, 25)
    xyxy = xywh_to_xyxy_np(xywh)
    np.testing.assert_array_equal(xyxy, box_convert(torch.from_numpy(xywh), "xywh", "xyxy").numpy())
    np.testing.assert_allclose(xyxy_to_xywh_np(xyxy), xywh, rtol=0, atol=1e-12)
    cxcywh = box_convert(torch.from_numpy(xyxy), "xyxy", "cxcywh")
    np.testing.assert_allclose(xyxy_to_cxcywh(torch.from_numpy(xyxy)), cxcywh, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(cxcywh_to_xyxy_np(cxcywh.numpy()), cxcywh_to_xyxy(cxcywh).numpy())
    np.testing.assert_allclose(cxcywh_to_xyxy(cxcywh), xyxy, rtol=0, atol=1e-12)
    assert xywh_to_xyxy_np(np.zeros((0, 4))).shape == (0, 4)
    assert cxcywh_to_xyxy_np(np.zeros((2, 3, 4))).shape == (2, 3, 4)
