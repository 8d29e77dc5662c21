"""The training process: ``python -m studio.services.train.worker --project DIR --run ID``.

It reads the run's settings from the project database, builds the model, calls the core's
``train()`` on the run's frozen dataset and reports through the same database:

- step losses and the learning rate are buffered and written at most once a second, epoch metrics
  (``val/mAP_50``, ``val/F1``, ``val/AP/<class>`` ...) as soon as each epoch's validation is done; each
  write is one short transaction, so the UI (reading under WAL) is never blocked for long;
- a heartbeat thread stamps ``heartbeat_at`` every few seconds and watches ``stop_requested``; a stop
  request, SIGTERM or SIGINT all call ``TrainingProgress.request_stop()``, which ends the run after
  the current step with its best checkpoint and ``last.ckpt`` written;
- the database can be locked by another writer for longer than the busy timeout (a long label save, a
  tool holding ``BEGIN IMMEDIATE``). No write may kill the process or the heartbeat thread: a failed
  write is logged and retried with backoff, and metrics wait in the buffer until the next flush;
- the process holds the run folder's trainer lock (:mod:`~studio.services.train.runfolder`) for its
  whole life, handed over by :func:`~studio.services.train.runs.start_run` (``--lock-fd``) or taken
  here; a second trainer for the same run exits at once without touching the run's row;
- our own progress lines (start, each epoch, stop, the end) go to ``progress.log`` as well as the full
  log, so the page shows them without the libraries' noise;
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from sqlalchemy import delete, select, update
from sqlalchemy.exc import OperationalError

from rfdetr_core.training.callbacks import ProgressEvent, TrainingProgress
from studio.errors import StudioError
from studio.services.train import augment, runfolder
from studio.store import Category, ProjectStore, Run, RunMetric
from studio.store.models import utcnow
from studio.text import clip

HEARTBEAT_S = 3.0
FLUSH_S = 1.0
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 10.0  # backoff between attempts of a write the database refused
FINAL_ATTEMPTS = 30  # the final status is worth waiting for (each attempt waits the busy timeout too)
EXIT_LOCKED = 3  # another trainer holds the run
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
    from rfdetr_core.variants import MODEL_CLASSES

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
    return MODEL_CLASSES[f"RFDETR{settings.get('model_size', 'Nano')}"](**kwargs)


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


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): doubling, capped."""
    return min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (attempt - 1))


def retrying(write: Callable[[], None], what: str, attempts: int = FINAL_ATTEMPTS) -> bool:
    """Run ``write`` until the database accepts it (at most ``attempts`` times); did it succeed?"""
    for attempt in range(1, attempts + 1):
        try:
            write()
            return True
        except OperationalError as exc:
            log.warning("%s: database busy (%s); attempt %d/%d", what, exc.orig, attempt, attempts)
            time.sleep(backoff(attempt))
    log.error("%s: gave up after %d attempts", what, attempts)
    return False


