"""What lives in a run folder besides the dataset and the checkpoints: the trainer lock and the logs.

Why an OS lock: the database can only say that a trainer *was* alive at its last heartbeat. A heartbeat
that is late (a long write lock held by another process) must never let a second trainer start on the
same output folder. ``fcntl.flock`` on ``trainer.lock`` is held by the trainer process for its whole life
and released by the kernel when it exits, however it exits (even ``kill -9``), so "locked" means "a
trainer is working on this run" with no race and no stale state.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from studio.errors import StudioError

LOCK_FILE = "trainer.lock"
LOG_FILE = "train.log"  # everything the trainer process prints (Lightning included): the download
PROGRESS_FILE = "progress.log"  # only the studio's own progress lines: what the page shows


class RunLocked(StudioError):
    """Another trainer process holds the run folder."""


def acquire(folder: Path, run_id: int) -> int:
    """Take the run's trainer lock; return its file descriptor (kept open as long as it is held).

    Raises :class:`RunLocked` at once (no waiting) when another process holds it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLocked(
            f"Run {run_id} is already being trained by another trainer process; only one trainer can "
            "work on a run. Wait for it to finish or stop it first."
        ) from None
    return fd


def hold(fd: int, run_id: int) -> None:
    """Confirm that an inherited descriptor still holds the lock (re-locking one's own lock succeeds)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, OSError):
        raise RunLocked(f"Run {run_id}: the trainer lock handed to this process is not held.") from None


def is_locked(folder: Path) -> bool:
    """Does some process hold the run's trainer lock right now?"""
    path = folder / LOCK_FILE
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the probe's own shared lock
    return False
