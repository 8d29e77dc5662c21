"""The one place that finds a run's checkpoint files and loads a model from one: stored paths
(relative or absolute), which runs have a checkpoint on disk, clear errors, and a real checkpoint
loaded the way the run validated it (its saved ``model_config``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from studio.errors import StudioError
from studio.services.train import checkpoints
from studio.store import ProjectStore, Run


@pytest.fixture()
def store(tmp_path: Path):
    store = ProjectStore.create(tmp_path / "proj", "Checkpoints")
    yield store
    store.close()


def _file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_runs_with_checkpoint_newest_first_existing_files_only(store, tmp_path) -> None:
    outside = _file(tmp_path / "elsewhere" / "best.pth")  # absolute paths are kept as stored
    _file(store.path / "runs" / "2" / "best.pth")
    _file(store.path / "runs" / "2" / "last.pth")
    with store.session() as s:
        s.add(Run(name="old", model_size="nano", status="completed", best_checkpoint=str(outside)))
        s.add(
            Run(
                name="new",
                model_size="small",
                status="stopped",
                best_checkpoint="runs/2/best.pth",
                last_checkpoint="runs/2/last.pth",
                best_metrics={"mAP_50_95": 0.25},
            )
        )
        s.add(Run(name="gone", model_size="nano", best_checkpoint="runs/3/best.pth"))  # file missing
        s.add(Run(name="queued", model_size="nano"))
    best = checkpoints.runs_with_checkpoint(store)
    assert [(c.run_name, c.kind, c.path) for c in best] == [
        ("new", "best", store.path / "runs" / "2" / "best.pth"),
        ("old", "best", outside),
    ]
    assert (best[0].run_id, best[0].model_size, best[0].status, best[0].map_50_95) == (
        2,
        "small",
        "stopped",
        0.25,
    )
    both = checkpoints.runs_with_checkpoint(store, ("best", "last"))
    assert [(c.run_name, c.kind) for c in both] == [("new", "best"), ("new", "last"), ("old", "best")]

    run, gone = checkpoints.run_checkpoint(store, 3)
    assert run.name == "gone" and gone.path == store.path / "runs" / "3" / "best.pth" and not gone.exists
    _, none = checkpoints.run_checkpoint(store, 4, "last")
    assert none.path is None and not none.exists
    with pytest.raises(StudioError, match="Run 99 does not exist"):
        checkpoints.run_checkpoint(store, 99)
    assert checkpoints.stored_path(store, None) is None and checkpoints.stored_path(store, "") is None


def test_load_run_model_errors(tmp_path) -> None:
    with pytest.raises(StudioError, match="does not exist"):
        checkpoints.load_run_model(tmp_path / "nope.pth")
    bad = tmp_path / "checkpoint_best_total.pth"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(
        checkpoints.CheckpointLoadError, match="Cannot load checkpoint 'checkpoint_best_total.pth'"
    ) as info:
        checkpoints.load_run_model(bad)
    assert isinstance(info.value, StudioError) and info.value.__cause__ is not None


@pytest.mark.slow
def test_load_run_model_restores_the_trained_config(tmp_path) -> None:
    """A checkpoint written like the trainer's (``model_config`` of a 64 px model with fewer queries)
    comes back at that resolution and query count, with its class names and identical outputs."""
    from rfdetr_core import RFDETRNano
    from rfdetr_core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = RFDETRNano(pretrain_weights=None, num_classes=2, resolution=64, num_queries=30, num_select=30)
    model.model.class_names = ["cat", "dog"]
    path = tmp_path / "best.pth"
    save_checkpoint(
        path,
        state=model.model.model.state_dict(),
        args=model.checkpoint_args(),
        model_name="RFDETRNano",
        extra={"model_config": model.model_config.model_dump(mode="json")},
    )
    loaded = checkpoints.load_run_model(path, device="cpu")
    cfg = loaded.model_config
    assert (cfg.resolution, cfg.num_queries, cfg.num_select, cfg.num_classes) == (64, 30, 30, 2)
    assert loaded.class_names == ["cat", "dog"] and str(loaded.model.device) == "cpu"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model.model.model.eval()(x), loaded.model.model(x)
    assert torch.equal(a["pred_logits"], b["pred_logits"]) and torch.equal(a["pred_boxes"], b["pred_boxes"])
