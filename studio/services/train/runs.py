"""Training runs of a project: dataset snapshot + hash, the trainer process, liveness, listing, deletion.

Why it looks like this:
- Every run trains on a frozen copy of the labels (``runs/<id>/dataset``, COCO Roboflow layout written
  by :func:`export_coco`), and its hash is stored on the run: the same labels give the same hash, so a
  result can always be traced back to the exact data it saw, and later edits never leak into a run.
- Training runs in its own process (``python -m studio.services.train.worker``) in a new session,
  so the UI stays responsive and a browser reload or even an app restart does not stop it. All
  communication goes through the project's SQLite file (WAL): the trainer writes status, progress,
  metrics and a heartbeat; the UI writes ``stop_requested``.
- A process can die without saying so (``kill -9``, power loss). A run that claims to be running is
  checked on every read: its pid must be alive, be our trainer, and have beaten recently; otherwise
  it is marked ``interrupted`` and can be resumed from ``last.ckpt``. The trainer's OS lock on the run
  folder (:mod:`~studio.services.train.runfolder`) is the stronger proof of life: while it is held the
  run is not given up even if a heartbeat is late (a long database lock), and :func:`start_run` refuses
  a second trainer for a locked run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from studio.errors import StudioError
from studio.services.data.dataset_export import export_coco
from studio.services.train import runfolder
from studio.services.train.checkpoints import checkpoint_path
from studio.services.train.defaults import MODEL_SIZES
from studio.services.train.status import ACTIVE, status_label
from studio.store import Image, ProjectStore, Run
from studio.store.models import utcnow

RUNS_DIR = "runs"
REPO_ROOT = Path(__file__).resolve().parents[3]
HEARTBEAT_STALE_S = 90.0  # the trainer beats every few seconds from its own thread
WORKER_MODULE = "studio.services.train.worker"
_children: dict[int, subprocess.Popen] = {}  # trainers this process started (reaped on liveness checks)


def run_dir(store: ProjectStore, run_id: int) -> Path:
    return store.path / RUNS_DIR / str(run_id)


# -- dataset snapshot -----------------------------------------------------------------------------
def dataset_hash(dataset_dir: Path) -> str:
    """sha256 over the annotation files (images are immutable and named by id inside them).

    The json's ``info`` block (which names the project folder) is left out, so a renamed or copied
    project with the same labels has the same hash.
    """
    import json

    digest = hashlib.sha256()
    for path in sorted(Path(dataset_dir).glob("*/_annotations.coco.json")):
        doc = json.loads(path.read_text())
        doc.pop("info", None)
        digest.update(path.parent.name.encode() + b"\0")
        digest.update(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def snapshot_dataset(store: ProjectStore, out_dir: Path) -> dict[str, Any]:
    """Freeze the current labels into ``out_dir``; return ``{"hash", "path", "images": {split: n}}``."""
    with store.session(readonly=True) as s:
        in_train = (Image.split == "train") | Image.split.is_(None)  # unassigned images train too
        n_train = s.scalar(select(Image.id).where(in_train).limit(1))
        n_valid = s.scalar(select(Image.id).where(Image.split == "valid").limit(1))
    if n_valid is None:
        raise StudioError(
            "Training needs validation images: assign some images to 'valid' "
            "(Label tab → automatic split) first."
        )
    if n_train is None:
        raise StudioError("Training needs images in the 'train' split.")
    export_coco(store, out_dir)
    counts = {
        p.parent.name: sum(1 for _ in p.parent.iterdir()) - 1
        for p in sorted(Path(out_dir).glob("*/_annotations.coco.json"))
    }
    out_dir = Path(out_dir).resolve()
    path = (
        out_dir.relative_to(store.path.resolve()) if out_dir.is_relative_to(store.path.resolve()) else out_dir
    )
    return {"hash": dataset_hash(out_dir), "path": str(path), "images": counts}


# -- creating, starting, stopping ------------------------------------------------------------------
def create_run(store: ProjectStore, settings: dict[str, Any], name: str | None = None) -> int:
    """Snapshot the labels and add a ``queued`` run with these settings; returns its id."""
    size = settings.get("model_size", "Nano")
    if size not in MODEL_SIZES:
        raise StudioError(f"Unknown model size {size!r}; choose one of {', '.join(MODEL_SIZES)}.")
    with store.session() as s:
        run = Run(
            name=name or f"{size} run",
            model_size=size,
            status="queued",
            config=dict(settings),
            total_epochs=int(settings.get("epochs", 1)),
        )
        s.add(run)
        s.flush()
        run_id = run.id
    folder = run_dir(store, run_id)
    try:
        snapshot = snapshot_dataset(store, folder / "dataset")
    except BaseException:
        delete_run(store, run_id)
        raise
    with store.session() as s:
        run = s.get(Run, run_id)
        run.dataset_snapshot = snapshot
        run.output_dir = str((folder / "output").relative_to(store.path))
        run.name = name or f"#{run_id} {size} · {snapshot['hash'][:8]}"
    return run_id


def start_run(store: ProjectStore, run_id: int, resume: bool = False) -> int:
    """Launch the trainer process for ``run_id`` (``resume``: continue from its ``last.ckpt``); pid.

    The run folder's trainer lock is taken here and handed to the child (``pass_fds``), so from this
    call on exactly one process holds it: a second start on the same run is refused
    (:class:`~studio.services.train.runfolder.RunLocked`) before anything in the database changes.
    """
    with store.session(readonly=True) as s:
        run = s.get(Run, run_id)
        if run is None:
            raise StudioError(f"Run {run_id} does not exist.")
        if run.status in ACTIVE and run.pid and _alive(run.pid):
            raise StudioError(f"Run {run_id} is already running.")
        if resume and not (store.path / (run.output_dir or "") / "last.ckpt").is_file():
            raise StudioError(f"Run {run_id} has no checkpoint to resume from yet; start a new run.")
    folder = run_dir(store, run_id)
    lock_fd = runfolder.acquire(folder, run_id)
    try:
        with store.session() as s:
            run = s.get(Run, run_id)
            run.status, run.stop_requested, run.error, run.finished_at = "queued", False, None, None
            run.pid, run.config = None, {**run.config, "resume": bool(resume)}
        proc = _spawn(store, run_id, folder, lock_fd)
    finally:
        os.close(lock_fd)  # the child holds its own copy of the descriptor, and with it the lock
    with store.session() as s:
        s.execute(update(Run).where(Run.id == run_id).values(pid=proc.pid, heartbeat_at=utcnow()))
    return proc.pid


def _spawn(store: ProjectStore, run_id: int, folder: Path, lock_fd: int) -> subprocess.Popen:
    """The trainer process, in its own session (survives the app), printing into ``train.log``."""
    cmd = [
        sys.executable,
        "-m",
        WORKER_MODULE,
        "--project",
        str(store.path),
        "--run",
        str(run_id),
        "--lock-fd",
        str(lock_fd),
    ]
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    with open(folder / runfolder.LOG_FILE, "a") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=(lock_fd,),
        )
    _children[proc.pid] = proc
    return proc


def request_stop(store: ProjectStore, run_id: int) -> None:
    """Ask the trainer to stop after the current step (it keeps the best checkpoint and ``last.ckpt``)."""
    with store.session() as s:
        s.execute(update(Run).where(Run.id == run_id).values(stop_requested=True))


# -- liveness ------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    """Is ``pid`` a live (not zombie) trainer process? Reaps our own finished children."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():  # Linux: rule out zombies and a recycled pid running something else
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        return state != "Z" and WORKER_MODULE.encode() in cmdline
    return True


