"""Resuming from ``last.ckpt`` continues the epoch count, the optimiser, the schedule and the EMA."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from rfdetr_core import RFDETR, RFDETRNano
from rfdetr_core.training import run_training
from rfdetr_core.training.callbacks import TrainingProgress
from rfdetr_core.training.datamodule import MIN_TRAIN_BATCHES
from tests.support.training_fixtures import FAST, TINY, make_shapes_dataset


def _adam_steps(ckpt: dict) -> set[int]:
    return {int(state["step"]) for state in ckpt["optimizer_states"][0]["state"].values()}


def _ema_state(ckpt: dict) -> dict:
    return next(v for k, v in ckpt["callbacks"].items() if k.startswith("EMACallback"))


def test_resume_from_last_continues_epochs_optimizer_and_ema(tmp_path: Path) -> None:
    data = make_shapes_dataset(tmp_path / "ds", n=4, size=64)
    out = tmp_path / "run"
    common = dict(dataset_dir=str(data), output_dir=str(out), **FAST)

    run_training(RFDETRNano(**TINY, resolution=64), epochs=1, **common)
    first = torch.load(out / "last.ckpt", weights_only=False)
    assert first["epoch"] == 0 and first["global_step"] == MIN_TRAIN_BATCHES
    assert _adam_steps(first) == {MIN_TRAIN_BATCHES}
    assert _ema_state(first)["updates"] == MIN_TRAIN_BATCHES

    progress = TrainingProgress()
    resumed = RFDETRNano(**TINY, resolution=64)
    run_training(resumed, epochs=2, resume=str(out / "last.ckpt"), callbacks=[progress], **common)
    start = progress.events[0]
    assert start.kind == "start" and start.step == MIN_TRAIN_BATCHES and start.epoch == 1
    assert [e.epoch for e in progress.events if e.kind == "epoch"] == [1]  # only the remaining epoch ran

    second = torch.load(out / "last.ckpt", weights_only=False)
    assert second["epoch"] == 1 and second["global_step"] == 2 * MIN_TRAIN_BATCHES
    assert _adam_steps(second) == {2 * MIN_TRAIN_BATCHES}  # Adam moments continued, not restarted
    assert _ema_state(second)["updates"] == 2 * MIN_TRAIN_BATCHES
    assert second["lr_schedulers"][0]["last_epoch"] == 2 * MIN_TRAIN_BATCHES

    with (out / "metrics.csv").open(newline="") as fh:
        epochs = {row["epoch"] for row in csv.DictReader(fh) if row.get("val/mAP_50")}
    assert epochs == {"0", "1"}  # the first run's history survived the resume

    # the resumed weights are the trained ones and the best files still load
    arch = {k: v for k, v in TINY.items() if k != "pretrain_weights"}  # see ARCH in test_training.py
    best = RFDETR.from_checkpoint(out / "checkpoint_best_total.pth", **arch, resolution=64)
    assert best.class_names == resumed.class_names
    state = {k.removeprefix("model."): v for k, v in second["state_dict"].items() if k.startswith("model.")}
    ema = _ema_state(second)["ema_state_dict"]
    for key, value in resumed.model.model.state_dict().items():  # the run ends on the EMA weights
        torch.testing.assert_close(value.cpu(), ema[key].cpu(), msg=key)
    assert set(state) == set(ema)
