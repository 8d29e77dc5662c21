"""Architecture configuration of the RF-DETR network and its published variants.

Field names follow the reference implementation's ``ModelConfig`` so that the ``args`` stored in an
official checkpoint map onto this class one to one (see :mod:`rfdetr_core.models.args`). Only
architecture fields drive :func:`rfdetr_core.models.build_model`; the others (``device``, ``amp``,
``pretrain_weights`` ...) are carried so a config survives a round trip through a checkpoint.
The table of published variants (name, model class, config class, size) is
:data:`rfdetr_core.variants.VARIANTS`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

EncoderName = Literal["dinov2_windowed_small", "dinov2_windowed_base", "dinov2_registers_windowed_small"]
ProjectorLevel = Literal["P3", "P4", "P5"]


class ModelConfig(BaseModel):
    """Architecture of one RF-DETR network.

    ``num_classes`` counts the foreground ids (COCO: 90, the largest category id); the class head
    has ``num_classes + 1`` outputs, exactly as the reference builds it. ``group_detr`` query groups
    exist only while training; in eval mode only the first ``num_queries`` queries are decoded.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="forbid", validate_assignment=True)

    encoder: EncoderName = "dinov2_windowed_small"
    out_feature_indexes: list[int] = Field(default_factory=lambda: [3, 6, 9, 12])
    dec_layers: int = 3
    two_stage: bool = True
    projector_scale: list[ProjectorLevel] = Field(default_factory=lambda: ["P4"])
    hidden_dim: int = 256
    patch_size: int = 16
    num_windows: int = 2
    sa_nheads: int = 8
    ca_nheads: int = 16
    dec_n_points: int = 2
    num_queries: int = 300
    num_select: int = 300
    postprocess_trace_alpha: float = Field(default=0.2, ge=0.0)
    bbox_reparam: bool = True
    lite_refpoint_refine: bool = True
    layer_norm: bool = True
    amp: bool = True
    num_channels: int = Field(default=3, ge=1)
    num_classes: int = 90
    pretrain_weights: str | None = None
    device: str = "cpu"
    resolution: int = 512
    group_detr: int = 13
    gradient_checkpointing: bool = False
    positional_encoding_size: int = 32
    ia_bce_loss: bool = True
    segmentation_head: bool = False
    mask_downsample_ratio: int = 4
    num_decoder_registers: int = 0
    dual_projector: bool = False
    backbone_lora: bool = False
    freeze_encoder: bool = False
    license: str = "Apache-2.0"
    model_name: str | None = None
    # Fixed in the reference (its ``ModelDefaults``), exposed here because they shape the network.
    dim_feedforward: int = 2048
    vit_encoder_num_layers: int = 12
    window_block_indexes: list[int] | None = None
    drop_path: float = 0.0

    @model_validator(mode="after")
    def _sync_pe_with_resolution(self) -> ModelConfig:
        """Follow a user-chosen ``resolution`` with the positional grid, like the reference does.

        Only when the variant's default grid is derived from its default resolution
        (``pe == resolution // patch_size``); Base keeps its DINOv2-native 37 x 37 grid.
        """
        fields_set = self.model_fields_set
        if "resolution" not in fields_set or "positional_encoding_size" in fields_set:
            return self
        fields = type(self).model_fields
        default_res = fields["resolution"].default
        default_pe = fields["positional_encoding_size"].default
        default_patch = fields["patch_size"].default
        if default_pe == default_res // default_patch:
            object.__setattr__(self, "positional_encoding_size", self.resolution // self.patch_size)
        return self

    @property
    def block_size(self) -> int:
        """Input height and width must be multiples of this (one patch per window cell)."""
        return self.patch_size * self.num_windows

    def architecture_dict(self) -> dict[str, Any]:
        """The fields that change the network's state dict or outputs (for comparisons and logs)."""
        keys = (
            "encoder",
            "out_feature_indexes",
            "dec_layers",
            "two_stage",
            "projector_scale",
            "hidden_dim",
            "patch_size",
            "num_windows",
            "sa_nheads",
            "ca_nheads",
            "dec_n_points",
            "num_queries",
            "bbox_reparam",
            "lite_refpoint_refine",
            "layer_norm",
            "num_channels",
            "num_classes",
            "group_detr",
            "positional_encoding_size",
            "segmentation_head",
            "dim_feedforward",
        )
        return {key: getattr(self, key) for key in keys}


class RFDETRBaseConfig(ModelConfig):
    """RF-DETR Base: ViT-S/14 with 4x4 windows at 560 px (DINOv2's native 37 x 37 position grid)."""

    encoder: EncoderName = "dinov2_windowed_small"
    hidden_dim: int = 256
    patch_size: int = 14
    num_windows: int = 4
    dec_layers: int = 3
    sa_nheads: int = 8
    ca_nheads: int = 16
    dec_n_points: int = 2
    num_queries: int = 300
    num_select: int = 300
    projector_scale: list[ProjectorLevel] = Field(default_factory=lambda: ["P4"])
    out_feature_indexes: list[int] = Field(default_factory=lambda: [2, 5, 8, 11])
    pretrain_weights: str | None = "rf-detr-base.pth"
    resolution: int = 560
    positional_encoding_size: int = 37


class RFDETRNanoConfig(RFDETRBaseConfig):
    """RF-DETR Nano: ViT-S/16, 2x2 windows, 2 decoder layers, 384 px."""

    out_feature_indexes: list[int] = Field(default_factory=lambda: [3, 6, 9, 12])
    num_windows: int = 2
    dec_layers: int = 2
    patch_size: int = 16
    resolution: int = 384
    positional_encoding_size: int = 24
    pretrain_weights: str | None = "rf-detr-nano.pth"


class RFDETRSmallConfig(RFDETRBaseConfig):
    """RF-DETR Small: ViT-S/16, 2x2 windows, 3 decoder layers, 512 px."""

    out_feature_indexes: list[int] = Field(default_factory=lambda: [3, 6, 9, 12])
    num_windows: int = 2
    dec_layers: int = 3
    patch_size: int = 16
    resolution: int = 512
    positional_encoding_size: int = 32
    pretrain_weights: str | None = "rf-detr-small.pth"


class RFDETRMediumConfig(RFDETRBaseConfig):
    """RF-DETR Medium: ViT-S/16, 2x2 windows, 4 decoder layers, 576 px."""

    out_feature_indexes: list[int] = Field(default_factory=lambda: [3, 6, 9, 12])
    num_windows: int = 2
    dec_layers: int = 4
    patch_size: int = 16
    resolution: int = 576
    positional_encoding_size: int = 36
    pretrain_weights: str | None = "rf-detr-medium.pth"


class RFDETRLargeConfig(ModelConfig):
    """RF-DETR Large (2026 release): ViT-S/16, 2x2 windows, 4 decoder layers, 704 px."""

    encoder: EncoderName = "dinov2_windowed_small"
    hidden_dim: int = 256
    dec_layers: int = 4
    sa_nheads: int = 8
    ca_nheads: int = 16
    dec_n_points: int = 2
    num_windows: int = 2
    patch_size: int = 16
    projector_scale: list[ProjectorLevel] = Field(default_factory=lambda: ["P4"])
    out_feature_indexes: list[int] = Field(default_factory=lambda: [3, 6, 9, 12])
    num_classes: int = 90
    positional_encoding_size: int = 704 // 16
    pretrain_weights: str | None = "rf-detr-large-2026.pth"
    resolution: int = 704
    num_queries: int = 300
    num_select: int = 300