def refresh_liveness(store: ProjectStore) -> list[int]:
    """Mark runs whose trainer died without a word as ``interrupted``; return their ids.

    A run whose folder is locked has a live trainer (the kernel drops the lock when a process dies),
    so it is never given up, even with a late heartbeat; otherwise the pid and the heartbeat decide.
    """
    now = utcnow()
    dead = []
    with store.session(readonly=True) as s:
        active = list(s.execute(select(Run.id, Run.pid, Run.heartbeat_at).where(Run.status.in_(ACTIVE))))
    for run_id, pid, beat in active:
        if runfolder.is_locked(run_dir(store, run_id)):
            continue
        stale = beat is not None and now - _naive(beat) > timedelta(seconds=HEARTBEAT_STALE_S)
        if pid is None or not _alive(pid) or stale:
            dead.append(run_id)
    if dead:
        with store.session() as s:
            s.execute(
                update(Run)
                .where(Run.id.in_(dead), Run.status.in_(ACTIVE))
                .values(
                    status="interrupted",
                    finished_at=now,
                    error="The trainer process ended without reporting (killed or crashed). Resume continues "
                    "from the last saved epoch.",
                )
            )
    return dead


def _naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None) if t.tzinfo else t


# -- reading and deleting --------------------------------------------------------------------------
@dataclass
class RunInfo:
    id: int
    name: str
    model_size: str
    status: str
    settings: dict[str, Any]
    dataset_hash: str
    best_map50_95: float | None
    best_map50: float | None
    epochs_done: int
    total_epochs: int | None
    duration_s: float | None
    created_at: datetime
    error: str | None
    progress: dict[str, Any]
    stop_requested: bool
    has_checkpoint: bool = False  # the best checkpoint file exists (Review / Export / Label offer the run)

    @property
    def status_label(self) -> str:
        """The word people see (:func:`~studio.services.train.status.status_label`)."""
        return status_label(self.status, self.stop_requested, self.has_checkpoint)


