"""The training process: ``python -m studio.services.train.worker --project DIR --run ID``.

It reads the run's settings from the project database, builds the model, calls the core's
``train()`` on the run's frozen dataset and reports through the same database:

- step losses and the learning rate are buffered and written at most once a second, epoch metrics
  (``val/mAP_50``, ``val/F1``, ``val/AP/<class>`` ...) as soon as each epoch's validation is done; each
  write is one short transaction, so the UI (reading under WAL) is never blocked for long;
- a heartbeat thread stamps ``heartbeat_at`` every few seconds and watches ``stop_requested``; a stop
  request, SIGTERM or SIGINT all call ``TrainingProgress.request_stop()``, which ends the run after
  the current step with its best checkpoint and ``last.ckpt`` written;
- the final status (completed / stopped / failed) is written before the process exits. A process
  that dies without writing it is detected by :func:`studio.services.train.runs.refresh_liveness`.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from sqlalchemy import delete, select, update

from rfdetr_core.training.callbacks import ProgressEvent, TrainingProgress
from studio.errors import StudioError
from studio.services.train import augment
from studio.store import Category, ProjectStore, Run, RunMetric
from studio.store.models import utcnow

HEARTBEAT_S = 3.0
FLUSH_S = 1.0
BEST_FILE, LAST_FILE = "checkpoint_best_total.pth", "last.ckpt"
log = logging.getLogger("studio.trainer")


class LearningRate(pl.Callback):
    """Remembers the current learning rate of the first parameter group (the core does not log it)."""

    value: float | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.optimizers:
            self.value = float(trainer.optimizers[0].param_groups[0]["lr"])


def build_model(settings: dict[str, Any]):
    """The variant with the chosen resolution and weights (``model_overrides``: hidden, for tests)."""
    from rfdetr_core.variants import VARIANTS

    kwargs = dict(settings.get("model_overrides") or {})
    if settings.get("resolution"):
        kwargs["resolution"] = int(settings["resolution"])
    source = settings.get("pretrained", "official")
    if source == "scratch":
        kwargs["pretrain_weights"] = None
    elif source == "local":
        path = Path(str(settings.get("weights_path") or "")).expanduser()
        if not path.is_file():
            raise StudioError(f"Local weights file not found: {path}")
        kwargs["pretrain_weights"] = str(path)
    return VARIANTS[f"RFDETR{settings.get('model_size', 'Nano')}"](**kwargs)


def model_class_names(settings: dict[str, Any], dataset_dir: Path) -> list[str]:
    """The classes the model is trained on, in label order (what ``train()`` will use): an explicit
    ``class_names`` override, else the snapshot's train split. Recorded on the run so the Review page
    can map project categories to model outputs without opening the checkpoint. Empty when the
    dataset cannot be read (training then fails with the dataset's own, clearer message)."""
    names = (settings.get("train_overrides") or {}).get("class_names")
    if names:
        return [str(n) for n in names]
    from rfdetr_core.data import DatasetError, load_class_names

    try:
        return load_class_names(dataset_dir)
    except (DatasetError, OSError, ValueError):
        return []


def train_kwargs(settings: dict[str, Any], dataset_dir: Path, output_dir: Path) -> dict[str, Any]:
    """``train()`` arguments for a run's settings (augmentation from the project's Augment page)."""
    kwargs: dict[str, Any] = dict(
        dataset_dir=str(dataset_dir),
        output_dir=str(output_dir),
        epochs=int(settings.get("epochs", 10)),
        batch_size=int(settings.get("batch_size", 2)),
        grad_accum_steps=int(settings.get("grad_accum_steps", 1)),
        lr=float(settings.get("lr", 1e-4)),
        early_stopping=bool(settings.get("early_stopping", False)),
        use_ema=bool(settings.get("use_ema", True)),
        seed=settings.get("seed"),
        tensorboard=False,
        num_workers=int(settings.get("num_workers", min(2, os.cpu_count() or 1))),
        **augment.train_kwargs(settings.get("augment")),
    )
    if settings.get("device"):
        kwargs["device"] = settings["device"]
    kwargs.update(settings.get("train_overrides") or {})
    if settings.get("resume") and (output_dir / LAST_FILE).is_file():
        kwargs["resume"] = str(output_dir / LAST_FILE)
    return kwargs


class RunReporter:
    """Turns :class:`ProgressEvent` s into ``RunMetric`` rows and ``Run`` updates."""

    def __init__(self, store: ProjectStore, run_id: int, output_dir: Path, lr: LearningRate) -> None:
        self.store, self.run_id, self.output_dir, self.lr = store, run_id, output_dir, lr
        self.buffer: list[RunMetric] = []
        self.last_flush = 0.0
        self.progress: dict[str, Any] = {}
        with store.session(readonly=True) as s:
            self.class_ids = {c.name: c.id for c in s.scalars(select(Category))}
            self.best = dict(s.get(Run, run_id).best_metrics or {})

    def __call__(self, event: ProgressEvent) -> None:
        self.progress = {
            "step": event.step,
            "total_steps": event.total_steps,
            "epoch": event.epoch,
            "max_epochs": event.max_epochs,
            "eta_s": event.eta_s,
            "elapsed_s": event.elapsed_s,
            "lr": self.lr.value,
            "updated": time.time(),
        }
        if event.kind == "start":
            self._start(event)
        elif event.kind == "step" and event.loss is not None and math.isfinite(event.loss):
            self.buffer.append(
                RunMetric(
                    run_id=self.run_id,
                    epoch=event.epoch + 1,
                    step=event.step,
                    split="train",
                    name="train/loss_step",
                    value=event.loss,
                )
            )
            if self.lr.value is not None:
                self.buffer.append(
                    RunMetric(
                        run_id=self.run_id,
                        epoch=event.epoch + 1,
                        step=event.step,
                        split="train",
                        name="lr",
                        value=self.lr.value,
                    )
                )
            if time.monotonic() - self.last_flush >= FLUSH_S:
                self.flush()
        elif event.kind == "epoch":
            self._epoch(event)

    def _start(self, event: ProgressEvent) -> None:
        """A resumed run drops what was written after its checkpoint (that part is trained again)."""
        with self.store.session() as s:
            s.execute(delete(RunMetric).where(RunMetric.run_id == self.run_id, RunMetric.epoch > event.epoch))
            s.execute(
                update(Run)
                .where(Run.id == self.run_id)
                .values(
                    status="running", progress=self.progress, epochs_done=event.epoch, heartbeat_at=utcnow()
                )
            )

    def flush(self, **run_values: Any) -> None:
        rows, self.buffer = self.buffer, []
        with self.store.session() as s:
            s.add_all(rows)
            s.execute(update(Run).where(Run.id == self.run_id).values(progress=self.progress, **run_values))
        self.last_flush = time.monotonic()

    def _epoch(self, event: ProgressEvent) -> None:
        """Record a finished epoch. An epoch cut short by a stop is not one: only its steps are kept
        (Lightning still calls the epoch hooks, with the previous validation's numbers)."""
        per_epoch = event.total_steps // max(1, event.max_epochs)
        if per_epoch and event.step < (event.epoch + 1) * per_epoch:
            self.flush(**self.checkpoints())
            return
        epoch = event.epoch + 1
        for key, value in event.metrics.items():
            if key.endswith("_step") or not math.isfinite(value):
                continue
            cls = key.removeprefix("val/AP/") if key.startswith("val/AP/") else None
            self.buffer.append(
                RunMetric(
                    run_id=self.run_id,
                    epoch=epoch,
                    step=event.step,
                    split="valid" if key.startswith("val/") else "train",
                    name=key,
                    value=float(value),
                    category_id=self.class_ids.get(cls) if cls else None,
                )
            )
        values: dict[str, Any] = {"epochs_done": epoch}
        score = event.metrics.get("val/mAP_50_95")
        if score is not None and score >= self.best.get("mAP_50_95", -1.0):
            self.best = {
                k.removeprefix("val/"): v
                for k, v in event.metrics.items()
                if k.startswith("val/") and "/AP/" not in k
            }
            self.best["epoch"] = epoch
            values["best_metrics"] = self.best
        values.update(self.checkpoints())
        self.flush(**values)

    def checkpoints(self) -> dict[str, str]:
        out = {}
        for column, name in (("best_checkpoint", BEST_FILE), ("last_checkpoint", LAST_FILE)):
            if (self.output_dir / name).is_file():
                out[column] = str((self.output_dir / name).relative_to(self.store.path))
        return out


def _heartbeat(project: Path, run_id: int, progress: TrainingProgress, done: threading.Event) -> None:
    """Beat and watch for a stop request, from a thread with its own database connection."""
    store = ProjectStore.open(project)
    try:
        while not done.wait(HEARTBEAT_S):
            with store.session() as s:
                s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))
                if s.scalar(select(Run.stop_requested).where(Run.id == run_id)):
                    progress.request_stop()
    finally:
        store.close()


