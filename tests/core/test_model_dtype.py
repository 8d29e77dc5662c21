"""The network in bfloat16: finite, close to float32, and equal to the reference in bfloat16.

bfloat16 once turned decoder layer 0's cross-attention into 1e12/NaN: torch's CPU ``grid_sample``
kernel for reduced-precision dtypes misreads a strided (permuted) input, which float32 reads fine.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from rfdetr_core.models import build_model, model_config_from_args
from rfdetr_core.models.deformable_attention import MSDeformAttn

pytestmark = [pytest.mark.slow]

#: Nano at 320x384 has 480 memory tokens for 300 queries, so the two-stage top-k really ranks.
SHAPE = (320, 384)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Move every parameter off its (often zero) initial value so every path carries signal."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("batch", [1, 2])
def test_deformable_attention_reduced_precision_matches_float32(dtype, batch):
    """Per element, no ranking involved: reduced precision is rounding noise, not garbage.

    Nano's sizes (16 heads of 16 channels, 300 queries, a 20x24 map): the faulty kernel path
    only shows on inputs this large.
    """
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=256, n_levels=2, n_heads=16, n_points=2).eval()
    _perturb(attn, seed=1)
    shapes = [(20, 24), (10, 12)]
    query = torch.randn(batch, 300, 256)
    boxes = torch.cat([torch.rand(batch, 300, 2) * 0.8 + 0.1, torch.rand(batch, 300, 2) * 0.3 + 0.05], -1)
    memory = torch.randn(batch, sum(h * w for h, w in shapes), 256)
    with torch.no_grad():
        expected = attn(query, boxes, memory, shapes)
        got = attn.to(dtype)(query.to(dtype), boxes.to(dtype), memory.to(dtype), shapes)
    assert got.dtype is dtype and torch.isfinite(got).all()
    scale = expected.abs().max().item()
    assert (got.float() - expected).abs().max().item() <= 0.15 * scale  # bf16 grid rounding: ~0.1


@pytest.fixture(scope="module")
def nano_pair():
    """(reference Nano, our Nano) with the same perturbed random weights, in eval mode, float32."""
    from rfdetr import RFDETRNano as RefNano

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapper = RefNano(pretrain_weights=None, device="cpu")
    ref = wrapper.model.model
    _perturb(ref, seed=5)
    ours = build_model(model_config_from_args(wrapper.model.args))
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref.eval(), ours.eval()


def test_nano_bfloat16_is_finite_and_close_to_float32(nano_pair):
    ref, ours = nano_pair
    images = torch.randn(1, 3, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = ours(images)
        half_ours = ours.to(torch.bfloat16)(images.bfloat16())
        half_ref = ref.to(torch.bfloat16)(images.bfloat16())
    ours.float()
    ref.float()
    for key in ("pred_logits", "pred_boxes"):
        assert half_ours[key].dtype is torch.bfloat16 and torch.isfinite(half_ours[key]).all(), key
        # Same kernels, same op order as the reference: bfloat16 rounding gives the same numbers.
        assert (half_ours[key].float() - half_ref[key].float()).abs().max().item() <= 1e-2, key

    # Rounded two-stage scores re-rank the selected anchors, so queries come out in another order:
    # compare the prediction *sets* (each float32 box to its nearest bfloat16 box).
    boxes32, boxes16 = full["pred_boxes"][0], half_ours["pred_boxes"][0].float()
    gap, nearest = torch.cdist(boxes32, boxes16, p=float("inf")).min(dim=1)
    assert gap.max().item() <= 0.05
    scores32, classes32 = full["pred_logits"][0].sigmoid().max(-1)
    classes16 = half_ours["pred_logits"][0].float().argmax(-1)[nearest]
    top = scores32.topk(20).indices
    agree = (classes32[top] == classes16[top]).float().mean().item()
    assert agree >= 0.8, agree