def _info(store: ProjectStore, run: Run) -> RunInfo:
    end = run.finished_at or (utcnow() if run.status in ACTIVE else run.heartbeat_at)
    duration = (_naive(end) - _naive(run.started_at)).total_seconds() if run.started_at and end else None
    return RunInfo(
        id=run.id,
        name=run.name,
        model_size=run.model_size,
        status=run.status,
        settings=dict(run.config),
        dataset_hash=str(run.dataset_snapshot.get("hash", "")),
        best_map50_95=run.best_metrics.get("mAP_50_95"),
        best_map50=run.best_metrics.get("mAP_50"),
        epochs_done=run.epochs_done,
        total_epochs=run.total_epochs,
        duration_s=duration,
        created_at=run.created_at,
        error=run.error,
        progress=dict(run.progress or {}),
        stop_requested=bool(run.stop_requested),
        has_checkpoint=bool((path := checkpoint_path(store, run)) and path.is_file()),
    )


def list_runs(store: ProjectStore, check_liveness: bool = True) -> list[RunInfo]:
    """All runs, newest first (after marking dead trainers ``interrupted``)."""
    if check_liveness:
        refresh_liveness(store)
    with store.session(readonly=True) as s:
        return [_info(store, r) for r in s.scalars(select(Run).order_by(Run.id.desc()))]


def get_run(store: ProjectStore, run_id: int) -> RunInfo:
    with store.session(readonly=True) as s:
        run = s.get(Run, run_id)
        if run is None:
            raise StudioError(f"Run {run_id} does not exist.")
        return _info(store, run)


def delete_run(store: ProjectStore, run_id: int) -> None:
    """Delete a run, its metrics and its files. A running run is stopped first (SIGTERM)."""
    with store.session() as s:
        run = s.get(Run, run_id)
        if run is not None and run.status in ACTIVE and run.pid and _alive(run.pid):
            raise StudioError(f"Run {run_id} is still running: stop it first.")
        if run is not None:
            s.delete(run)
    shutil.rmtree(run_dir(store, run_id), ignore_errors=True)


