"""Multi-scale deformable cross-attention (Deformable DETR) in pure PyTorch.

Each query predicts, per head and per feature level, ``n_points`` sampling offsets around its
reference box and one attention weight per sample. Values are read with bilinear
``grid_sample`` — one call per level, all heads and queries batched — and mixed by the weights.
No custom CUDA/C++ kernel is needed, so the module runs (and exports) everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Dtypes whose CPU ``grid_sample`` kernel reads a strided (permuted) input correctly. The bfloat16
#: and float16 CPU kernels (torch 2.15) return garbage for such an input — values of 1e12 and NaN,
#: not rounding noise — so those dtypes get a contiguous copy; float32/float64 keep the free view.
_STRIDED_GRID_SAMPLE_DTYPES = (torch.float32, torch.float64)


class MSDeformAttn(nn.Module):
    """Deformable attention over ``n_levels`` flattened feature maps.

    Parameter names (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``)
    and the layout of their outputs ``(heads, levels, points, xy)`` match the reference checkpoints.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 1, n_heads: int = 8, n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Offsets start on a ring of head directions (one radius per point), weights uniform."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([angles.cos(), angles.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_boxes: Tensor,
        memory: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
    ) -> Tensor:
        """Attend from ``query (B, Q, C)`` into ``memory (B, sum h*w, C)``.

        ``reference_boxes`` are normalised ``(cx, cy, w, h)``, shape ``(B, Q, 4)`` (shared by all
        levels) or ``(B, Q, n_levels, 4)``. A sample lands at
        ``center + offset / n_points * size / 2``, so offsets are relative to the box size.
        """
        batch, num_q, _ = query.shape
        heads, levels, points = self.n_heads, self.n_levels, self.n_points
        head_dim = self.d_model // heads
        if sum(h * w for h, w in spatial_shapes) != memory.shape[1]:
            raise ValueError("spatial_shapes do not match the flattened memory length")

        value = self.value_proj(memory)  # (B, S, C)
        offsets = self.sampling_offsets(query).view(batch, num_q, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, num_q, heads, levels * points).softmax(-1)
        if reference_boxes.dim() == 3:
            reference_boxes = reference_boxes[:, :, None]
        ref = reference_boxes[:, :, None, :, None]  # (B, Q, 1, L|1, 1, 4)
        locations = ref[..., :2] + offsets / points * ref[..., 2:] * 0.5
        grids = (2 * locations - 1).transpose(1, 2)  # (B, H, Q, L, P, 2)

        sampled = []
        start = 0
        for level, (height, width) in enumerate(spatial_shapes):
            # (B, h*w, H, d) -> (B*H, d, h, w); a free view for batch 1 in float32, a small copy otherwise.
            value_l = value[:, start : start + height * width].view(batch, height, width, heads, head_dim)
            value_l = value_l.permute(0, 3, 4, 1, 2).reshape(batch * heads, head_dim, height, width)
            if value_l.dtype not in _STRIDED_GRID_SAMPLE_DTYPES:
                value_l = value_l.contiguous()
            grid_l = grids[:, :, :, level].reshape(batch * heads, num_q, points, 2)
            sampled.append(
                F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
            )
            start += height * width
        samples = sampled[0] if levels == 1 else torch.stack(sampled, dim=-2).flatten(-2)  # (B*H, d, Q, L*P)
        weights = weights.transpose(1, 2).reshape(batch * heads, 1, num_q, levels * points)
        out = (samples * weights).sum(-1).view(batch, heads * head_dim, num_q)
        # A contiguous (B, Q, C) operand gives the GEMM the same layout (and rounding) as the reference.
        return self.output_proj(out.transpose(1, 2).contiguous())
