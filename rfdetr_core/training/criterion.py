"""The RF-DETR training loss (``SetCriterion`` in the reference).

For every set of predictions the model returns -- the final decoder layer, each intermediate
layer (``aux_outputs``) and the two-stage encoder proposals (``enc_outputs``) -- the queries are
matched to the targets (:mod:`rfdetr_core.training.matcher`) and three losses are taken:

``loss_ce``
    IoU-aware binary cross-entropy over *all* queries and classes. A matched query's target for its
    class is not 1 but the soft score ``t = clamp(p ** alpha * IoU ** (1 - alpha), min=0.01)``
    (``p`` its own predicted probability, ``IoU`` with its target box, both detached), so the
    classification score learns to rank boxes by localisation quality. Every other (query, class)
    cell is a negative weighted by ``p ** 2``, the focal down-weighting of easy negatives.
``loss_bbox``
    L1 distance of matched normalised ``cxcywh`` boxes.
``loss_giou``
    ``1 - GIoU`` of matched boxes.

All three are summed and divided by the number of target boxes in the batch (times ``group_detr``
in training, because each group matches every target once). Keys of the intermediate layers get a
``_<i>`` suffix and the encoder's an ``_enc`` suffix. ``class_error`` and ``cardinality_error`` are
logged for monitoring only. The weighted sum that is back-propagated uses :attr:`weight_dict`
(1 / 5 / 2 for ce / bbox / giou, the reference defaults).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rfdetr_core.ops.boxes import cxcywh_to_xyxy, paired_giou, paired_iou
from rfdetr_core.training.matcher import HungarianMatcher, MatchIndices

LOSS_WEIGHTS = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}


def build_weight_dict(
    dec_layers: int, two_stage: bool = True, base: dict[str, float] | None = None
) -> dict[str, float]:
    """Weights of every loss key the criterion produces for a decoder of ``dec_layers`` layers."""
    base = dict(base or LOSS_WEIGHTS)
    weights = dict(base)
    for layer in range(dec_layers - 1):
        weights.update({f"{key}_{layer}": value for key, value in base.items()})
    if two_stage:
        weights.update({f"{key}_enc": value for key, value in base.items()})
    return weights


class SetCriterion(nn.Module):
    """Loss of an RF-DETR output dict against a list of target dicts.

    ``group_detr`` is only applied in training mode (``criterion.train()``): in eval mode the model
    emits a single query group, and the normaliser counts every target once.
    """

    def __init__(
        self,
        matcher: HungarianMatcher | None = None,
        weight_dict: dict[str, float] | None = None,
        focal_alpha: float = 0.25,
        group_detr: int = 13,
        sum_group_losses: bool = False,
    ) -> None:
        super().__init__()
        self.matcher = matcher if matcher is not None else HungarianMatcher(focal_alpha=focal_alpha)
        self.weight_dict = dict(weight_dict) if weight_dict is not None else dict(LOSS_WEIGHTS)
        self.focal_alpha = focal_alpha
        self.group_detr = group_detr
        self.sum_group_losses = sum_group_losses

    # -- normalisation ---------------------------------------------------------------------------
    def num_boxes(self, targets: list[dict[str, Tensor]], device: torch.device) -> Tensor:
        """Loss normaliser: target boxes in the batch (x groups while training), at least 1.

        Distributed training would average this over ranks; the trainer owns that reduction.
        """
        count = sum(len(t["labels"]) for t in targets)
        if self.training and not self.sum_group_losses:
            count *= self.group_detr
        return torch.as_tensor(float(count), device=device).clamp(min=1.0)

    # -- the three losses ------------------------------------------------------------------------
    @staticmethod
    def _matched(indices: MatchIndices, targets: list[dict[str, Tensor]], device: torch.device):
        """Flat (image, query) positions of all matches, with their target labels and boxes."""
        image_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)]).to(device)
        query_idx = torch.cat([src for src, _ in indices]).to(device)
        labels = torch.cat(
            [t["labels"][tgt.to(t["labels"].device)] for t, (_, tgt) in zip(targets, indices, strict=True)]
        )
        boxes = torch.cat(
            [t["boxes"][tgt.to(t["boxes"].device)] for t, (_, tgt) in zip(targets, indices, strict=True)]
        )
        return image_idx, query_idx, labels.to(device), boxes.to(device)

    def loss_labels(self, logits: Tensor, pred_boxes: Tensor, matched, num_boxes: Tensor) -> Tensor:
        """IoU-aware BCE (see the module docstring)."""
        image_idx, query_idx, labels, target_boxes = matched
        prob = logits.sigmoid()
        iou, _ = paired_iou(
            cxcywh_to_xyxy(pred_boxes[image_idx, query_idx].detach()), cxcywh_to_xyxy(target_boxes)
        )
        soft_target = prob[image_idx, query_idx, labels].pow(self.focal_alpha) * iou.detach().pow(
            1 - self.focal_alpha
        )
        soft_target = soft_target.clamp(min=0.01).detach()
        positive_weight = torch.zeros_like(logits)
        negative_weight = prob.pow(2)
        positive_weight[image_idx, query_idx, labels] = soft_target.to(logits.dtype)
        negative_weight[image_idx, query_idx, labels] = (1 - soft_target).to(logits.dtype)
        # -pos*log(p) - neg*log(1-p), with log(1-p) = log(p) - x, in the stable logsigmoid form.
        loss = negative_weight * logits - F.logsigmoid(logits) * (positive_weight + negative_weight)
        return loss.sum() / num_boxes

    @staticmethod
    def loss_boxes(pred_boxes: Tensor, matched, num_boxes: Tensor) -> tuple[Tensor, Tensor]:
        """L1 and GIoU losses of the matched boxes."""
        image_idx, query_idx, _, target_boxes = matched
        boxes = pred_boxes[image_idx, query_idx]
        l1 = F.l1_loss(boxes, target_boxes, reduction="none").sum() / num_boxes
        giou = (1 - paired_giou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(target_boxes))).sum() / num_boxes
        return l1, giou

    @staticmethod
    @torch.no_grad()
    def monitoring(logits: Tensor, matched, targets: list[dict[str, Tensor]], with_class_error: bool):
        """``class_error`` (top-1 error % of matched queries) and ``cardinality_error`` (|#p>0.5 - #targets|)."""
        image_idx, query_idx, labels, _ = matched
        out: dict[str, Tensor] = {}
        if with_class_error:
            # With nothing matched the reference reports 100; kept so logged curves compare.
            correct = (
                (logits[image_idx, query_idx].argmax(-1) == labels).float().mean() if labels.numel() else 0.0
            )
            out["class_error"] = torch.as_tensor(100 - 100 * correct, device=logits.device)
        confident = (logits.sigmoid().max(-1).values > 0.5).sum(1).float()
        lengths = torch.as_tensor([float(len(t["labels"])) for t in targets], device=logits.device)
        out["cardinality_error"] = F.l1_loss(confident, lengths)
        return out

    # -- public API ------------------------------------------------------------------------------
    def layer_losses(
        self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]], num_boxes: Tensor, final: bool
    ) -> dict[str, Tensor]:
        """Match one prediction set and compute its losses (without suffixes)."""
        group_detr = self.group_detr if self.training else 1
        indices = self.matcher(outputs, targets, group_detr=group_detr)
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        matched = self._matched(indices, targets, logits.device)
        losses = {"loss_ce": self.loss_labels(logits, boxes, matched, num_boxes)}
        losses["loss_bbox"], losses["loss_giou"] = self.loss_boxes(boxes, matched, num_boxes)
        losses.update(self.monitoring(logits, matched, targets, with_class_error=final))
        return losses

    def forward(
        self, outputs: dict, targets: list[dict[str, Tensor]], num_boxes: Tensor | float | None = None
    ) -> dict[str, Tensor]:
        """All losses of an output dict: final layer, ``aux_outputs`` (``_i``) and ``enc_outputs`` (``_enc``)."""
        device = outputs["pred_logits"].device
        if num_boxes is None:
            num_boxes = self.num_boxes(targets, device)
        else:
            num_boxes = torch.as_tensor(num_boxes, dtype=torch.float, device=device)
        final = {k: v for k, v in outputs.items() if k in ("pred_logits", "pred_boxes")}
        losses = self.layer_losses(final, targets, num_boxes, final=True)
        for layer, aux in enumerate(outputs.get("aux_outputs") or []):
            part = self.layer_losses(aux, targets, num_boxes, final=False)
            losses.update({f"{key}_{layer}": value for key, value in part.items()})
        if "enc_outputs" in outputs:
            part = self.layer_losses(outputs["enc_outputs"], targets, num_boxes, final=False)
            losses.update({f"{key}_enc": value for key, value in part.items()})
        return losses

    def total(self, losses: dict[str, Tensor]) -> Tensor:
        """Weighted sum of the losses named in :attr:`weight_dict` -- the value to back-propagate."""
        return sum(losses[key] * weight for key, weight in self.weight_dict.items() if key in losses)
