"""Our RF-DETR network against the reference ``rfdetr`` package (test oracle) for every variant.

Checkpoints travel in the official format (``{"model": state_dict, "args": namespace}``) through a
real file in both directions, and both networks see the same normalised input.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pytest
import torch

from rfdetr_core.config import RFDETRNanoConfig
from rfdetr_core.models import build_model, model_config_from_args, model_config_from_checkpoint

pytestmark = [pytest.mark.oracle, pytest.mark.slow]

#: Input size per variant: small, divisible by patch_size * num_windows; Nano and Small have more
#: memory tokens than queries so the full two-stage top-k runs, the others exercise the short path.
VARIANTS = {
    "RFDETRNano": (320, 384),
    "RFDETRSmall": (256, 320),
    "RFDETRMedium": (128, 192),
    "RFDETRBase": (112, 168),
    "RFDETRLarge": (128, 128),
}
TOLERANCE = 1e-4


def _build_reference(name: str) -> tuple[torch.nn.Module, argparse.Namespace]:
    """The reference detector (random init, offline) and the args it would store in a checkpoint."""
    import rfdetr
    from rfdetr._namespace import _namespace_from_configs
    from rfdetr.config import RFDETRBaseConfig, TrainConfig
    from rfdetr.models.lwdetr import build_model_from_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "RFDETRBase":
            # With pretrain_weights=None the reference fetches DINOv2 weights for Base (its grid is
            # DINOv2's own); a never-read checkpoint path makes it build the same network offline.
            config = RFDETRBaseConfig(pretrain_weights="/nonexistent/rf-detr-base.pth", device="cpu")
            args = _namespace_from_configs(config, TrainConfig(dataset_dir=".", output_dir="."))
            return build_model_from_config(config), args
        wrapper = getattr(rfdetr, name)(pretrain_weights=None, device="cpu")
        return wrapper.model.model, wrapper.model.args


@pytest.fixture(scope="module", autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def references() -> dict[str, tuple[torch.nn.Module, argparse.Namespace]]:
    """Reference models, built once per variant on first use."""
    return {}


def _perturb(model: torch.nn.Module, seed: int = 5) -> None:
    """Move every parameter off its initial value.

    A fresh model has zero box-delta layers, zero learned anchors, unit layer scales and
    zero offset weights, which would let a wrong box path or a dropped LayerScale pass unnoticed.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)


def _reference(references: dict, name: str) -> tuple[torch.nn.Module, argparse.Namespace]:
    if name not in references:
        torch.manual_seed(0)
        model, args = _build_reference(name)
        _perturb(model)
        references[name] = (model, args)
    return references[name]


def _input(name: str, batch: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, *VARIANTS[name], generator=generator)


def _max_diff(a: dict, b: dict) -> tuple[float, float]:
    return (
        (a["pred_logits"] - b["pred_logits"]).abs().max().item(),
        (a["pred_boxes"] - b["pred_boxes"]).abs().max().item(),
    )


