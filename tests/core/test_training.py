"""The Lightning training stack: optimiser groups, schedule, EMA, drop path, data module, train(), CLI.

Every run here is real (real files, real Lightning fit) but tiny: a 2-block ViT, 64 px, 1 epoch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from rfdetr_core import RFDETR, RFDETRBase, RFDETRNano
from rfdetr_core.data import DatasetError
from rfdetr_core.training import run_training
from rfdetr_core.training.callbacks import TrainingProgress
from rfdetr_core.training.callbacks.drop_path import drop_schedule, set_drop_path, vit_blocks
from rfdetr_core.training.callbacks.ema import EMACallback, ema_decay
from rfdetr_core.training.datamodule import MIN_TRAIN_BATCHES, RFDETRDataModule
from rfdetr_core.training.optim import lr_multiplier, param_groups
from rfdetr_core.training.train_api import apply_resolution, resolve_device
from tests.support.training_fixtures import CLASSES, FAST, SMALL_NANO, TINY, make_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n=4, size=64)


def tiny_model(**overrides) -> RFDETRNano:
    return RFDETRNano(**{**TINY, "resolution": 64, **overrides})


#: Architecture kwargs for loading a tiny checkpoint back (our from_checkpoint does not yet read
#: the checkpoint's ``model_config``; the reference's does).
ARCH = {k: v for k, v in {**TINY, "resolution": 64}.items() if k != "pretrain_weights"}


# -- optimiser ---------------------------------------------------------------------------------------
def test_param_groups_layer_decay_and_no_decay() -> None:
    model = tiny_model().model.model
    groups = param_groups(
        model,
        lr=1e-4,
        lr_encoder=2e-4,
        weight_decay=0.1,
        lr_vit_layer_decay=0.5,
        lr_component_decay=0.7,
        num_vit_layers=2,
    )
    where = {id(p): g for g in groups for p in g["params"]}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in groups) == len(trainable) == len(where)  # each exactly once
    named = dict(trainable)
    prefix = "backbone.0.encoder.encoder."
    block0 = where[id(named[prefix + "encoder.layer.0.mlp.fc1.weight"])]
    block1 = where[id(named[prefix + "encoder.layer.1.mlp.fc1.weight"])]
    embed = where[id(named[prefix + "embeddings.position_embeddings"])]
    assert block1["lr"] == pytest.approx(2e-4 * 0.5 * 0.49)  # one block below the top
    assert block0["lr"] == pytest.approx(2e-4 * 0.25 * 0.49)
    assert embed["lr"] == pytest.approx(2e-4 * 0.125 * 0.49) and embed["weight_decay"] == 0.0
    assert block0["weight_decay"] == 0.1
    assert where[id(named[prefix + "encoder.layer.0.norm1.bias"])]["weight_decay"] == 0.0
    assert where[id(named["transformer.decoder.layers.0.linear1.weight"])]["lr"] == pytest.approx(0.7e-4)
    assert where[id(named["class_embed.weight"])]["lr"] == pytest.approx(1e-4)
    assert len(groups) < 12  # merged, not one group per parameter


def test_lr_schedule_warmup_step_and_cosine() -> None:
    kw = dict(total_steps=100, steps_per_epoch=10)
    assert [lr_multiplier(s, warmup_steps=4, **kw) for s in range(5)] == [0, 0.25, 0.5, 0.75, 1.0]
    assert lr_multiplier(29, lr_drop=3, **kw) == 1.0 and lr_multiplier(30, lr_drop=3, **kw) == 0.1
    assert lr_multiplier(0, kind="cosine", **kw) == 1.0
    assert lr_multiplier(50, kind="cosine", min_factor=0.2, **kw) == pytest.approx(0.6)
    assert lr_multiplier(100, kind="cosine", **kw) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="lr_scheduler"):
        lr_multiplier(0, kind="linear", **kw)


# -- EMA / drop path ---------------------------------------------------------------------------------
def test_ema_update_follows_tau_warmup() -> None:
    torch.manual_seed(0)
    live = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMACallback(decay=0.9, tau=2)
    ema.ema_model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).requires_grad_(False)
    ema.ema_model.load_state_dict(live.state_dict())
    start = live[0].weight.detach().clone()
    with torch.no_grad():
        live[0].weight.add_(1.0)
    live[1].num_batches_tracked.fill_(7)
    ema.update(live)
    d1 = 0.9 * (1 - math.exp(-1 / 2))
    assert ema_decay(0.9, 2, 1) == pytest.approx(d1)
    torch.testing.assert_close(ema.ema_model[0].weight, d1 * start + (1 - d1) * (start + 1))
    assert int(ema.ema_model[1].num_batches_tracked) == 7  # integer buffers are copied
    state = ema.state_dict()
    fresh = EMACallback(decay=0.9, tau=2)
    fresh.load_state_dict(state)
    assert fresh.updates == 1 and fresh._pending is not None


def test_drop_path_schedule_is_linear_over_depth() -> None:
    assert drop_schedule(0.1, 2, 3).tolist() == [0.1] * 6
    assert drop_schedule(0.1, 2, 3, cutoff_epoch=1, mode="early").tolist() == [0.1] * 3 + [0.0] * 3
    assert drop_schedule(0.1, 2, 3, cutoff_epoch=1, mode="late").tolist() == [0.0] * 3 + [0.1] * 3
    network = tiny_model(vit_encoder_num_layers=3, out_feature_indexes=[1, 2, 3]).model.model
    set_drop_path(network, 0.2)
    assert [b.drop_path.drop_prob for b in vit_blocks(network)] == pytest.approx([0.0, 0.1, 0.2])


# -- data module / argument handling -----------------------------------------------------------------
def test_small_dataset_is_sampled_with_replacement(shapes: Path) -> None:
    from rfdetr_core.config import RFDETRNanoConfig
    from rfdetr_core.train_config import TrainConfig

    mc = RFDETRNanoConfig(**{**TINY, "resolution": 64})
    tc = TrainConfig(dataset_dir=str(shapes), **{**FAST, "batch_size": 2})
    loader = RFDETRDataModule(mc, tc).train_dataloader()
    assert len(loader) == MIN_TRAIN_BATCHES  # 4 images < 2 * 5: an epoch is still 5 batches
    samples, targets = next(iter(loader))
    assert samples.tensors.shape == (2, 3, 64, 64) and len(targets) == 2
    accum = TrainConfig(dataset_dir=str(shapes), **{**FAST, "batch_size": 1, "grad_accum_steps": 2})
    assert len(RFDETRDataModule(mc, accum).train_dataloader()) == 2 * MIN_TRAIN_BATCHES  # effective batch 2
    big = make_shapes_dataset(shapes.parent / "big", n=12, size=64)
    assert (
        len(
            RFDETRDataModule(
                mc, TrainConfig(dataset_dir=str(big), **{**FAST, "batch_size": 2})
            ).train_dataloader()
        )
        == 6
    )  # plain shuffling, 12 / 2


def test_device_mapping() -> None:
    assert resolve_device(None) == (None, None)
    assert resolve_device("cpu") == ("cpu", None)
    assert resolve_device("cuda:1") == ("gpu", [1])
    assert resolve_device(torch.device("cuda")) == ("gpu", None)
    assert resolve_device("mps") == ("mps", None)
    with pytest.raises(ValueError, match="Invalid device"):
        resolve_device("gpu-please")


def test_resolution_is_validated_and_follows_the_pe_rule() -> None:
    nano = tiny_model()
    for bad in (True, 0, -32, 100, "64"):
        with pytest.raises(ValueError, match="resolution"):
            apply_resolution(nano, bad)
    apply_resolution(nano, 128)
    assert nano.model_config.resolution == 128 and nano.model_config.positional_encoding_size == 8
    assert nano.model.resolution == 128
    pos = nano.model.model.backbone[0].encoder.encoder.embeddings.position_embeddings
    assert pos.shape[1] == 8 * 8 + 1  # the table follows, so saved weights match the saved args
    base = RFDETRBase(**TINY)  # Base keeps DINOv2's 37-cell grid (checkpoint compatibility)
    apply_resolution(base, 224)
    assert base.model_config.resolution == 224 and base.model_config.positional_encoding_size == 37


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing_dir", "not found"),
        ("no_valid", "valid split is missing"),
        ("bad_json", "Could not parse"),
        ("unknown_arg", "Unknown training parameter"),
    ],
)
def test_bad_input_fails_before_training(tmp_path: Path, breakage: str, message: str) -> None:
    root = make_shapes_dataset(tmp_path / "ds", n=2, size=64)
    kwargs = dict(dataset_dir=str(root), epochs=1, output_dir=str(tmp_path / "out"), **FAST)
    if breakage == "missing_dir":
        kwargs["dataset_dir"] = str(tmp_path / "nowhere")
    elif breakage == "no_valid":
        (root / "valid" / "_annotations.coco.json").unlink()
    elif breakage == "bad_json":
        (root / "train" / "_annotations.coco.json").write_text("{not json")
    else:
        kwargs["epoch"] = 3
    model = tiny_model()
    with pytest.raises((DatasetError, ValueError), match=message):
        model.train(**kwargs)  # the façade entry point (delegates to run_training)
    assert not (tmp_path / "out").exists()  # nothing was started


# -- a real (tiny) run ---------------------------------------------------------------------------------
def test_train_writes_checkpoints_metrics_and_syncs_the_model(shapes: Path, tmp_path: Path) -> None:
    events = []
    progress = TrainingProgress(events.append)
    model = tiny_model()
    assert model.model_config.num_classes == 90
    out = tmp_path / "run"
    run_training(
        model,
        dataset_dir=str(shapes),
        epochs=1,
        output_dir=str(out),
        callbacks=[progress],
        notes={"who": "test"},
        **FAST,
    )
    for name in (
        "checkpoint_best_regular.pth",
        "checkpoint_best_ema.pth",
        "checkpoint_best_total.pth",
        "last.ckpt",
        "metrics.csv",
        "training_config.json",
    ):
        assert (out / name).is_file(), name
    assert model.model_config.num_classes == len(CLASSES)  # aligned with the dataset
    assert model.class_names == list(CLASSES)
    assert model.model.model.class_embed.out_features == len(CLASSES) + 1
    detections = model.predict(str(shapes / "valid" / "valid_00.png"), threshold=0.0)
    assert len(detections) > 0 and set(detections.data["class_name"]) <= {*CLASSES, "__background__"}

    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("epoch") == 1
    epoch = next(e for e in events if e.kind == "epoch")
    for key in (
        "train/loss",
        "val/mAP_50",
        "val/mAP_50_95",
        "val/F1",
        "val/precision",
        "val/recall",
        "val/ema_mAP_50_95",
    ):
        assert key in epoch.metrics, key
    assert set(epoch.details["regular"]["per_class"]) == set(CLASSES)
    assert epoch.total_steps == MIN_TRAIN_BATCHES and events[-1].step == MIN_TRAIN_BATCHES

    config = json.loads((out / "training_config.json").read_text())
    assert config["class_names"] == list(CLASSES) and config["train_config"]["notes"] == {"who": "test"}
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "val/mAP_50_95" in header and "train/loss_epoch" in header

    total = torch.load(out / "checkpoint_best_total.pth", weights_only=False)
    assert set(total) >= {"model", "args", "model_name"} and "epoch" not in total
    assert "optimizer" not in total and total["model_name"] == "RFDETRNano"
    assert (
        total["model_config"]["hidden_dim"] == TINY["hidden_dim"]
    )  # the architecture travels with the weights
    loaded = RFDETR.from_checkpoint(out / "checkpoint_best_ema.pth", **ARCH)
    assert loaded.class_names == list(CLASSES) and loaded.model_config.num_classes == len(CLASSES)


def test_request_stop_ends_the_run_cleanly(shapes: Path, tmp_path: Path) -> None:
    progress = TrainingProgress(
        lambda e: progress.request_stop() if e.kind == "step" and e.step >= 2 else None
    )
    model = tiny_model()
    run_training(
        model,
        dataset_dir=str(shapes),
        epochs=5,
        output_dir=str(tmp_path / "run"),
        callbacks=[progress],
        use_ema=False,
        **FAST,
    )
    end = progress.events[-1]
    assert end.kind == "end" and end.stopped and end.step < 5 * MIN_TRAIN_BATCHES
    # stopped inside the first epoch: no half-epoch checkpoint that a resume or Review would trust
    assert not (tmp_path / "run" / "last.ckpt").is_file()


def test_explicit_num_classes_is_kept(shapes: Path, tmp_path: Path) -> None:
    model = tiny_model(num_classes=5)
    run_training(
        model,
        dataset_dir=str(shapes),
        epochs=1,
        output_dir=str(tmp_path / "run"),
        use_ema=False,
        dont_save_weights=True,
        **FAST,
    )
    assert model.model_config.num_classes == 5 and model.model.model.class_embed.out_features == 6


# -- checkpoints cross-load in the reference ---------------------------------------------------------------
def test_best_checkpoints_load_in_the_reference(shapes: Path, tmp_path: Path) -> None:
    from rfdetr import RFDETR as Reference

    model = RFDETRNano(**SMALL_NANO, resolution=128)
    out = tmp_path / "run"
    run_training(model, dataset_dir=str(shapes), epochs=1, output_dir=str(out), **FAST)
    for name in ("checkpoint_best_ema.pth", "checkpoint_best_total.pth"):
        ref = Reference.from_checkpoint(str(out / name))
        assert type(ref).__name__ == "RFDETRNano" and ref.class_names == list(CLASSES)
        ours = RFDETR.from_checkpoint(out / name, num_queries=20, group_detr=2, resolution=128)
        ref_state, our_state = ref.model.model.state_dict(), ours.model.model.state_dict()
        assert set(ref_state) == set(our_state)
        for key, value in our_state.items():
            torch.testing.assert_close(ref_state[key].float().cpu(), value.float(), msg=key)


# -- command line --------------------------------------------------------------------------------------------
def test_cli_train_and_lightning_fit(shapes: Path, tmp_path: Path) -> None:
    from rfdetr_core.training.cli import main

    out = tmp_path / "cli"
    arch = json.dumps({**TINY, "resolution": 64})
    assert (
        main(
            [
                "train",
                "--variant",
                "nano",
                "--model",
                arch,
                "--dataset_dir",
                str(shapes),
                "--epochs",
                "1",
                "--batch_size",
                "2",
                "--num_workers",
                "0",
                "--multi_scale",
                "false",
                "--use_ema",
                "false",
                "--output_dir",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "checkpoint_best_total.pth").is_file() and (out / "training_config.json").is_file()

    yaml_path = tmp_path / "fit.yaml"
    model_config = {**TINY, "resolution": 64, "positional_encoding_size": 4, "num_classes": 2}
    train_config = {
        "dataset_dir": str(shapes),
        "epochs": 1,
        "batch_size": 2,
        "num_workers": 0,
        "multi_scale": False,
        "use_ema": False,
        "output_dir": str(tmp_path / "fit"),
    }
    yaml_path.write_text(json.dumps({"model": {"model_config": model_config, "train_config": train_config}}))
    assert main(["fit", "--config", str(yaml_path)]) == 0
    assert (tmp_path / "fit" / "last.ckpt").is_file() and (tmp_path / "fit" / "metrics.csv").is_file()
