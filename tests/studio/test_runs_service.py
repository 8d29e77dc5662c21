"""Runs without training: snapshot hash, run rows and files, liveness of a dead trainer, defaults, the
Train page's settings rules, status words, escaping, the LR axis, the log tail and the trainer lock."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from studio.errors import StudioError
from studio.services.train import checkpoints, plots, runfolder, runs, view
from studio.services.train.defaults import MODEL_SIZES, Hardware, default_settings
from studio.services.train.settings import (
    SettingsError,
    TrainSettings,
    check_resumable,
    default_resolution,
    resume_training,
)
from studio.services.train.status import NO_CHECKPOINT, VOCABULARY, status_label
from studio.store import Annotation, Image, Run, RunMetric
from studio.store.models import RUN_STATUSES
from tests.support.studio_run_fixtures import TINY_RUN, make_project


@pytest.fixture()
def store(tmp_path: Path):
    st = make_project(tmp_path, n=4)
    yield st
    st.close()


def _move_first_box(store, dx: float) -> None:
    with store.session() as s:
        box = s.scalars(select(Annotation).order_by(Annotation.id)).first()
        box.x += dx


def test_snapshot_hash_is_stable_and_follows_label_edits(store, tmp_path: Path) -> None:
    first = runs.snapshot_dataset(store, tmp_path / "a")
    second = runs.snapshot_dataset(store, tmp_path / "b")
    assert first["hash"] == second["hash"] and len(first["hash"]) == 64
    assert first["images"] == {"train": 4, "valid": 4}
    _move_first_box(store, 1.0)
    edited = runs.snapshot_dataset(store, tmp_path / "c")
    assert edited["hash"] != first["hash"]
    _move_first_box(store, -1.0)
    assert runs.snapshot_dataset(store, tmp_path / "d")["hash"] == first["hash"]


def test_a_run_needs_validation_images(store) -> None:
    with store.session() as s:
        for im in s.scalars(select(Image).where(Image.split == "valid")):
            im.split = "train"
    with pytest.raises(StudioError, match="validation"):
        runs.create_run(store, TINY_RUN)
    assert runs.list_runs(store) == []  # nothing half-created is left behind
    assert not (store.path / runs.RUNS_DIR / "1").exists()


def test_create_list_and_delete_a_run(store) -> None:
    run_id = runs.create_run(store, TINY_RUN)
    info = runs.get_run(store, run_id)
    assert info.status == "queued" and info.model_size == "Nano" and info.total_epochs == 2
    assert info.settings["resolution"] == 64 and len(info.dataset_hash) == 64
    assert (runs.run_dir(store, run_id) / "dataset" / "valid" / "_annotations.coco.json").is_file()
    with store.session() as s:
        s.add(RunMetric(run_id=run_id, epoch=1, name="val/mAP_50", value=0.5))
    assert [r.id for r in runs.list_runs(store)] == [run_id]
    runs.delete_run(store, run_id)
    assert runs.list_runs(store) == []
    assert not runs.run_dir(store, run_id).exists()
    with store.session(readonly=True) as s:
        assert s.scalars(select(RunMetric)).all() == []


def test_a_running_run_whose_process_is_gone_becomes_interrupted(store) -> None:
    run_id = runs.create_run(store, TINY_RUN)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    with store.session() as s:
        run = s.get(Run, run_id)
        run.status, run.pid = "running", int(gone.stdout)
    assert runs.refresh_liveness(store) == [run_id]
    info = runs.get_run(store, run_id)
    assert info.status == "interrupted" and "without reporting" in info.error
    assert runs.refresh_liveness(store) == []  # settled: not reported twice


def test_defaults_follow_hardware_and_data_size() -> None:
    cpu, why = default_settings(40, Hardware(None, 0.0, 2))
    assert cpu["model_size"] == "Nano" and cpu["resolution"] == 384 and "no GPU" in why and "40" in why
    big, why = default_settings(5000, Hardware("H200", 140.0, 16))
    assert (
        big["model_size"] == "Medium"
        and big["batch_size"] > cpu["batch_size"]
        and big["epochs"] < cpu["epochs"]
    )
    assert "H200" in why


def test_model_size_table_matches_the_variant() -> None:
    from rfdetr_core import RFDETRNano

    nano = RFDETRNano(pretrain_weights=None)
    n_params = sum(p.numel() for p in nano.model.model.parameters())
    assert round(n_params / 1e6, 1) == MODEL_SIZES["Nano"].params_m
    assert nano.model_config.resolution == MODEL_SIZES["Nano"].resolution
    assert nano.model_config.block_size == MODEL_SIZES["Nano"].block_size


# -- settings rules, status words, what the page shows (issues 12, 13, 19) ---------------------------
def test_train_settings_rules_name_what_to_change() -> None:
    ok = TrainSettings.from_values({**TINY_RUN, "weights_path": ""})
    assert ok.validate() is ok and ok.resolution == 64 and ok.model_size == "Nano"
    assert "augment" not in ok.to_dict()  # only the form's own keys are kept
    with pytest.raises(SettingsError, match="multiple of 32 for Nano"):
        replace(ok, resolution=100).validate()
    with pytest.raises(SettingsError, match="multiple of 56 for Base"):
        replace(ok, model_size="Base", resolution=384).validate()
    replace(ok, model_size="Base", resolution=560).validate()
    with pytest.raises(SettingsError, match="Choose a model size"):
        replace(ok, model_size="Huge").validate()
    with pytest.raises(SettingsError, match="Epochs must be a number"):
        TrainSettings.from_values({"epochs": None}).validate()
    assert default_resolution("Medium") == MODEL_SIZES["Medium"].resolution


def test_resume_is_refused_for_a_running_or_finished_run(store) -> None:
    run_id = runs.create_run(store, TINY_RUN)
    for status, refused in (("running", "still running"), ("completed", "finished all its epochs")):
        with store.session() as s:
            s.get(Run, run_id).status = status
        with pytest.raises(SettingsError, match=refused):
            check_resumable(runs.get_run(store, run_id))
    for status in ("stopped", "failed", "interrupted"):
        with store.session() as s:
            s.get(Run, run_id).status = status
        check_resumable(runs.get_run(store, run_id))
    with pytest.raises(SettingsError, match="No run selected"):
        resume_training(store, None)


def test_one_status_vocabulary_and_the_pickers_follow_the_status(store) -> None:
    assert [status_label(s) for s in RUN_STATUSES] == [
        "queued",
        "running",
        "finished",
        "failed",
        "stopped",
        "interrupted",
    ]
    assert status_label("running", stop_requested=True) == "stopping"
    assert status_label("stopped", has_checkpoint=False) == NO_CHECKPOINT == "stopped — no checkpoint"
    assert {status_label(s) for s in RUN_STATUSES} | {"stopping", NO_CHECKPOINT} == set(VOCABULARY)
    run_id = runs.create_run(store, TINY_RUN)
    with store.session() as s:
        s.get(Run, run_id).status = "stopped"
    # stopped before its first validation: no checkpoint, said so, and no page offers it
    assert view.load_runs_view(store).run_choices == [(f"#{run_id} Nano · {NO_CHECKPOINT}", run_id)]
    assert checkpoints.runs_with_checkpoint(store, ("best", "last")) == []
    best = runs.run_dir(store, run_id) / "output" / "checkpoint_best_total.pth"
    best.parent.mkdir(parents=True, exist_ok=True)
    best.write_bytes(b"weights")
    with store.session() as s:
        s.get(Run, run_id).best_checkpoint = str(best.relative_to(store.path))
    assert view.load_runs_view(store).run_choices == [(f"#{run_id} Nano · stopped", run_id)]
    with store.session() as s:
        s.get(Run, run_id).status = "completed"
    shown = view.load_runs_view(store, run_id)
    assert shown.run_choices == [(f"#{run_id} Nano · finished", run_id)] and shown.run_id == run_id
    assert shown.rows[0][3] == "finished"


def test_a_hostile_run_error_is_escaped_and_capped_in_the_progress_html(store) -> None:
    run_id = runs.create_run(store, TINY_RUN)
    evil = "Refusing to unpickle: ['<img src=x onerror=window.__xss=1>.x'] " + "A" * 100_000
    with store.session() as s:
        run = s.get(Run, run_id)
        run.status, run.error = "failed", evil
    html = view.progress_html(runs.get_run(store, run_id))
    assert "<img" not in html and "&lt;img src=x onerror=window.__xss=1&gt;" in html
    assert len(html) < 3000 and "more characters" in html


def test_the_learning_rate_plot_is_a_log_axis_fitted_to_the_values(store) -> None:
    run_id = runs.create_run(store, TINY_RUN)
    with store.session() as s:
        s.add_all(RunMetric(run_id=run_id, epoch=1, step=k, name="lr", value=7e-05) for k in range(5))
    fig = plots.lr_figure(store, [run_id])
    low, high = fig.layout.yaxis.range
    assert fig.layout.yaxis.type == "log" and low < math.log10(7e-05) < high and high - low <= 2
    assert list(fig.data[0].y) == [7e-05] * 5


def test_the_log_tail_shows_our_progress_lines_and_the_full_log_is_kept(store) -> None:
    run_id = runs.create_run(store, TINY_RUN)
    folder = runs.run_dir(store, run_id)
    noise = "💡 Tip: For seamless cloud uploads try litmodels\nFound 385 module(s) in eval mode.\n"
    (folder / runfolder.LOG_FILE).write_text(noise + "12:00:01 epoch 1/2 done: mAP@50:95 0.1000\n")
    assert "eval mode" in runs.run_log_tail(store, run_id)  # a run from before progress lines: raw log
    (folder / runfolder.PROGRESS_FILE).write_text("12:00:01 epoch 1/2 done: mAP@50:95 0.1000\n")
    assert runs.run_log_tail(store, run_id) == "12:00:01 epoch 1/2 done: mAP@50:95 0.1000"
    assert runs.log_file(store, run_id).read_text().startswith(noise)


def test_a_locked_run_folder_refuses_a_second_trainer_and_counts_as_alive(store) -> None:
    run_id = runs.create_run(store, TINY_RUN)
    folder = runs.run_dir(store, run_id)
    fd = runfolder.acquire(folder, run_id)  # what a trainer process holds for its whole life
    try:
        assert runfolder.is_locked(folder)
        with pytest.raises(runfolder.RunLocked, match="already being trained"):
            runs.start_run(store, run_id)
        assert runs.get_run(store, run_id).status == "queued"  # the refused start changed nothing
        with pytest.raises(runfolder.RunLocked):
            runfolder.acquire(folder, run_id)
        with store.session() as s:
            s.get(Run, run_id).status = "running"  # no pid, no heartbeat: only the lock says it lives
        assert runs.refresh_liveness(store) == []
    finally:
        os.close(fd)
    assert not runfolder.is_locked(folder)
    assert runs.refresh_liveness(store) == [run_id]  # the lock is gone: the trainer is gone
