"""Real (tiny) training runs in the trainer process: metrics in SQLite, stop, kill -9 and resume, a
database lock storm, and a second trainer for the same run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from studio.services.train import checkpoints, runfolder, runs
from studio.services.train import plots as run_plots
from studio.services.train.worker import EXIT_LOCKED
from studio.store import Run, RunMetric
from studio.store.db import BUSY_TIMEOUT_MS
from studio.store.models import utcnow
from tests.support.studio_run_fixtures import TINY_RUN, make_project

pytestmark = pytest.mark.slow
TIMEOUT_S = 600  # generous: CI has 2 shared cores


@pytest.fixture()
def store(tmp_path: Path):
    st = make_project(tmp_path, n=4)
    yield st
    st.close()


def _metric_epochs(store, run_id: int, name: str) -> list[int]:
    with store.session(readonly=True) as s:
        return sorted(
            s.scalars(select(RunMetric.epoch).where(RunMetric.run_id == run_id, RunMetric.name == name))
        )


def _wait(predicate, what: str, store, run_id: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{runs.run_log_tail(store, run_id)}")
        time.sleep(0.5)


def _finished(store, run_id: int) -> bool:
    runs.refresh_liveness(store)
    return runs.get_run(store, run_id).status not in runs.ACTIVE


def test_metrics_arrive_each_epoch_and_stop_keeps_the_best_checkpoint(store) -> None:
    # Far more epochs than the run will reach: the stop, not the end of training, must finish it.
    run_id = runs.create_run(store, {**TINY_RUN, "epochs": 500})
    runs.start_run(store, run_id)
    _wait(lambda: 1 in _metric_epochs(store, run_id, "val/mAP_50"), "the first epoch's mAP", store, run_id)
    info = runs.get_run(store, run_id)
    assert info.status == "running" and info.progress["total_steps"] > 0 and info.epochs_done >= 1
    assert _metric_epochs(store, run_id, "train/loss_step"), "step losses are written during the epoch"
    assert {"val/mAP_50_95", "val/F1", "val/precision", "val/recall", "lr"} <= set(
        run_plots.metric_names(store, run_id)
    )
    assert run_plots.class_ap_names(store, run_id) == ["bar", "square"]
    runs.request_stop(store, run_id)
    _wait(lambda: _finished(store, run_id), "the stop", store, run_id)
    info = runs.get_run(store, run_id)
    assert info.status == "stopped", info.error
    assert info.epochs_done < 500 and info.best_map50_95 is not None
    # an epoch cut short by the stop is not recorded as one (its validation never ran)
    assert _metric_epochs(store, run_id, "val/mAP_50") == list(range(1, info.epochs_done + 1))
    with store.session(readonly=True) as s:
        run = s.get(Run, run_id)
        assert run.best_checkpoint and (store.path / run.best_checkpoint).is_file()
        assert run.last_checkpoint and (store.path / run.last_checkpoint).is_file()
    assert run_plots.metrics_figure(store, [run_id]).data, "the mAP plot has data"


def test_a_stop_before_the_first_checkpoint_leaves_a_run_no_page_offers(tmp_path: Path) -> None:
    # 80 images at batch 1: the stop arrives long before the first validation
    store = make_project(tmp_path / "big", n=80)
    try:
        _stop_before_first_checkpoint(store)
    finally:
        store.close()


def _stop_before_first_checkpoint(store) -> None:
    run_id = runs.create_run(store, {**TINY_RUN, "epochs": 500, "batch_size": 1, "use_ema": False})
    runs.start_run(store, run_id)
    _wait(lambda: _metric_epochs(store, run_id, "train/loss_step"), "the first steps", store, run_id)
    runs.request_stop(store, run_id)
    _wait(lambda: _finished(store, run_id), "the stop", store, run_id)
    info = runs.get_run(store, run_id)
    assert info.status == "stopped" and info.epochs_done == 0, info.error
    assert not info.has_checkpoint and info.status_label == "stopped — no checkpoint"
    assert _metric_epochs(store, run_id, "val/mAP_50") == []  # no validation pass ran after the stop
    assert run_id not in {c.run_id for c in checkpoints.runs_with_checkpoint(store, ("best", "last"))}
    assert "stopped" in runs.run_log_tail(store, run_id)


def test_kill_9_leaves_an_interrupted_run_that_resumes(store) -> None:
    run_id = runs.create_run(store, {**TINY_RUN, "epochs": 500})
    pid = runs.start_run(store, run_id)
    last = store.path / "runs" / str(run_id) / "output" / "last.ckpt"
    _wait(lambda: _metric_epochs(store, run_id, "val/mAP_50") and last.is_file(), "epoch 1", store, run_id)
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: _finished(store, run_id), "the interrupted status", store, run_id)
    info = runs.get_run(store, run_id)
    assert info.status == "interrupted"
    before = _metric_epochs(store, run_id, "val/mAP_50")
    assert before and before == list(range(1, len(before) + 1))  # what was written before the kill survives

    runs.start_run(store, run_id, resume=True)
    _wait(
        lambda: len(_metric_epochs(store, run_id, "val/mAP_50")) > len(before),
        "a resumed epoch",
        store,
        run_id,
    )
    runs.request_stop(store, run_id)
    _wait(lambda: _finished(store, run_id), "the resumed run's stop", store, run_id)
    info = runs.get_run(store, run_id)
    assert info.status == "stopped", runs.run_log_tail(store, run_id)
    after = _metric_epochs(store, run_id, "val/mAP_50")
    assert after == list(range(1, len(after) + 1))  # resumed where it stopped, each epoch recorded once
    assert info.epochs_done == len(after)


def _heartbeat(store, run_id: int):
    with store.session(readonly=True) as s:
        return s.get(Run, run_id).heartbeat_at


def test_heartbeat_and_metrics_survive_a_database_lock_longer_than_the_busy_timeout(store) -> None:
    run_id = runs.create_run(store, {**TINY_RUN, "epochs": 500})
    runs.start_run(store, run_id)
    _wait(lambda: _metric_epochs(store, run_id, "train/loss_step"), "the first steps", store, run_id)
    storm_s = BUSY_TIMEOUT_MS / 1000 + 5
    other = sqlite3.connect(store.path / "project.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock past everyone's patience
        deadline = time.monotonic() + storm_s
        while time.monotonic() < deadline:
            assert runs.refresh_liveness(store) == []  # the trainer's lock proves it alive meanwhile
            time.sleep(1.0)
    finally:
        other.rollback()
        other.close()
    released = utcnow()
    _wait(lambda: _heartbeat(store, run_id) > released, "a beat after the storm", store, run_id)
    assert runs.get_run(store, run_id).status == "running"
    steps_then = len(_metric_epochs(store, run_id, "train/loss_step"))
    _wait(
        lambda: len(_metric_epochs(store, run_id, "train/loss_step")) > steps_then,
        "metrics after the storm",
        store,
        run_id,
    )
    log_text = runs.log_file(store, run_id).read_text()
    assert "heartbeat failed" in log_text, "the storm outlasted the busy timeout and a beat was refused"
    runs.request_stop(store, run_id)  # the heartbeat still sees a stop request
    _wait(lambda: _finished(store, run_id), "the stop after the storm", store, run_id)
    info = runs.get_run(store, run_id)
    assert info.status == "stopped", info.error
    assert "epoch" in runs.run_log_tail(store, run_id) and "eval mode" not in runs.run_log_tail(store, run_id)


def test_a_second_trainer_for_one_run_is_refused(store) -> None:
    run_id = runs.create_run(store, {**TINY_RUN, "epochs": 500})
    pid = runs.start_run(store, run_id)
    # The situation of the bug: a late heartbeat made the run look interrupted while it trains.
    with store.session() as s:
        s.execute(update(Run).where(Run.id == run_id).values(status="interrupted", pid=None))
    assert runfolder.is_locked(runs.run_dir(store, run_id)), "the first trainer holds its run"
    with pytest.raises(runfolder.RunLocked, match="already being trained"):
        runs.start_run(store, run_id)
    worker = subprocess.run(
        [sys.executable, "-m", runs.WORKER_MODULE, "--project", str(store.path), "--run", str(run_id)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert worker.returncode == EXIT_LOCKED and "already being trained" in worker.stdout
    with store.session(readonly=True) as s:
        assert s.get(Run, run_id).pid in (None, pid)  # the refused worker never claimed the run
    os.kill(pid, signal.SIGTERM)  # a clean stop of the one real trainer
    _wait(lambda: not runfolder.is_locked(runs.run_dir(store, run_id)), "the trainer's exit", store, run_id)
    assert runs.get_run(store, run_id).status == "stopped"  # SIGTERM is a clean stop, not "completed"
