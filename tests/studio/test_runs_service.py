"""Runs without training: snapshot hash, run rows and files, liveness of a dead trainer, defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from studio.errors import StudioError
from studio.services.train import runs
from studio.services.train.defaults import MODEL_SIZES, Hardware, default_settings
from studio.store import Annotation, Image, Run, RunMetric
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