def _assert_close(expected: dict, got: dict) -> None:
    logits_diff, boxes_diff = _max_diff(expected, got)
    assert logits_diff <= TOLERANCE and boxes_diff <= TOLERANCE, (logits_diff, boxes_diff)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_state_dict_keys_and_shapes_equal_reference(references, name):
    ref, args = _reference(references, name)
    ours = build_model(model_config_from_args(args))
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert set(our_sd) == set(ref_sd)
    assert {k: tuple(v.shape) for k, v in our_sd.items()} == {k: tuple(v.shape) for k, v in ref_sd.items()}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_official_checkpoint_loads_strictly_and_matches_outputs(references, name, tmp_path: Path):
    ref, args = _reference(references, name)
    path = tmp_path / "official.pth"
    torch.save({"model": ref.state_dict(), "args": args}, path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)

    ours = build_model(model_config_from_checkpoint(checkpoint))
    result = ours.load_state_dict(checkpoint["model"], strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []

    images = _input(name)
    with torch.no_grad():
        expected = ref.eval()(images)
        got = ours.eval()(images)
    assert got["pred_logits"].shape == expected["pred_logits"].shape
    assert got["pred_boxes"].shape == expected["pred_boxes"].shape
    logits_diff, boxes_diff = _max_diff(expected, got)
    assert logits_diff <= TOLERANCE and boxes_diff <= TOLERANCE, (name, logits_diff, boxes_diff)


@pytest.mark.parametrize("name", ["RFDETRNano", "RFDETRBase"])
def test_our_checkpoint_loads_in_reference(references, name, tmp_path: Path):
    ref, args = _reference(references, name)
    torch.manual_seed(123)  # our own random init, different from the reference's weights
    ours = build_model(model_config_from_args(args)).eval()
    _perturb(ours, seed=11)
    path = tmp_path / "ours.pth"
    torch.save({"model": ours.state_dict(), "args": vars(args)}, path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)

    reference_copy, _ = _build_reference(name)
    reference_copy.load_state_dict(checkpoint["model"], strict=True)
    images = _input(name)
    with torch.no_grad():
        _assert_close(reference_copy.eval()(images), ours(images))


def test_training_outputs_match_reference_for_all_query_groups(references):
    """Training mode decodes every group and adds per-layer and two-stage outputs, like the reference."""
    ref, args = _reference(references, "RFDETRSmall")
    ours = build_model(model_config_from_args(args))
    ours.load_state_dict(ref.state_dict())
    images = _input("RFDETRSmall", batch=2)
    torch.manual_seed(0)
    expected = ref.train()(images)
    got = ours.train()(images)
    ref.eval()

    queries = args.num_queries * args.group_detr
    assert got["pred_logits"].shape == (2, queries, args.num_classes + 1)
    _assert_close(expected, got)
    assert len(got["aux_outputs"]) == len(expected["aux_outputs"]) == args.dec_layers - 1
    for exp_layer, got_layer in zip(expected["aux_outputs"], got["aux_outputs"], strict=True):
        _assert_close(exp_layer, got_layer)
    assert got["enc_outputs"]["pred_logits"].shape == expected["enc_outputs"]["pred_logits"].shape
    _assert_close(expected["enc_outputs"], got["enc_outputs"])

    loss = (
        got["pred_logits"].sigmoid().mean()
        + got["pred_boxes"].mean()
        + got["enc_outputs"]["pred_boxes"].mean()
    )
    loss.backward()
    assert ours.query_feat.weight.grad is not None and ours.query_feat.weight.grad.abs().sum() > 0
    assert ours.backbone[0].encoder.encoder.embeddings.patch_embeddings.projection.weight.grad is not None


def test_eval_uses_only_the_first_query_group():
    torch.manual_seed(0)
    config = RFDETRNanoConfig(num_classes=3, group_detr=3, num_queries=20, dec_layers=1)
    model = build_model(config).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(images)
        model.query_feat.weight[20:].normal_()  # other groups must not influence eval outputs
        model.refpoint_embed.weight[20:].normal_()
        again = model(images)
    assert out["pred_logits"].shape == (1, 20, 4)
    assert set(out) == {"pred_logits", "pred_boxes"}
    assert torch.equal(out["pred_logits"], again["pred_logits"])


def test_args_helper_reads_old_spellings_and_trusts_tensors_over_stale_args(references):
    ref, args = _reference(references, "RFDETRNano")
    state = ref.state_dict()
    old_args = {
        k: v
        for k, v in vars(args).items()
        if k not in ("patch_size", "num_windows", "positional_encoding_size")
    }
    old_args.update(dinov2_patch_size=16, dinov2_num_windows=2, num_classes=5)  # stale: head has 91 rows
    config = model_config_from_args(argparse.Namespace(**old_args), state)
    assert type(config).__name__ == "RFDETRNanoConfig"
    assert (config.patch_size, config.num_windows, config.positional_encoding_size) == (16, 2, 24)
    assert config.num_classes == 90
    assert build_model(config).load_state_dict(state, strict=True).missing_keys == []


def test_args_helper_without_args_infers_the_variant_from_tensors(references):
    ref, _ = _reference(references, "RFDETRSmall")
    config = model_config_from_checkpoint({"model": ref.state_dict()})
    assert type(config).__name__ == "RFDETRSmallConfig"
    assert (config.resolution, config.dec_layers, config.num_classes) == (512, 3, 90)


def test_input_not_divisible_by_window_grid_is_rejected():
    model = build_model(RFDETRNanoConfig(num_classes=2, group_detr=1, num_queries=10, dec_layers=1)).eval()
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(1, 3, 100, 96))


def _tiny_nano() -> torch.nn.Module:
    return build_model(RFDETRNanoConfig(num_classes=3, group_detr=2, num_queries=16, dec_layers=1)).eval()


def test_inference_fast_path_equals_autograd_path_and_follows_new_weights():
    """Without autograd the ViT uses cached fused q/k/v weights and in-place residuals; both must
    give the autograd path's numbers, also after new weights are loaded into the same module."""
    torch.manual_seed(0)
    model, other = _tiny_nano(), _tiny_nano()
    _perturb(other, seed=3)
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        first = model(images)
    with_grad = model(images)
    assert torch.equal(first["pred_logits"], with_grad["pred_logits"])
    model.load_state_dict(other.state_dict())
    with torch.inference_mode():
        reloaded, expected = model(images), other(images)
    assert torch.equal(reloaded["pred_logits"], expected["pred_logits"])
    assert torch.equal(reloaded["pred_boxes"], expected["pred_boxes"])