class RunReporter:
    """Turns :class:`ProgressEvent` s into ``RunMetric`` rows and ``Run`` updates."""

    def __init__(self, store: ProjectStore, run_id: int, output_dir: Path, lr: LearningRate) -> None:
        self.store, self.run_id, self.output_dir, self.lr = store, run_id, output_dir, lr
        self.buffer: list[RunMetric] = []
        self.pending: dict[str, Any] = {}  # run columns a refused flush still owes the database
        self.last_loss: float | None = None
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
            self.last_loss = event.loss
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

        def write() -> None:
            with self.store.session() as s:
                s.execute(
                    delete(RunMetric).where(RunMetric.run_id == self.run_id, RunMetric.epoch > event.epoch)
                )
                s.execute(
                    update(Run)
                    .where(Run.id == self.run_id)
                    .values(
                        status="running",
                        progress=self.progress,
                        epochs_done=event.epoch,
                        heartbeat_at=utcnow(),
                    )
                )

        retrying(write, "recording the start")
        log.info("training: %d epoch(s), %d step(s) in all", event.max_epochs, event.total_steps)

    def flush(self, **run_values: Any) -> bool:
        """Write the buffered metrics and ``run_values``; a busy database keeps them for the next flush
        (training goes on) instead of raising into the training loop. Did the write succeed?"""
        rows, self.buffer = self.buffer, []
        values = {**self.pending, **run_values, "progress": self.progress}
        self.last_flush = time.monotonic()
        try:
            with self.store.session() as s:
                s.add_all(rows)
                s.execute(update(Run).where(Run.id == self.run_id).values(**values))
        except OperationalError as exc:
            log.warning("metrics kept for the next write: database busy (%s)", exc.orig)
            self.buffer = [_copy(r) for r in rows] + self.buffer
            self.pending = {k: v for k, v in values.items() if k != "progress"}
            return False
        self.pending = {}
        return True

    def finish(self, **run_values: Any) -> None:
        """The final write (status, error, checkpoints): retried until the database takes it."""
        retrying(lambda: _raise_unless(self.flush(**run_values)), "writing the final status")

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
        loss = self.last_loss
        log.info(
            "epoch %d/%d done: mAP@50:95 %s, mAP@50 %s%s",
            epoch,
            event.max_epochs,
            _num(event.metrics.get("val/mAP_50_95")),
            _num(event.metrics.get("val/mAP_50")),
            "" if loss is None else f", loss {loss:.4f}",
        )

    def checkpoints(self) -> dict[str, str]:
        out = {}
        for column, name in (("best_checkpoint", BEST_FILE), ("last_checkpoint", LAST_FILE)):
            if (self.output_dir / name).is_file():
                out[column] = str((self.output_dir / name).relative_to(self.store.path))
        return out


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _copy(row: RunMetric) -> RunMetric:
    """A fresh, unattached copy of a metric row whose insert was rolled back."""
    return RunMetric(
        run_id=row.run_id,
        epoch=row.epoch,
        step=row.step,
        split=row.split,
        name=row.name,
        value=row.value,
        category_id=row.category_id,
    )


def _raise_unless(ok: bool) -> None:
    if not ok:
        raise OperationalError("final flush", {}, Exception("database busy"))


class Heartbeat(threading.Thread):
    """Beats and watches for a stop request, from its own thread and database connection.

    It must outlive any database trouble: a beat the database refuses (locked longer than the busy
    timeout) or any other error is logged and retried with backoff; the thread only ends when told.
    """

    def __init__(self, project: Path, run_id: int, progress: TrainingProgress) -> None:
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.project, self.run_id, self.progress = project, run_id, progress
        self.done = threading.Event()
        self.beats = self.failures = 0

    def beat(self, store: ProjectStore) -> None:
        with store.session() as s:
            s.execute(update(Run).where(Run.id == self.run_id).values(heartbeat_at=utcnow()))
            if s.scalar(select(Run.stop_requested).where(Run.id == self.run_id)):
                log.info("stop requested: ending after the current step")
                self.progress.request_stop()
        self.beats += 1

    def run(self) -> None:
        store, delay, failed = None, HEARTBEAT_S, 0
        while not self.done.wait(delay):
            try:
                store = store or ProjectStore.open(self.project)
                self.beat(store)
                if failed:
                    log.info("heartbeat back after %d failed attempt(s)", failed)
                delay, failed = HEARTBEAT_S, 0
            except Exception as exc:  # never die: a dead heartbeat makes a live run look interrupted
                failed += 1
                self.failures += 1
                delay = backoff(failed)
                detail = exc.orig if isinstance(exc, OperationalError) else traceback.format_exc()
                log.warning("heartbeat failed (%s); retrying in %.1f s", detail, delay)
        if store is not None:
            store.close()

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)


