"""LW-DETR style transformer: two-stage query selection followed by a deformable decoder.

There is no transformer encoder: the projector output *is* the memory. Two-stage selection scores
every memory position with a light head and keeps the top ``num_queries`` as anchor boxes; the
learned ``refpoint_embed`` then refines those anchors (``bbox_reparam``: delta on centre scaled by
size, log-scale on size) and the learned ``query_feat`` becomes the decoder content. During
training every group of the group-DETR scheme gets its own selection head and its own queries,
and self-attention is restricted to each group.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rfdetr_core.models.deformable_attention import MSDeformAttn
from rfdetr_core.models.mlp import MLP
from rfdetr_core.models.position_encoding import box_sine_embedding


def apply_box_delta(boxes: Tensor, delta: Tensor) -> Tensor:
    """Box re-parameterisation: ``cxcy + d_xy * wh`` and ``wh * exp(d_wh)`` (boxes are cxcywh)."""
    cxcy = delta[..., :2] * boxes[..., 2:] + boxes[..., :2]
    wh = delta[..., 2:].exp() * boxes[..., 2:]
    return torch.cat([cxcy, wh], dim=-1)


def encoder_proposals(
    memory: Tensor, spatial_shapes: Sequence[tuple[int, int]], unsigmoid: bool
) -> tuple[Tensor, Tensor]:
    """One anchor per memory position: its cell centre, size ``0.05 * 2**level``.

    Anchors touching the border (any coordinate outside ``(0.01, 0.99)``) are disabled: their
    memory row is zeroed and the anchor set to 0 (``inf`` in logit space).
    """
    anchors = []
    for level, (height, width) in enumerate(spatial_shapes):
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=torch.float32, device=memory.device),
            torch.arange(width, dtype=torch.float32, device=memory.device),
            indexing="ij",
        )
        centre = (torch.stack([xs, ys], -1) + 0.5) / torch.tensor(
            [width, height], dtype=torch.float32, device=memory.device
        )
        size = torch.full_like(centre, 0.05 * (2.0**level))
        anchors.append(torch.cat([centre, size], -1).reshape(-1, 4))
    proposals = (anchors[0] if len(anchors) == 1 else torch.cat(anchors, 0)).unsqueeze(0)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
    if unsigmoid:
        proposals = torch.log(proposals / (1 - proposals)).masked_fill(~valid, float("inf"))
    else:
        proposals = proposals.masked_fill(~valid, 0.0)
    memory = memory.masked_fill(~valid, 0.0)
    return memory, proposals.to(memory.dtype).expand(memory.shape[0], -1, -1)


def _grouped_linear(x: Tensor, linears: Sequence[nn.Linear]) -> Tensor:
    """``(G, B, N, in) -> (G, B, N, out)``, group ``g`` through ``linears[g]``, as one batched GEMM."""
    weight = torch.stack([m.weight for m in linears])
    bias = torch.stack([m.bias for m in linears])
    groups, batch, length, channels = x.shape
    out = torch.baddbmm(
        bias.unsqueeze(1), x.reshape(groups, batch * length, channels), weight.transpose(1, 2)
    )
    return out.view(groups, batch, length, -1)


def _grouped_layer_norm(x: Tensor, norms: Sequence[nn.LayerNorm]) -> Tensor:
    """Per-group LayerNorm: the normalisation is shared, only the affine differs per group."""
    shape = (len(norms), 1, 1, x.shape[-1])
    weight = torch.stack([m.weight for m in norms]).view(shape)
    bias = torch.stack([m.bias for m in norms]).view(shape)
    return F.layer_norm(x, (x.shape[-1],), eps=norms[0].eps) * weight + bias


class QueryAttention(nn.Module):
    """Decoder self-attention with ``nn.MultiheadAttention``'s parameter layout (packed in-proj).

    Queries and keys share the same input (content + position), values take the content only,
    so q and k come out of one GEMM.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, qk_in: Tensor, v_in: Tensor) -> Tensor:
        batch, length, dim = v_in.shape
        head_dim = dim // self.num_heads
        qk = F.linear(qk_in, self.in_proj_weight[: 2 * dim], self.in_proj_bias[: 2 * dim])
        v = F.linear(v_in, self.in_proj_weight[2 * dim :], self.in_proj_bias[2 * dim :])
        q, k = qk.view(batch, length, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        v = v.view(batch, length, self.num_heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class DecoderLayer(nn.Module):
    """Post-norm layer: group-wise self-attention, deformable cross-attention, ReLU FFN."""

    def __init__(
        self,
        dim: int,
        sa_heads: int,
        ca_heads: int,
        ffn_dim: int,
        n_levels: int,
        n_points: int,
        group_detr: int,
    ) -> None:
        super().__init__()
        self.self_attn = QueryAttention(dim, sa_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MSDeformAttn(dim, n_levels, ca_heads, n_points)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.group_detr = group_detr

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor,
        ref_boxes: Tensor,
        memory: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
    ) -> Tensor:
        qk = tgt + query_pos
        groups = self.group_detr if self.training else 1
        if groups > 1:
            # Queries of different groups must not see each other: fold groups into the batch.
            batch = tgt.shape[0]
            sa = self.self_attn(torch.cat(qk.chunk(groups, dim=1), 0), torch.cat(tgt.chunk(groups, dim=1), 0))
            sa = torch.cat(sa.split(batch, dim=0), dim=1)
        else:
            sa = self.self_attn(qk, tgt)
        tgt = self.norm1(tgt + sa)
        tgt = self.norm2(tgt + self.cross_attn(tgt + query_pos, ref_boxes, memory, spatial_shapes))
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class Decoder(nn.Module):
    """Decoder stack with one shared set of reference boxes (``lite_refpoint_refine``).

    Returns the normalised hidden state of every layer (training) or of the last one only (eval,
    which is all the detector reads then).
    """

    def __init__(self, layer: DecoderLayer, num_layers: int, dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.ref_point_head = MLP(2 * dim, dim, dim, 2)
        self.dim = dim

    def forward(
        self, tgt: Tensor, ref_boxes: Tensor, memory: Tensor, spatial_shapes: Sequence[tuple[int, int]]
    ) -> Tensor:
        query_pos = self.ref_point_head(box_sine_embedding(ref_boxes, self.dim // 2))
        hidden = []
        for index, layer in enumerate(self.layers):
            tgt = layer(tgt, query_pos, ref_boxes, memory, spatial_shapes)
            if self.training or index == len(self.layers) - 1:
                hidden.append(self.norm(tgt))
        return torch.stack(hidden)


class Transformer(nn.Module):
    """Two-stage selection + decoder. ``forward`` returns a dict of decoder and encoder-stage outputs."""

    def __init__(
        self,
        dim: int,
        sa_heads: int,
        ca_heads: int,
        num_queries: int,
        num_layers: int,
        ffn_dim: int,
        group_detr: int,
        n_levels: int,
        n_points: int,
        bbox_reparam: bool = True,
        two_stage: bool = True,
    ) -> None:
        super().__init__()
        layer = DecoderLayer(dim, sa_heads, ca_heads, ffn_dim, n_levels, n_points, group_detr)
        self.decoder = Decoder(layer, num_layers, dim)
        self.two_stage = two_stage
        if two_stage:
            self.enc_output = nn.ModuleList(nn.Linear(dim, dim) for _ in range(group_detr))
            self.enc_output_norm = nn.ModuleList(nn.LayerNorm(dim) for _ in range(group_detr))
            # Filled by the detector with copies of its own heads (same init as the reference).
            self.enc_out_class_embed = nn.ModuleList()
            self.enc_out_bbox_embed = nn.ModuleList()
        self._reset_parameters()
        self.dim, self.num_queries, self.group_detr = dim, num_queries, group_detr
        self.bbox_reparam = bbox_reparam

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()

    def select_queries(self, memory: Tensor, spatial_shapes: Sequence[tuple[int, int]]) -> dict[str, Tensor]:
        """Two-stage proposals: per group, score all positions and keep the top ``num_queries``.

        Returns ``boxes`` (anchors for the decoder, detached), ``enc_boxes`` (same, with grad),
        ``enc_hidden`` (selected, normalised memory rows) and, in training, ``enc_logits`` (their
        class scores); groups are concatenated along the query axis (group 0 first).
        """
        memory, proposals = encoder_proposals(memory, spatial_shapes, unsigmoid=not self.bbox_reparam)
        topk = min(self.num_queries, memory.shape[1])
        if self.training:
            return self._select_all_groups(memory, proposals, topk)
        projected = self.enc_output[0](memory)
        scores = self.enc_out_class_embed[0](self.enc_output_norm[0](projected))
        index = torch.topk(scores.max(-1)[0], topk, dim=1)[1].unsqueeze(-1)
        # The norm and the box head act per token, so they run on the selected rows only.
        selected = self.enc_output_norm[0](torch.gather(projected, 1, index.expand(-1, -1, self.dim)))
        anchors = torch.gather(proposals, 1, index.expand(-1, -1, 4))
        boxes = self._anchor_boxes(anchors, self.enc_out_bbox_embed[0](selected))
        return {"enc_boxes": boxes, "boxes": boxes.detach(), "enc_hidden": selected}

    def _select_all_groups(self, memory: Tensor, proposals: Tensor, topk: int) -> dict[str, Tensor]:
        """Training: every group's selection at once, with one batched GEMM per layer of the heads.

        Same arithmetic as running the groups one by one (and as the reference's training path),
        so near-tied scores rank identically.
        """
        groups = self.group_detr
        batch = memory.shape[0]
        x = memory.unsqueeze(0).expand(groups, -1, -1, -1)
        projected = _grouped_layer_norm(_grouped_linear(x, self.enc_output), self.enc_output_norm)
        scores = _grouped_linear(projected, self.enc_out_class_embed)  # (G, B, S, K)
        index = torch.topk(scores.max(-1)[0], topk, dim=-1)[1].unsqueeze(-1)  # (G, B, k, 1)
        logits = torch.gather(scores, 2, index.expand(-1, -1, -1, scores.shape[-1]))
        selected = torch.gather(projected, 2, index.expand(-1, -1, -1, self.dim))
        anchors = torch.gather(
            proposals.unsqueeze(0).expand(groups, -1, -1, -1), 2, index.expand(-1, -1, -1, 4)
        )
        delta = selected
        mlps = list(self.enc_out_bbox_embed)
        for depth in range(len(mlps[0].layers)):
            delta = _grouped_linear(delta, [mlp.layers[depth] for mlp in mlps])
            if depth < len(mlps[0].layers) - 1:
                delta = F.relu(delta)
        boxes = self._anchor_boxes(anchors, delta)

        def merge(t: Tensor) -> Tensor:  # (G, B, k, C) -> (B, G * k, C), group 0 first
            return t.permute(1, 0, 2, 3).reshape(batch, groups * topk, t.shape[-1])

        return {
            "enc_boxes": merge(boxes),
            "boxes": merge(boxes).detach(),
            "enc_hidden": merge(selected),
            "enc_logits": merge(logits),
        }

    def _anchor_boxes(self, anchors: Tensor, delta: Tensor) -> Tensor:
        return apply_box_delta(anchors, delta) if self.bbox_reparam else delta + anchors

    def forward(
        self, srcs: Sequence[Tensor], refpoint_embed: Tensor, query_feat: Tensor
    ) -> dict[str, Tensor]:
        """``srcs``: projector levels ``(B, C, h, w)``; ``refpoint_embed (N, 4)``, ``query_feat (N, C)``."""
        spatial_shapes = [(src.shape[-2], src.shape[-1]) for src in srcs]
        flat = [src.flatten(2).transpose(1, 2) for src in srcs]
        memory = flat[0] if len(flat) == 1 else torch.cat(flat, 1)
        batch = memory.shape[0]
        refs = refpoint_embed.unsqueeze(0).expand(batch, -1, -1)
        out: dict[str, Tensor] = {}
        if self.two_stage:
            selected = self.select_queries(memory, spatial_shapes)
            anchors = selected["boxes"]
            count = anchors.shape[1]
            head = refs[:, :count]
            head = apply_box_delta(anchors, head) if self.bbox_reparam else head + anchors
            refs = head if refs.shape[1] == count else torch.cat([head, refs[:, count:]], dim=1)
            out.update(selected)
        tgt = query_feat.unsqueeze(0).expand(batch, -1, -1)
        ref_boxes = refs if self.bbox_reparam else refs.sigmoid()
        out["hidden"] = self.decoder(tgt, ref_boxes, memory, spatial_shapes)
        out["references"] = refs
        return out