def run(project: Path, run_id: int) -> str:
    """Train run ``run_id`` of the project at ``project``; returns the final status."""
    store = ProjectStore.open(project)
    with store.session() as s:
        r = s.get(Run, run_id)
        settings, output_dir = dict(r.config), project / (r.output_dir or f"runs/{run_id}/output")
        dataset_dir = project / r.dataset_snapshot["path"]
        r.status, r.pid, r.heartbeat_at, r.error = "running", os.getpid(), utcnow(), None
        r.started_at = r.started_at or utcnow()
        r.class_names = model_class_names(settings, dataset_dir) or list(r.class_names or [])
    lr = LearningRate()
    reporter = RunReporter(store, run_id, output_dir, lr)
    progress = TrainingProgress(reporter, every_n_steps=1)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: progress.request_stop())
    done = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(project, run_id, progress, done), daemon=True)
    beat.start()
    status, error = "completed", None
    try:
        model = build_model(settings)
        model.train(callbacks=[progress, lr], **train_kwargs(settings, dataset_dir, output_dir))
        status = "stopped" if progress.stop_requested else "completed"
    except Exception as exc:
        traceback.print_exc()
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        done.set()
        beat.join(timeout=10)
        reporter.flush(
            status=status, error=error, finished_at=utcnow(), heartbeat_at=utcnow(), **reporter.checkpoints()
        )
        store.close()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train one run of a studio project (started by the studio).")
    parser.add_argument("--project", type=Path, required=True, help="project folder (holds project.db)")
    parser.add_argument("--run", type=int, required=True, help="run id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    status = run(args.project.resolve(), args.run)
    print(f"run {args.run} {status}", flush=True)
    return 0 if status in ("completed", "stopped") else 1


if __name__ == "__main__":
    raise SystemExit(main())
