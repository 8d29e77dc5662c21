"""DINOv2 ViT encoder with windowed self-attention, as RF-DETR uses it.

Most blocks attend only inside ``num_windows x num_windows`` windows of the patch grid (each window
carries its own copy of the CLS and register tokens); the blocks whose index is an exported stage
number (3, 6, 9 for stages 3/6/9/12) attend globally. Windowing is a pure re-batching: the tokens of one image are stored window by
window as ``(B * num_windows**2, tokens_per_window, C)``, so a global block only has to view them
as ``(B, num_windows**2 * tokens_per_window, C)`` — attention does not care about token order.

Module and parameter names follow the Hugging Face DINOv2 layout that RF-DETR checkpoints use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rfdetr_core.models.position_encoding import resize_patch_pos_embed

#: (width, heads, depth) of the DINOv2 ViT sizes RF-DETR builds on.
VIT_SIZES: dict[str, tuple[int, int, int]] = {"small": (384, 6, 12), "base": (768, 12, 12)}
#: Position grid side of the DINOv2 pre-training (518 px / 14 px patches).
DINOV2_GRID = 37


def parse_encoder_name(name: str) -> tuple[str, bool]:
    """``"dinov2_registers_windowed_small"`` -> ``("small", True)`` (size, uses register tokens)."""
    parts = name.split("_")
    if parts[0] != "dinov2" or "windowed" not in parts or parts[-1] not in VIT_SIZES:
        raise ValueError(f"Unsupported encoder {name!r}: expected dinov2[_registers]_windowed_<small|base>.")
    return parts[-1], "registers" in parts


class PatchEmbeddings(nn.Module):
    """Non-overlapping ``patch x patch`` convolution."""

    def __init__(self, in_channels: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        return self.projection(images)


class Embeddings(nn.Module):
    """Patch tokens + learned positions, split into windows, with CLS (and register) tokens."""

    def __init__(
        self, dim: int, patch_size: int, grid: int, num_windows: int, num_registers: int, in_channels: int = 3
    ) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Used only by masked-image pre-training; kept so DINOv2/RF-DETR checkpoints load strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_registers, dim)) if num_registers > 0 else None
        self.patch_embeddings = PatchEmbeddings(in_channels, dim, patch_size)
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.num_windows = num_windows
        self.num_registers = num_registers

    def prepare_export(self, shape: tuple[int, int]) -> None:
        """Freeze the position table resized for ``shape`` (H, W) into a constant.

        ONNX has no antialiased bicubic resize; the exporter calls this on its private copy of the
        network so the graph holds the already-resized table instead.
        """
        p = self.patch_embeddings.projection.stride[0]
        grid = (shape[0] // p, shape[1] // p)
        self._export_pos = (grid, resize_patch_pos_embed(self.position_embeddings, grid).detach())

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W) -> (B * nw**2, 1 + registers + (H/p/nw) * (W/p/nw), C)``."""
        patches = self.patch_embeddings(images.to(self.patch_embeddings.projection.weight.dtype))
        batch, dim, grid_h, grid_w = patches.shape
        frozen = getattr(self, "_export_pos", None)
        if frozen is not None and frozen[0] == (grid_h, grid_w):
            pos = frozen[1]
        else:
            pos = resize_patch_pos_embed(self.position_embeddings, (grid_h, grid_w))
        nw = self.num_windows
        win_h, win_w = grid_h // nw, grid_w // nw
        # (B, C, gh, gw) -> (B, nw_y, nw_x, win_h, win_w, C): one copy writes the windowed layout.
        tokens = patches.permute(0, 2, 3, 1) + pos[:, 1:].view(1, grid_h, grid_w, dim)
        tokens = tokens.view(batch, nw, win_h, nw, win_w, dim).transpose(2, 3)
        tokens = tokens.reshape(batch * nw * nw, win_h * win_w, dim)
        cls = (self.cls_token + pos[:, :1]).expand(batch * nw * nw, 1, dim)
        parts = [cls]
        if self.register_tokens is not None:
            parts.append(self.register_tokens.expand(batch * nw * nw, -1, -1))
        parts.append(tokens)
        return torch.cat(parts, dim=1)


def _frozen(params: Sequence[Tensor]) -> bool:
    """True when no gradient will flow, so derived (fused/folded) weights may be cached."""
    return not torch.is_grad_enabled() or not any(p.requires_grad for p in params)


