"""Real (tiny) training runs in the trainer process: metrics in SQLite, stop, kill -9 and resume."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from studio.services.train import plots as run_plots
from studio.services.train import runs
from studio.store import RunMetric
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
        from studio.store import Run

        run = s.get(Run, run_id)
        assert run.best_checkpoint and (store.path / run.best_checkpoint).is_file()
        assert run.last_checkpoint and (store.path / run.last_checkpoint).is_file()
    assert run_plots.metrics_figure(store, [run_id]).data, "the mAP plot has data"


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