def _mark_running(store: ProjectStore, run_id: int) -> tuple[dict[str, Any], Path, Path]:
    """Claim the run (status, pid, start time, class names); its settings, output and dataset dirs."""
    project, out = store.path, {}

    def write() -> None:
        with store.session() as s:
            r = s.get(Run, run_id)
            settings, output_dir = dict(r.config), project / (r.output_dir or f"runs/{run_id}/output")
            dataset_dir = project / r.dataset_snapshot["path"]
            r.status, r.pid, r.heartbeat_at, r.error = "running", os.getpid(), utcnow(), None
            r.started_at = r.started_at or utcnow()
            r.class_names = model_class_names(settings, dataset_dir) or list(r.class_names or [])
            out.update(settings=settings, output_dir=output_dir, dataset_dir=dataset_dir)

    if not retrying(write, "claiming the run"):
        raise StudioError(f"Run {run_id}: the project database stayed locked; the run did not start.")
    return out["settings"], out["output_dir"], out["dataset_dir"]


def _progress_log(folder: Path) -> logging.Handler:
    """Our own progress lines, also into ``progress.log`` (what the Train page's log box shows)."""
    handler = logging.FileHandler(folder / runfolder.PROGRESS_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.setLevel(logging.INFO)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def run(project: Path, run_id: int, lock_fd: int | None = None) -> str:
    """Train run ``run_id`` of the project at ``project``; returns the final status.

    ``lock_fd``: the run's trainer lock handed over by ``start_run``; without it the lock is taken
    here (:class:`~studio.services.train.runfolder.RunLocked` when another trainer holds it).
    """
    folder = project / "runs" / str(run_id)
    if lock_fd is None:
        lock_fd = runfolder.acquire(folder, run_id)
    else:
        runfolder.hold(lock_fd, run_id)
    handler = _progress_log(folder)
    store = ProjectStore.open(project)
    try:
        return _train(store, run_id)
    finally:
        store.close()
        log.removeHandler(handler)
        handler.close()
        os.close(lock_fd)


def _train(store: ProjectStore, run_id: int) -> str:
    settings, output_dir, dataset_dir = _mark_running(store, run_id)
    log.info(
        "run %d: %s at %s px, %s epoch(s), batch %s, start from %s",
        run_id,
        settings.get("model_size"),
        settings.get("resolution"),
        settings.get("epochs"),
        settings.get("batch_size"),
        settings.get("pretrained"),
    )
    lr = LearningRate()
    reporter = RunReporter(store, run_id, output_dir, lr)
    progress = TrainingProgress(reporter, every_n_steps=1)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: progress.request_stop())
    beat = Heartbeat(store.path, run_id, progress)
    beat.start()
    # What a SIGTERM leaves: Lightning turns it into SIGTERMException (a SystemExit, not an Exception),
    # which passes the handler below; the run was stopped from outside, not completed.
    status, error = "stopped", None
    try:
        model = build_model(settings)
        model.train(callbacks=[progress, lr], **train_kwargs(settings, dataset_dir, output_dir))
        status = "stopped" if progress.stop_requested else "completed"
    except Exception as exc:
        traceback.print_exc()
        status, error = "failed", clip(f"{type(exc).__name__}: {exc}")
        log.error("failed: %s", error)
    finally:
        beat.stop()
        log.info("run %d %s", run_id, status)  # before the status: a page that sees it finds the line
        reporter.finish(
            status=status, error=error, finished_at=utcnow(), heartbeat_at=utcnow(), **reporter.checkpoints()
        )
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train one run of a studio project (started by the studio).")
    parser.add_argument("--project", type=Path, required=True, help="project folder (holds project.db)")
    parser.add_argument("--run", type=int, required=True, help="run id")
    parser.add_argument("--lock-fd", type=int, default=None, help="the run's trainer lock, inherited")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        status = run(args.project.resolve(), args.run, args.lock_fd)
    except runfolder.RunLocked as exc:
        print(exc, flush=True)
        return EXIT_LOCKED
    print(f"run {args.run} {status}", flush=True)
    return 0 if status in ("completed", "stopped") else 1


if __name__ == "__main__":
    raise SystemExit(main())
