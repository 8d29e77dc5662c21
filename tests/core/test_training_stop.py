"""Stop means stop (issue 16 §3): a stop request ends ``train()`` after the current optimisation step or
the current validation batch, never after a whole validation pass, and keeps what finished epochs wrote.

Counted in steps and batches, not seconds: the machine is shared, a step count is not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl

from rfdetr_core import RFDETRNano
from rfdetr_core.training import run_training
from rfdetr_core.training.callbacks import TrainingProgress
from rfdetr_core.training.datamodule import MIN_TRAIN_BATCHES
from tests.support.training_fixtures import FAST, TINY, make_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n=6, size=64)


def tiny_model() -> RFDETRNano:
    return RFDETRNano(**{**TINY, "resolution": 64})


class StopDuringValidation(pl.Callback):
    """Counts steps and validation batches; asks for a stop at validation batch ``at`` of epoch ``epoch``."""

    def __init__(self, progress: TrainingProgress, epoch: int, at: int = 0) -> None:
        self.progress, self.epoch, self.at = progress, epoch, at
        self.val_batches: dict[int, int] = {}
        self.steps_after_stop = 0

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        self.val_batches[epoch] = self.val_batches.get(epoch, 0) + 1
        if epoch == self.epoch and batch_idx == self.at:
            self.progress.request_stop()

    def on_train_batch_end(self, trainer, *args) -> None:
        if self.progress.stop_requested:
            self.steps_after_stop += 1


def test_a_stop_during_training_ends_after_that_step(shapes: Path, tmp_path: Path) -> None:
    asked: list[int] = []

    def on_event(event) -> None:
        if event.kind == "step" and event.step == 2 and not asked:
            asked.append(event.step)
            progress.request_stop()

    progress = TrainingProgress(on_event)
    out = tmp_path / "run"
    run_training(
        tiny_model(), dataset_dir=str(shapes), epochs=5, output_dir=str(out), callbacks=[progress], **FAST
    )
    end = progress.events[-1]
    assert asked == [2] and end.kind == "end" and end.stopped
    assert end.step == 2  # not one step more, and no validation pass: no epoch event, no checkpoint
    assert [e.kind for e in progress.events] == ["start", "end"]
    assert not (out / "checkpoint_best_total.pth").exists() and not (out / "last.ckpt").exists()


def test_a_stop_during_validation_ends_after_that_batch_and_keeps_finished_epochs(
    shapes: Path, tmp_path: Path
) -> None:
    progress = TrainingProgress()
    watch = StopDuringValidation(progress, epoch=1, at=0)
    out = tmp_path / "run"
    run_training(
        tiny_model(),
        dataset_dir=str(shapes),
        epochs=5,
        output_dir=str(out),
        callbacks=[progress, watch],
        use_ema=False,
        **{**FAST, "batch_size": 1},
    )
    assert watch.val_batches[0] == 6  # epoch 0 validated all 6 images, one per batch
    assert watch.val_batches[1] == 1  # epoch 1 stopped after its first validation batch
    assert watch.steps_after_stop == 0
    epochs = [e.epoch for e in progress.events if e.kind == "epoch"]
    assert epochs == [0]  # the finished epoch is reported once, the cut one never
    per_epoch = next(e.step for e in progress.events if e.kind == "epoch")
    assert per_epoch >= MIN_TRAIN_BATCHES
    end = progress.events[-1]
    assert end.kind == "end" and end.stopped and end.step == 2 * per_epoch  # epoch 1 trained, not validated
    # what the finished epoch wrote survives: its weights (deployable best file) and the resume state
    assert (out / "checkpoint_best_regular.pth").is_file() and (out / "checkpoint_best_total.pth").is_file()
    assert (out / "last.ckpt").is_file()
