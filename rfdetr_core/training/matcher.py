"""One-to-one assignment of predicted queries to ground-truth boxes (Hungarian matching).

DETR-style models predict a fixed set of boxes; the loss first decides which prediction answers
which ground-truth object, by solving a linear assignment on a cost that mixes

* a focal-loss classification cost (how unlikely the query thinks the target's class is),
* the L1 distance between the normalised ``cxcywh`` boxes,
* minus the generalised IoU of the boxes,

weighted 2 / 5 / 2 by default -- the reference's ``set_cost_class`` / ``set_cost_bbox`` /
``set_cost_giou``.

**Group DETR.** While training, the decoder runs ``group_detr`` independent groups of queries
(13 by default) to speed up convergence. Each group is matched to *all* targets on its own, so
every target gets one query per group: the queries of image ``b`` are cut into ``group_detr``
equal, consecutive slices, each solved separately, and the row indices of group ``g`` are offset
by ``g * queries_per_group`` before the groups are concatenated.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from rfdetr_core.ops.boxes import cxcywh_to_xyxy, pairwise_giou

MatchIndices = list[tuple[Tensor, Tensor]]


def focal_class_cost(logits: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Focal-loss difference (positive minus negative term) of logits already picked at the target classes.

    ``logsigmoid`` instead of ``log(p + 1e-8)`` keeps confident logits exact instead of floored.
    """
    prob = logits.sigmoid()
    positive = alpha * (1 - prob) ** gamma * -F.logsigmoid(logits)
    negative = (1 - alpha) * prob**gamma * -F.logsigmoid(-logits)
    return positive - negative


def _make_finite(cost: Tensor) -> Tensor:
    """Replace NaN/inf by a value worse than every finite cost, so a broken query is never preferred."""
    finite = torch.isfinite(cost)
    if bool(finite.all()):
        return cost
    if bool(finite.any()):
        values = cost[finite]
        worst = float(values.max() + values.abs().max() + 1.0)
    else:
        worst = 1e8
    return torch.where(finite, cost, torch.full_like(cost, worst))


def assign_groups(cost: Tensor, group_detr: int) -> tuple[Tensor, Tensor]:
    """Solve a ``[queries, targets]`` cost per query group; rows come back in global query indices."""
    num_queries = cost.shape[0]
    if num_queries % group_detr:
        raise ValueError(f"{num_queries} queries cannot be split into {group_detr} equal groups")
    per_group = num_queries // group_detr
    matrix = cost.detach().cpu().numpy()
    rows, cols = [], []
    for group in range(group_detr):
        r, c = linear_sum_assignment(matrix[group * per_group : (group + 1) * per_group])
        rows.append(r + group * per_group)
        cols.append(c)
    return (
        torch.as_tensor(np.concatenate(rows), dtype=torch.int64),
        torch.as_tensor(np.concatenate(cols), dtype=torch.int64),
    )


class HungarianMatcher(nn.Module):
    """Match queries to targets per image (and per query group); no gradients flow through it."""

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        focal_alpha: float = 0.25,
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("at least one matching cost must be non-zero")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.focal_alpha = focal_alpha

    def cost_matrix(self, logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor) -> Tensor:
        """``[queries, targets]`` matching cost of one image (float32, finite)."""
        class_cost = focal_class_cost(logits[:, labels], self.focal_alpha)
        bbox_cost = torch.cdist(boxes, target_boxes.to(boxes.dtype), p=1)
        giou_cost = -pairwise_giou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(target_boxes.to(boxes.dtype)))
        cost = self.cost_bbox * bbox_cost + self.cost_class * class_cost + self.cost_giou * giou_cost
        return _make_finite(cost.float())

    @torch.no_grad()
    def forward(
        self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]], group_detr: int = 1
    ) -> MatchIndices:
        """Return, per image, ``(query_indices, target_indices)`` (int64, groups concatenated in order).

        ``outputs`` needs ``pred_logits`` ``[B, Q, C]`` and ``pred_boxes`` ``[B, Q, 4]`` (normalised
        cxcywh); each target needs ``labels`` ``[N]`` and ``boxes`` ``[N, 4]`` in the same box format.
        """
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        indices: MatchIndices = []
        for image, target in enumerate(targets):
            labels = target["labels"].to(logits.device)
            if labels.numel() == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(logits[image], boxes[image], labels, target["boxes"].to(boxes.device))
            indices.append(assign_groups(cost, group_detr))
        return indices
