"""Optimiser parameter groups and the learning-rate schedule of RF-DETR fine-tuning.

Why layer-wise groups: the backbone is a pretrained DINOv2. Its early blocks hold generic features
that a small detection dataset would only damage, so each ViT block gets a learning rate that
shrinks geometrically towards the input (``lr_vit_layer_decay`` per block), on top of a separate
``lr_encoder`` and a ``lr_component_decay ** 2`` factor. The decoder trains at
``lr * lr_component_decay`` and everything else (projector, heads, queries) at ``lr``. Norms,
biases, position/patch embeddings are excluded from weight decay in the backbone.

Parameters that end up with the same ``(lr, weight_decay)`` share one group, so AdamW's
multi-tensor kernels run a handful of launches per step instead of one per parameter.

The schedule is a per-optimizer-step multiplier: linear warm-up over ``warmup_steps``, then either
a step decay (x0.1 after ``lr_drop`` epochs) or a cosine to ``min_factor``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

BACKBONE_KEY = "backbone.0.encoder"
DECODER_KEY = "transformer.decoder"
_NO_DECAY_MARKERS = ("gamma", "pos_embed", "rel_pos", "bias", "norm", "embeddings")


def vit_layer_id(name: str, num_layers: int) -> int:
    """Depth of a backbone parameter: 0 for embeddings, ``i + 1`` for block ``i``, ``num_layers + 1`` else."""
    if "embeddings" in name:
        return 0
    if ".layer." in name and ".residual." not in name:
        return int(name[name.find(".layer.") :].split(".")[2]) + 1
    return num_layers + 1


def backbone_lr_scale(name: str, layer_decay: float, num_layers: int) -> float:
    """``layer_decay ** (distance from the top)`` -- the top of the ViT trains fastest."""
    return layer_decay ** (num_layers + 1 - vit_layer_id(name, num_layers))


def backbone_weight_decay(name: str, weight_decay: float) -> float:
    """No weight decay for scale/shift-like parameters of the backbone."""
    return 0.0 if any(marker in name for marker in _NO_DECAY_MARKERS) else weight_decay


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    lr_encoder: float,
    weight_decay: float,
    lr_vit_layer_decay: float = 0.8,
    lr_component_decay: float = 0.7,
    num_vit_layers: int = 12,
) -> list[dict[str, Any]]:
    """AdamW parameter groups (trainable parameters only), merged by identical settings.

    ``num_vit_layers`` is ``out_feature_indexes[-1] + 1`` for RF-DETR (the last exported block).
    """
    settings: list[tuple[nn.Parameter, float, float]] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if BACKBONE_KEY in name:
            scale = backbone_lr_scale(name, lr_vit_layer_decay, num_vit_layers) * lr_component_decay**2
            settings.append((param, lr_encoder * scale, backbone_weight_decay(name, weight_decay)))
        elif DECODER_KEY in name:
            settings.append((param, lr * lr_component_decay, weight_decay))
        else:
            settings.append((param, lr, weight_decay))
    merged: dict[tuple[float, float], list[nn.Parameter]] = {}
    for param, group_lr, group_wd in settings:
        merged.setdefault((group_lr, group_wd), []).append(param)
    return [{"params": params, "lr": g_lr, "weight_decay": g_wd} for (g_lr, g_wd), params in merged.items()]


def lr_multiplier(
    step: int,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_steps: int = 0,
    kind: str = "step",
    lr_drop: int = 100,
    min_factor: float = 0.0,
) -> float:
    """The factor applied to every group's base learning rate at optimiser step ``step``."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if kind == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if kind != "step":
        raise ValueError(f"Unknown lr_scheduler {kind!r}: use 'step' or 'cosine'.")
    return 1.0 if step < lr_drop * steps_per_epoch else 0.1


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    epochs: int,
    warmup_epochs: float = 0.0,
    kind: str = "step",
    lr_drop: int = 100,
    min_factor: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimiser step over a run of ``total_steps`` steps."""
    steps_per_epoch = max(1, total_steps // max(1, epochs))
    warmup_steps = int(steps_per_epoch * warmup_epochs)
    kind = kind.strip().lower()
    lr_multiplier(
        0, total_steps=total_steps, steps_per_epoch=steps_per_epoch, kind=kind
    )  # validate `kind` now

    def factor(step: int) -> float:
        return lr_multiplier(
            step,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            warmup_steps=warmup_steps,
            kind=kind,
            lr_drop=lr_drop,
            min_factor=min_factor,
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
