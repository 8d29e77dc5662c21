"""Checkpoints: official layout in and out, safe loading, class heads, variant inference."""

from __future__ import annotations

import argparse
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import rfdetr_core
from rfdetr_core import RFDETR, RFDETRNano, RFDETRSmall
from rfdetr_core.checkpoint import CheckpointError, is_class_head, load_checkpoint

pytestmark = pytest.mark.oracle


class NotAllowListed:
    """A class outside the safe-load allow-list (stands in for arbitrary pickled objects)."""

    def __init__(self) -> None:
        self.value = 1


def _reference(variant: str, **kwargs):
    import rfdetr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(rfdetr, f"RFDETR{variant}")(pretrain_weights=None, **kwargs)


def _save_reference(ref, path: Path, **overrides) -> Path:
    args = argparse.Namespace(**vars(ref.model.args))
    for key, value in overrides.pop("args", {}).items():
        setattr(args, key, value)
    torch.save({"model": ref.model.model.state_dict(), "args": args, **overrides}, path)
    return path


@pytest.fixture(scope="module")
def nano_ref():
    torch.manual_seed(0)
    return _reference("Nano")


@pytest.fixture(scope="module")
def nano_file(nano_ref, tmp_path_factory) -> Path:
    return _save_reference(nano_ref, tmp_path_factory.mktemp("ck") / "weights.pth")


@pytest.fixture(scope="module")
def small_ref():
    torch.manual_seed(3)
    return _reference("Small", num_classes=2)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:360, 0:500]
    img = np.stack([xx % 256, yy % 256, (xx * yy) % 256], -1).astype(np.uint8)
    img[60:200, 80:300] = rng.integers(0, 256, 3, dtype=np.uint8)
    return img


def _assert_same_state(a: dict, b: dict, skip=lambda key: False) -> None:
    keys = [k for k in a if not skip(k)]
    assert keys and set(keys) == {k for k in b if not skip(k)}
    for key in keys:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def _reference_network(variant: str) -> tuple[torch.nn.Module, argparse.Namespace]:
    """Reference network + args, offline. Base's grid is DINOv2's own, so with no checkpoint the
    reference would fetch DINOv2 weights; a never-read checkpoint path makes it build offline."""
    if variant != "Base":
        ref = _reference(variant)
        return ref.model.model, argparse.Namespace(**vars(ref.model.args))
    from rfdetr.config import RFDETRBaseConfig
    from rfdetr.models.lwdetr import build_model_from_config

    config = RFDETRBaseConfig(pretrain_weights="/nonexistent/rf-detr-base.pth", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model_from_config(config), argparse.Namespace(**config.model_dump(), class_names=None)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["Nano", "Small", "Medium", "Base", "Large"])
