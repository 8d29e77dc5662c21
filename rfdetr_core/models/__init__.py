"""The RF-DETR network in plain PyTorch.

``build_model(config)`` returns an :class:`RFDETRDetector` whose ``state_dict()`` has exactly the
keys and shapes of the reference implementation's detector (the ``model`` entry of an official
``.pth``), so official checkpoints load with ``strict=True`` and ours load in the reference.

Forward contract::

    out = model(images)   # images: float (B, 3, H, W), ImageNet-normalised,
                          # H and W multiples of config.patch_size * config.num_windows
    out["pred_logits"]    # (B, num_queries, num_classes + 1) raw class logits (sigmoid scores;
                          #  the extra column mirrors the reference head, index = category id)
    out["pred_boxes"]     # (B, num_queries, 4) normalised (cx, cy, w, h)

In training mode (``model.train()``) every group of the group-DETR scheme is decoded, so the query
axis is ``num_queries * group_detr`` (group 0 first), and two more keys are present::

    out["aux_outputs"]    # list (dec_layers - 1) of {"pred_logits", "pred_boxes"} per earlier layer
    out["enc_outputs"]    # {"pred_logits", "pred_boxes"} of the two-stage proposals

The dict is open: a segmentation head will add ``pred_masks`` later. Inputs must not be padded
(the reference's padding masks are all-false for the batches RF-DETR trains and predicts on).
"""

from __future__ import annotations

from rfdetr_core.config import ModelConfig
from rfdetr_core.models.args import model_config_from_args, model_config_from_checkpoint
from rfdetr_core.models.detector import RFDETRDetector


def build_model(config: ModelConfig) -> RFDETRDetector:
    """Build a randomly initialised network for ``config`` (load weights with ``load_state_dict``)."""
    return RFDETRDetector(config)


__all__ = ["RFDETRDetector", "build_model", "model_config_from_args", "model_config_from_checkpoint"]
