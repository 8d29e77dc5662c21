"""Multi-scale projector (LW-DETR): fuses the ViT stage maps into the decoder's feature levels.

For each requested pyramid level (P3 = 2x up, P4 = same stride, P5 = 2x down) every stage map is
resampled to that stride, the maps are concatenated along channels and a C2f block (CSP with 3
bottlenecks) projects them to ``hidden_dim`` channels, followed by a channel LayerNorm.

Convolutions take contiguous NCHW input; the channel LayerNorm works on an NHWC view.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVEL_SCALES = {"P3": 2.0, "P4": 1.0, "P5": 0.5}


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an ``(N, C, H, W)`` tensor."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # The normalised size comes from the weight, not x.shape: an ONNX trace keeps it constant then.
        x = F.layer_norm(x.permute(0, 2, 3, 1), (self.weight.shape[0],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNormAct(nn.Module):
    """Bias-free convolution, LayerNorm (or BatchNorm) and activation — parameter names ``conv``/``bn``."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 3,
        stride: int = 1,
        act: str = "silu",
        layer_norm: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False)
        self.bn = ChannelLayerNorm(c_out) if layer_norm else nn.BatchNorm2d(c_out)
        self.act = nn.SiLU() if act == "silu" else nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        # Contiguous NCHW input selects the same convolution algorithm as the reference (and it is
        # faster here than the channels-last one on CPU), which keeps the outputs bit-identical.
        return self.act(self.bn(self.conv(x.contiguous())))


class Bottleneck(nn.Module):
    """Two 3x3 ConvNormAct (no residual inside C2f)."""

    def __init__(self, channels: int, layer_norm: bool) -> None:
        super().__init__()
        self.cv1 = ConvNormAct(channels, channels, 3, layer_norm=layer_norm)
        self.cv2 = ConvNormAct(channels, channels, 3, layer_norm=layer_norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.cv2(self.cv1(x))


class C2f(nn.Module):
    """CSP block: split a 1x1 projection in two, chain bottlenecks on one half, fuse all with 1x1."""

    def __init__(self, c_in: int, c_out: int, num_blocks: int = 3, layer_norm: bool = True) -> None:
        super().__init__()
        self.hidden = c_out // 2
        self.cv1 = ConvNormAct(c_in, 2 * self.hidden, 1, layer_norm=layer_norm)
        self.cv2 = ConvNormAct((2 + num_blocks) * self.hidden, c_out, 1, layer_norm=layer_norm)
        self.m = nn.ModuleList(Bottleneck(self.hidden, layer_norm) for _ in range(num_blocks))

    def forward(self, x: Tensor) -> Tensor:
        parts = list(self.cv1(x).split(self.hidden, dim=1))
        for block in self.m:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, dim=1))


def _resampler(scale: float, channels: int, layer_norm: bool) -> nn.Sequential:
    """Bring one stage map (stride = patch size) to the level's stride."""
    if scale == 2.0:
        return nn.Sequential(nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2))
    if scale == 1.0:
        return nn.Sequential()
    if scale == 0.5:
        return nn.Sequential(ConvNormAct(channels, channels, 3, stride=2, act="relu", layer_norm=layer_norm))
    raise ValueError(f"Unsupported projector scale {scale}")


class MultiScaleProjector(nn.Module):
    """Stage maps ``[(B, C_i, h, w)]`` -> one ``(B, hidden_dim, h_l, w_l)`` map per pyramid level."""

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        levels: Sequence[str],
        layer_norm: bool = True,
        num_blocks: int = 3,
    ) -> None:
        super().__init__()
        if list(levels) != sorted(levels):
            raise ValueError(f"projector_scale must be in ascending order (P3, P4, P5), got {levels}")
        scales = [LEVEL_SCALES[level] for level in levels]
        self.stages_sampling = nn.ModuleList(
            nn.ModuleList(_resampler(scale, c, layer_norm) for c in in_channels) for scale in scales
        )
        self.stages = nn.ModuleList()
        for scale in scales:
            fused = int(sum(c // max(1, scale) for c in in_channels))
            self.stages.append(
                nn.Sequential(
                    C2f(fused, out_channels, num_blocks, layer_norm), ChannelLayerNorm(out_channels)
                )
            )

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        out = []
        for samplers, stage in zip(self.stages_sampling, self.stages, strict=True):
            maps = [sampler(feat) for sampler, feat in zip(samplers, feats, strict=True)]
            out.append(stage(torch.cat(maps, dim=1) if len(maps) > 1 else maps[0]))
        return out