def test_official_layout_loads_exactly_for_every_variant(variant: str, tmp_path: Path) -> None:
    network, args = _reference_network(variant)
    path = tmp_path / f"{variant.lower()}.pth"
    torch.save({"model": network.state_dict(), "args": args}, path)
    ours = getattr(rfdetr_core, f"RFDETR{variant}")(pretrain_weights=str(path))  # strict: raises on any gap
    result = ours.model.model.load_state_dict(network.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    _assert_same_state(ours.model.model.state_dict(), network.state_dict())


def test_class_count_mismatch_reinitialises_only_class_heads(nano_ref, nano_file: Path) -> None:
    with pytest.warns(
        UserWarning, match=r"trained for 90 classes but the model has 5: the class heads .* re-initialised"
    ):
        ours = RFDETRNano(pretrain_weights=str(nano_file), num_classes=5)
    state, saved = ours.model.model.state_dict(), nano_ref.model.model.state_dict()
    assert state["class_embed.bias"].shape == (6,)
    assert state["transformer.enc_out_class_embed.0.weight"].shape[0] == 6
    _assert_same_state(state, saved, skip=is_class_head)  # everything else came from the file
    assert ours.model_config.num_classes == 5 and "num_classes" in ours.model_config.model_fields_set


def test_head_size_follows_checkpoint_when_not_pinned(tmp_path: Path) -> None:
    ref = _reference("Nano", num_classes=7)
    path = _save_reference(ref, tmp_path / "seven.pth", args={"class_names": list("abcdefg")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no re-initialisation warning: the checkpoint wins
        ours = RFDETRNano(pretrain_weights=str(path))
    assert ours.model_config.num_classes == 7 and ours.class_names == list("abcdefg")
    assert "num_classes" not in ours.model_config.model_fields_set


@pytest.mark.parametrize(
    ("filename", "extra", "expected"),
    [
        ("anything.pth", {"model_name": "RFDETRSmall"}, RFDETRSmall),  # 1. model_name
        ("anything.pth", {"args": {"pretrain_weights": "/cache/rf-detr-small.pth"}}, RFDETRSmall),  # 2. args
        ("rf-detr-small.pth", {"args": {"pretrain_weights": "none"}}, RFDETRSmall),  # 3. file name
        (
            "checkpoint_best_total.pth",
            {"model_name": "RFDETRSmall", "args": {"pretrain_weights": "rf-detr-nano.pth"}},
            RFDETRSmall,
        ),  # model_name wins over args
    ],
)
def test_from_checkpoint_infers_variant(
    small_ref, tmp_path: Path, filename: str, extra: dict, expected
) -> None:
    ref = small_ref
    args = {"class_names": ["cat", "dog"], "pretrain_weights": None, **extra.pop("args", {})}
    path = _save_reference(ref, tmp_path / filename, args=args, **extra)
    model = RFDETR.from_checkpoint(path)
    assert type(model) is expected
    assert model.class_names == ["cat", "dog"] and model.model_config.num_classes == 2
    assert "num_classes" not in model.model_config.model_fields_set
    _assert_same_state(model.model.model.state_dict(), ref.model.model.state_dict())


def test_from_checkpoint_without_any_hint_is_a_clear_error(nano_ref, tmp_path: Path) -> None:
    path = _save_reference(nano_ref, tmp_path / "checkpoint.pth", args={"pretrain_weights": None})
    with pytest.raises(ValueError, match="Could not infer model class"):
        RFDETR.from_checkpoint(path)
    assert type(RFDETRNano.from_checkpoint(path)) is RFDETRNano  # a concrete class is the fallback


def test_our_checkpoint_loads_in_reference_with_same_predictions(tmp_path: Path, image: np.ndarray) -> None:
    from rfdetr import RFDETR as RefRFDETR

    torch.manual_seed(4)
    source = _save_reference(
        _reference("Nano", num_classes=3), tmp_path / "src.pth", args={"class_names": ["a", "b", "c"]}
    )
    ours = RFDETRNano(pretrain_weights=str(source))
    ours.save_checkpoint(tmp_path / "ours.pth")
    raw = torch.load(tmp_path / "ours.pth", weights_only=False)
    assert isinstance(raw["args"], argparse.Namespace) and raw["model_name"] == "RFDETRNano"

    ref = RefRFDETR.from_checkpoint(str(tmp_path / "ours.pth"))
    assert type(ref).__name__ == "RFDETRNano" and ref.class_names == ["a", "b", "c"]
    _assert_same_state(ref.model.model.state_dict(), ours.model.model.state_dict())
    got, expected = ours.predict(image, threshold=0.0), ref.predict(image, threshold=0.0)
    np.testing.assert_allclose(np.sort(got.confidence), np.sort(expected.confidence), atol=1e-4)
    again = RFDETR.from_checkpoint(tmp_path / "ours.pth")  # and back into ours
    assert type(again) is RFDETRNano and again.class_names == ["a", "b", "c"]


def test_export_for_roboflow_bundle(nano_file: Path, tmp_path: Path) -> None:
    ours = RFDETRNano(pretrain_weights=str(nano_file))
    ours.export_for_roboflow(tmp_path / "bundle")
    assert (tmp_path / "bundle" / "class_names.txt").read_text().splitlines() == ours.class_names
    ckpt = load_checkpoint(tmp_path / "bundle" / "weights.pt")
    assert ckpt.class_names == ours.class_names


def test_unsafe_pickle_needs_explicit_trust(nano_ref, tmp_path: Path) -> None:
    path = _save_reference(nano_ref, tmp_path / "rf-detr-nano-evil.pth", args={"payload": NotAllowListed()})
    with pytest.raises(CheckpointError, match="trust_checkpoint=True") as info:
        RFDETRNano(pretrain_weights=str(path))
    assert "NotAllowListed" in str(info.value)
    with pytest.warns(UserWarning, match="full pickle"):
        model = RFDETR.from_checkpoint(path, trust_checkpoint=True)
    assert type(model) is RFDETRNano


def test_corrupt_and_missing_files(nano_file: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pth"
    broken.write_bytes(nano_file.read_bytes()[:10_000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        RFDETRNano(pretrain_weights=str(broken))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(pickle.dumps({"x": 1})[:-3] + b"\x00" * 64)
    with pytest.raises(CheckpointError):
        load_checkpoint(garbage)
    with pytest.raises(FileNotFoundError):
        RFDETR.from_checkpoint(tmp_path / "nope.pth")


def test_wrong_variant_is_refused_with_key_list(nano_file: Path) -> None:
    with pytest.raises(CheckpointError, match="does not (fit|match) this model"):
        RFDETRSmall(pretrain_weights=str(nano_file))  # Small has one more decoder layer


def test_lightning_layout_is_normalised(nano_ref, tmp_path: Path) -> None:
    state = {f"model._orig_mod.{k}": v for k, v in nano_ref.model.model.state_dict().items()}
    path = tmp_path / "last.ckpt"
    torch.save(
        {"state_dict": state, "hyper_parameters": {"class_names": ["x"] * 90}, "model_name": "RFDETRNano"},
        path,
    )
    model = RFDETR.from_checkpoint(path)
    assert type(model) is RFDETRNano and model.class_names == ["x"] * 90
    _assert_same_state(model.model.model.state_dict(), nano_ref.model.model.state_dict())


def test_resolution_change_resamples_position_embeddings(
    nano_ref, nano_file: Path, image: np.ndarray
) -> None:
    from rfdetr import RFDETRNano as RefNano

    ours = RFDETRNano(pretrain_weights=str(nano_file), resolution=448)
    ref = RefNano(pretrain_weights=str(nano_file), resolution=448)
    key = "backbone.0.encoder.encoder.embeddings.position_embeddings"
    assert ours.model.model.state_dict()[key].shape[1] == 1 + 28 * 28
    torch.testing.assert_close(ours.model.model.state_dict()[key], ref.model.model.state_dict()[key])
    got, expected = ours.predict(image, threshold=0.0), ref.predict(image, threshold=0.0)
    np.testing.assert_allclose(np.sort(got.confidence), np.sort(expected.confidence), atol=1e-4)


def test_reduced_architecture_round_trips_without_arguments(tmp_path: Path) -> None:
    """A checkpoint of a non-default architecture rebuilds that architecture from the file alone."""
    torch.manual_seed(0)
    tiny = dict(
        vit_encoder_num_layers=2,
        out_feature_indexes=[1, 2],
        num_queries=20,
        group_detr=2,
        dec_layers=2,
        dim_feedforward=256,
        hidden_dim=128,
        num_classes=3,
    )
    model = RFDETRNano(pretrain_weights=None, **tiny)
    path = tmp_path / "tiny.pth"
    model.save_checkpoint(path)

    loaded = RFDETR.from_checkpoint(path)

    assert type(loaded) is RFDETRNano
    for name, value in tiny.items():
        assert getattr(loaded.model_config, name) == value, name
    image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    a = model.predict(image, threshold=0.0)
    b = loaded.predict(image, threshold=0.0)
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.confidence, b.confidence)


def test_saved_model_config_restores_resolution_and_num_select(tmp_path: Path) -> None:
    """A run fine-tuned at 64 px must predict at 64 px after ``from_checkpoint`` (like the reference's):
    the file's ``model_config`` fields are restored; the caller's keywords still win."""
    torch.manual_seed(0)
    tiny = dict(
        vit_encoder_num_layers=2,
        out_feature_indexes=[1, 2],
        num_queries=20,
        group_detr=2,
        dec_layers=2,
        dim_feedforward=256,
        hidden_dim=128,
        num_classes=3,
    )
    model = RFDETRNano(pretrain_weights=None, resolution=64, num_select=50, **tiny)
    assert model.model_config.positional_encoding_size == 4
    path = tmp_path / "tiny64.pth"
    model.save_checkpoint(path, model_config=model.model_config.model_dump(mode="json"))

    loaded = RFDETR.from_checkpoint(path)
    cfg = loaded.model_config
    assert (cfg.resolution, cfg.positional_encoding_size, cfg.num_select) == (64, 4, 50)
    image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(
        model.predict(image, threshold=0.0).xyxy, loaded.predict(image, threshold=0.0).xyxy
    )
    other = RFDETR.from_checkpoint(path, resolution=128).model_config
    assert (other.resolution, other.positional_encoding_size) == (128, 8)
