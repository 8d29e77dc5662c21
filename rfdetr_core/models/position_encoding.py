"""Positional encodings: the ViT's learned grid (resized to the input) and sine codes of query boxes.

The decoder in RF-DETR never adds a positional code to the image memory (deformable attention
samples by location instead), so the only positional signals are these two.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_patch_pos_embed(pos_embed: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """Resize a learned ``(1, 1 + n*n, C)`` ViT position table to a ``grid_h x grid_w`` patch grid.

    Returns ``(cls_pos (1, 1, C), patch_pos (1, grid_h, grid_w, C))``-concatenated as
    ``(1, 1 + grid_h * grid_w, C)``. The table is used as-is when the token count already matches
    on a square input; otherwise it is resampled bicubically with antialiasing in float32, which
    is what DINOv2 checkpoints were fine-tuned with (and what the reference does, bit for bit).
    """
    num_positions = pos_embed.shape[1] - 1
    grid_h, grid_w = grid_hw
    if num_positions == grid_h * grid_w and grid_h == grid_w:
        return pos_embed
    side = int(math.sqrt(num_positions))
    dim = pos_embed.shape[-1]
    table = pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    resized = F.interpolate(
        table.float(),
        size=(grid_h, grid_w),
        mode="bicubic",
        align_corners=False,
        antialias=table.device.type != "mps",
    ).to(pos_embed.dtype)
    resized = resized.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
    return torch.cat((pos_embed[:, :1], resized), dim=1)


def box_sine_embedding(boxes: Tensor, num_feats: int = 128, temperature: float = 10000.0) -> Tensor:
    """Sine/cosine code of normalised ``(cx, cy, w, h)`` boxes: ``(..., 4) -> (..., 4 * num_feats)``.

    Coordinates are scaled by 2*pi and divided by ``temperature ** (2 * (i // 2) / num_feats)``;
    even channels take the sine, odd ones the cosine, and the four codes are ordered
    ``(y, x, w, h)`` as in Conditional/DAB-DETR. Each frequency appears twice in that table, so
    only the distinct half is evaluated.
    """
    index = torch.arange(num_feats, dtype=boxes.dtype, device=boxes.device)
    freqs = temperature ** (2 * (index // 2) / num_feats)
    inv = freqs[0::2]
    scaled = (boxes * (2 * math.pi)).unsqueeze(-1) / inv  # (..., 4, num_feats / 2)
    code = torch.stack((scaled.sin(), scaled.cos()), dim=-1).flatten(-2)  # (..., 4, num_feats)
    code = code[..., [1, 0, 2, 3], :]  # (y, x, w, h)
    return code.flatten(-2)