class _DerivedWeights:
    """Caches tensors computed from parameters until one of them changes (in place or replaced)."""

    def __init__(self) -> None:
        self._stamp: tuple[int, ...] | None = None
        self._value: tuple[Tensor, ...] = ()

    def get(self, params: Sequence[Tensor], build: Callable[[], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
        if not _frozen(params) or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return build()  # graphs record the concatenation itself (no storage pointers there)
        stamp = tuple(x for p in params for x in (p.data_ptr(), p._version))
        if stamp != self._stamp:
            with torch.no_grad():
                self._value = build()
            self._stamp = stamp
        return self._value


class SelfAttention(nn.Module):
    """Multi-head attention projections (``query``/``key``/``value`` kept separate for the key names).

    They run as one ``(3C, C)`` GEMM; the fused weight is rebuilt only when a parameter changes.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self._qkv = _DerivedWeights()

    def forward(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        parts = (self.query, self.key, self.value)
        weight, bias = self._qkv.get(
            [p for m in parts for p in (m.weight, m.bias)],
            lambda: (torch.cat([m.weight for m in parts]), torch.cat([m.bias for m in parts])),
        )
        qkv = F.linear(x, weight, bias).view(batch, length, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(batch, length, dim)


class SelfOutput(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(x)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attention = SelfAttention(dim, num_heads)
        self.output = SelfOutput(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.attention(x))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.lambda1 = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.lambda1


class FeedForward(nn.Module):
    def __init__(self, dim: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * ratio)
        self.fc2 = nn.Linear(dim * ratio, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        # Exact (erf) GELU, as DINOv2 was trained; in place when no gradient is recorded.
        return self.fc2(F.gelu(h) if torch.is_grad_enabled() else torch.ops.aten.gelu_(h))


class DropPath(nn.Module):
    """Stochastic depth on a residual branch; ``drop_prob`` is set by the training schedule."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Block(nn.Module):
    """Pre-norm ViT block; ``global_attention`` merges the windows of each image for this block.

    Without autograd the LayerScale products and residual sums are done in place on the branch
    output (same operations and rounding as out of place, minus two fresh token-sized buffers).
    """

    def __init__(self, dim: int, num_heads: int, num_windows: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = Attention(dim, num_heads)
        self.layer_scale1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FeedForward(dim)
        self.layer_scale2 = LayerScale(dim)
        self.drop_path = DropPath(drop_path)
        self.windows_per_image = num_windows * num_windows

    def _attend(self, h: Tensor, global_attention: bool) -> Tensor:
        if global_attention and self.windows_per_image > 1:
            bw, length, dim = h.shape
            h = self.attention.attention(h.view(bw // self.windows_per_image, -1, dim)).view(bw, length, dim)
        else:
            h = self.attention.attention(h)
        return self.attention.output(h)

    def forward(self, x: Tensor, global_attention: bool) -> Tensor:
        h = self._attend(self.norm1(x), global_attention)
        if not torch.is_grad_enabled():
            x = h.mul_(self.layer_scale1.lambda1).add_(x)
            return self.mlp(self.norm2(x)).mul_(self.layer_scale2.lambda1).add_(x)
        x = x + self.drop_path(self.layer_scale1(h))
        return x + self.drop_path(self.layer_scale2(self.mlp(self.norm2(x))))


class BlockStack(nn.Module):
    def __init__(self, blocks: Sequence[Block]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(blocks)


class WindowedViT(nn.Module):
    """The DINOv2 trunk: embeddings, blocks and the final LayerNorm applied to each exported stage."""

    def __init__(
        self,
        size: str,
        patch_size: int,
        grid: int,
        num_windows: int,
        num_registers: int,
        in_channels: int = 3,
        depth: int | None = None,
    ) -> None:
        super().__init__()
        dim, heads, default_depth = VIT_SIZES[size]
        self.embeddings = Embeddings(dim, patch_size, grid, num_windows, num_registers, in_channels)
        self.encoder = BlockStack([Block(dim, heads, num_windows) for _ in range(depth or default_depth)])
        self.layernorm = nn.LayerNorm(dim, eps=1e-6)


class DinoV2Encoder(nn.Module):
    """Runs the ViT and returns the normalised patch maps of the requested stages as ``(B, C, h, w)``.

    Stage ``i`` is the token state after block ``i - 1`` (stage 0 = embeddings). Blocks whose index
    is a stage number attend globally, all others inside windows (the reference's rule, which every
    released checkpoint was trained with).
    """

    def __init__(
        self,
        encoder: str,
        out_feature_indexes: Sequence[int],
        patch_size: int,
        num_windows: int,
        positional_encoding_size: int,
        in_channels: int = 3,
        depth: int | None = None,
        window_block_indexes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        size, registers = parse_encoder_name(encoder)
        self.encoder = WindowedViT(
            size, patch_size, positional_encoding_size, num_windows, 4 if registers else 0, in_channels, depth
        )
        self.out_feature_indexes = list(out_feature_indexes)
        if window_block_indexes is None:
            window_block_indexes = sorted(
                set(range(self.out_feature_indexes[-1] + 1)) - set(out_feature_indexes)
            )
        self.window_block_indexes = set(window_block_indexes)
        self.patch_size = patch_size
        self.num_windows = num_windows
        self.num_registers = 4 if registers else 0
        self.out_channels = [VIT_SIZES[size][0]] * len(self.out_feature_indexes)

    def forward(self, images: Tensor) -> list[Tensor]:
        block = self.patch_size * self.num_windows
        height, width = images.shape[-2:]
        if height % block or width % block:
            raise ValueError(
                f"Input size {height}x{width} must be divisible by patch_size * num_windows = {block}."
            )
        vit = self.encoder
        x = vit.embeddings(images)
        wanted = set(self.out_feature_indexes)
        stages: dict[int, Tensor] = {}
        if 0 in wanted:
            stages[0] = x
        last = max(wanted)
        for index, layer in enumerate(vit.encoder.layer[:last]):
            x = layer(x, global_attention=index not in self.window_block_indexes)
            if index + 1 in wanted:
                stages[index + 1] = x
        grid = (height // self.patch_size, width // self.patch_size)
        return [
            self._to_map(vit.layernorm(stages[i]), images.shape[0], grid) for i in self.out_feature_indexes
        ]

    def _to_map(self, tokens: Tensor, batch: int, grid: tuple[int, int]) -> Tensor:
        """Drop CLS/register tokens and undo the windowing: ``(B*nw*nw, T, C) -> (B, C, gh, gw)``."""
        nw = self.num_windows
        grid_h, grid_w = grid
        dim = tokens.shape[-1]
        patches = tokens[:, 1 + self.num_registers :]
        patches = patches.reshape(batch, nw, nw, grid_h // nw, grid_w // nw, dim).transpose(2, 3)
        # An NCHW view of channels-last storage; the projector concatenates the stages first and
        # makes one contiguous copy for its first convolution.
        return patches.reshape(batch, grid_h, grid_w, dim).permute(0, 3, 1, 2)
