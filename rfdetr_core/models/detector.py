"""The RF-DETR detector: backbone + projector, transformer, class and box heads, group DETR queries."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from rfdetr_core.config import ModelConfig
from rfdetr_core.models.backbone import DinoV2Encoder
from rfdetr_core.models.mlp import MLP
from rfdetr_core.models.projector import MultiScaleProjector
from rfdetr_core.models.transformer import Transformer, apply_box_delta


def init_vit_weights(module: nn.Module, std: float = 0.02) -> None:
    """DINOv2's initialisation (truncated normal weights, zero biases) for training from scratch."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    embeddings = module.embeddings
    nn.init.trunc_normal_(embeddings.position_embeddings, std=std)
    nn.init.trunc_normal_(embeddings.cls_token, std=std)


class Backbone(nn.Module):
    """Windowed DINOv2 followed by the multi-scale projector: images -> decoder feature levels."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.encoder = DinoV2Encoder(
            config.encoder,
            config.out_feature_indexes,
            config.patch_size,
            config.num_windows,
            config.positional_encoding_size,
            in_channels=config.num_channels,
            depth=config.vit_encoder_num_layers,
            window_block_indexes=config.window_block_indexes,
        )
        init_vit_weights(self.encoder.encoder)
        self.projector = MultiScaleProjector(
            self.encoder.out_channels, config.hidden_dim, config.projector_scale, layer_norm=config.layer_norm
        )
        if config.freeze_encoder:
            self.encoder.requires_grad_(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.projector(self.encoder(images))


class RFDETRDetector(nn.Module):
    """Full network. See :mod:`rfdetr_core.models` for the forward contract."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.segmentation_head:
            raise NotImplementedError("The segmentation head is not implemented yet.")
        if not config.lite_refpoint_refine:
            raise NotImplementedError(
                "Only lite_refpoint_refine=True (every released variant) is implemented."
            )
        self.config = config
        self.num_queries = config.num_queries
        self.group_detr = config.group_detr
        self.bbox_reparam = config.bbox_reparam
        dim = config.hidden_dim
        num_logits = config.num_classes + 1
        self.register_buffer("_kp_active_mask", torch.zeros(0, 0, dtype=torch.bool))
        self.transformer = Transformer(
            dim,
            config.sa_nheads,
            config.ca_nheads,
            config.num_queries,
            config.dec_layers,
            config.dim_feedforward,
            config.group_detr,
            len(config.projector_scale),
            config.dec_n_points,
            bbox_reparam=config.bbox_reparam,
            two_stage=config.two_stage,
        )
        self.class_embed = nn.Linear(dim, num_logits)
        self.bbox_embed = MLP(dim, dim, 4, 3)
        self.refpoint_embed = nn.Embedding(config.num_queries * config.group_detr, 4)
        self.query_feat = nn.Embedding(config.num_queries * config.group_detr, dim)
        self.backbone = nn.ModuleList([Backbone(config)])
        self._reset_heads()

    def _reset_heads(self) -> None:
        """Focal-loss prior on the class bias, zero box deltas, zero learned anchors."""
        nn.init.zeros_(self.refpoint_embed.weight)
        nn.init.constant_(self.class_embed.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.zeros_(self.bbox_embed.layers[-1].weight)
        nn.init.zeros_(self.bbox_embed.layers[-1].bias)
        if self.transformer.two_stage:
            groups = self.group_detr
            self.transformer.enc_out_class_embed = nn.ModuleList(
                copy.deepcopy(self.class_embed) for _ in range(groups)
            )
            self.transformer.enc_out_bbox_embed = nn.ModuleList(
                copy.deepcopy(self.bbox_embed) for _ in range(groups)
            )

    def reinitialize_detection_head(self, num_logits: int) -> None:
        """Resize every class head to ``num_logits`` outputs, tiling or truncating the current rows."""

        def resized(linear: nn.Linear) -> nn.Linear:
            repeats = math.ceil(num_logits / linear.out_features)
            new = nn.Linear(linear.in_features, num_logits).to(linear.weight)
            with torch.no_grad():
                new.weight.copy_(linear.weight.repeat(repeats, 1)[:num_logits])
                new.bias.copy_(linear.bias.repeat(repeats)[:num_logits])
            return new

        self.class_embed = resized(self.class_embed)
        if self.transformer.two_stage:
            self.transformer.enc_out_class_embed = nn.ModuleList(
                resized(m) for m in self.transformer.enc_out_class_embed
            )

    def _boxes(self, hidden: Tensor, references: Tensor) -> Tensor:
        delta = self.bbox_embed(hidden)
        if self.bbox_reparam:
            return apply_box_delta(references, delta)
        return (delta + references).sigmoid()

    def forward(self, images: Tensor) -> dict[str, Any]:
        """``images``: ``(B, 3, H, W)`` normalised with the ImageNet mean/std, H and W multiples of
        ``patch_size * num_windows``."""
        feats = self.backbone[0](images)
        count = self.num_queries * (self.group_detr if self.training else 1)
        t = self.transformer(feats, self.refpoint_embed.weight[:count], self.query_feat.weight[:count])
        hidden = t["hidden"]
        logits = self.class_embed(hidden)
        boxes = self._boxes(hidden, t["references"])
        out: dict[str, Any] = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.training:
            out["aux_outputs"] = [
                {"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(logits[:-1], boxes[:-1], strict=True)
            ]
            if self.transformer.two_stage:
                enc_boxes = t["enc_boxes"] if self.bbox_reparam else t["enc_boxes"].sigmoid()
                out["enc_outputs"] = {"pred_logits": t["enc_logits"], "pred_boxes": enc_boxes}
        return out