def kill_run(store: ProjectStore, run_id: int) -> None:
    """Send SIGTERM to a run's trainer (it stops cleanly, like a stop request)."""
    info = get_run(store, run_id)
    pid = None
    with store.session(readonly=True) as s:
        pid = s.get(Run, run_id).pid
    if info.status in ACTIVE and pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)


def log_file(store: ProjectStore, run_id: int) -> Path | None:
    """The trainer's full log (everything it printed), for download; ``None`` before it started."""
    path = run_dir(store, run_id) / runfolder.LOG_FILE
    return path if path.is_file() else None


def run_log_tail(store: ProjectStore, run_id: int, lines: int = 40) -> str:
    """The last progress lines the trainer wrote (``progress.log``: the studio's own lines, no library
    noise); the raw log only for a run started before progress lines existed."""
    folder = run_dir(store, run_id)
    path = folder / runfolder.PROGRESS_FILE
    if not path.is_file():
        path = folder / runfolder.LOG_FILE
    if not path.is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64_000))
        text = fh.read().decode("utf-8", "replace")
    text = text.replace("\r", "\n")
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


# -- settings the Train page remembers, and the pretrained-weights check ----------------------------
TRAIN_SETTINGS_KEY = "train"


def load_train_settings(store: ProjectStore) -> dict[str, Any] | None:
    """The settings of the last run started from the Train page (``None``: never trained)."""
    return (store.project().settings or {}).get(TRAIN_SETTINGS_KEY)


def save_train_settings(store: ProjectStore, settings: dict[str, Any]) -> None:
    from studio.store import Project

    with store.session() as s:
        project = s.scalars(select(Project)).one()
        project.settings = {**(project.settings or {}), TRAIN_SETTINGS_KEY: dict(settings)}


def check_pretrained(settings: dict[str, Any], timeout_s: float = 3.0) -> str:
    """Fail early, with a message naming the file, when the chosen weights cannot be had.

    Official weights already in the cache are fine; otherwise the download server must answer (the
    trainer then downloads with progress in its log). Returns a short description of the source.
    """
    import socket
    from urllib.parse import urlparse

    from rfdetr_core.variants import MODEL_CLASSES
    from rfdetr_core.weights import asset_for, model_cache_dir

    source = settings.get("pretrained", "official")
    if source == "scratch":
        return "from scratch (random weights)"
    if source == "local":
        path = Path(str(settings.get("weights_path") or "")).expanduser()
        if not path.is_file():
            raise StudioError(f"Local weights file not found: '{path}'. Pick an existing .pth file.")
        return f"local file {path}"
    name = MODEL_CLASSES[f"RFDETR{settings.get('model_size', 'Nano')}"]._model_config_class().pretrain_weights
    cached = model_cache_dir() / str(name)
    if cached.is_file():
        return f"official {name} (cached)"
    asset = asset_for(str(name))
    url = urlparse(asset.url) if asset else None
    try:
        if url is None or not url.hostname:
            raise OSError("no download address")
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s).close()
    except OSError as exc:
        raise StudioError(
            f"Cannot download the official pretrained weights '{name}' ({exc}); this machine looks offline. "
            f"Copy the file to {cached}, or choose 'local file' with a .pth you have, or 'from scratch'."
        ) from None
    return f"official {name} (will be downloaded)"


OVERRIDES_ENV = "STUDIO_RUN_OVERRIDES"


def hidden_overrides() -> dict[str, Any]:
    """``model_overrides`` / ``train_overrides`` for every run started from the UI, from ``$STUDIO_RUN_OVERRIDES``.

    Not on the page on purpose: it exists so tests and benchmarks can drive the real UI with a tiny
    network (e.g. ``{"model_overrides": {"dec_layers": 1, "num_queries": 20}}``).
    """
    import json

    raw = os.environ.get(OVERRIDES_ENV, "").strip()
    if not raw:
        return {}
    value = json.loads(raw)
    return {k: value[k] for k in ("model_overrides", "train_overrides", "num_workers") if k in value}
