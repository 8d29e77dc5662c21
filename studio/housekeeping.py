"""Temporary files of a running studio: Gradio's upload/cache folder and the Data page's export zips.

Why: Gradio keeps every upload (a dataset zip can be gigabytes) and every file it served in its cache
for the life of the process, and the Data page writes a fresh zip per export; nothing removed them while
the app ran, and a crash left them for good. The studio therefore keeps its temporary files in a folder
of its own (:func:`temp_root`, unless ``GRADIO_TEMP_DIR`` is set by the user, which is then left alone),
and :class:`Janitor` prunes it on start and every :data:`INTERVAL_S`: entries older than
``max_age_s`` go, then the oldest until the total is under ``max_total_bytes``. Anything younger than
``min_age_s`` is never touched (an upload or an export still being written, a file a page shows now).
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

INTERVAL_S = 3600.0  # how often a running studio prunes its temporary folders


@dataclass(frozen=True)
class CleanupPolicy:
    max_age_s: float = 24 * 3600.0
    max_total_bytes: int = 10 * 2**30
    min_age_s: float = 3600.0


@dataclass(frozen=True)
class CleanupReport:
    removed: int
    freed_bytes: int
    kept: int
    kept_bytes: int


def temp_root() -> Path:
    """The studio's own temporary folder, one per user: ``<system temp>/rfdetr-studio-<user>``."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name (some containers): the uid still separates users
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", user)[:64] or "user"
    return Path(tempfile.gettempdir()) / f"rfdetr-studio-{safe}"


def gradio_temp_dir() -> Path:
    """Where Gradio keeps uploads and served files (``GRADIO_TEMP_DIR``) when the studio chooses."""
    return temp_root() / "gradio"


def export_temp_dir() -> Path:
    """Where the Data page writes its export zips (one ``mkdtemp`` folder per export), created on use."""
    path = temp_root() / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _entry_stats(entry: Path) -> tuple[float, int]:
    """(newest modification time, total bytes) of a file or a folder tree; links are not followed."""
    st = entry.lstat()
    if not stat.S_ISDIR(st.st_mode):
        return st.st_mtime, st.st_size
    newest, size = st.st_mtime, 0
    for dirpath, dirnames, filenames in os.walk(entry):
        for name in dirnames + filenames:
            try:
                s = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue  # removed meanwhile
            newest = max(newest, s.st_mtime)
            size += 0 if stat.S_ISDIR(s.st_mode) else s.st_size
    return newest, size


def _remove(entry: Path) -> bool:
    try:
        if stat.S_ISDIR(entry.lstat().st_mode):
            shutil.rmtree(entry)
        else:
            entry.unlink()
        return True
    except OSError as exc:  # in use on some systems, permissions: try again next round
        log.warning("could not remove temporary %s: %s", entry, exc)
        return False


def clean_temp_dir(
    folder: Path, policy: CleanupPolicy = CleanupPolicy(), now: float | None = None
) -> CleanupReport:
    """Prune the top-level entries of ``folder`` (each an upload, a cached file or an export) by age/size."""
    now = time.time() if now is None else now
    if not folder.is_dir():
        return CleanupReport(0, 0, 0, 0)
    entries = []
    for entry in folder.iterdir():
        try:
            entries.append((*_entry_stats(entry), entry))
        except OSError:
            continue
    entries.sort(key=lambda e: e[0])  # oldest first
    total = sum(size for _, size, _ in entries)
    removed = freed = 0
    for newest, size, entry in entries:
        age = now - newest
        if age < policy.min_age_s:
            continue
        if (age > policy.max_age_s or total > policy.max_total_bytes) and _remove(entry):
            removed, freed, total = removed + 1, freed + size, total - size
    return CleanupReport(removed, freed, len(entries) - removed, total)


class Janitor:
    """Prunes ``folders`` now and then every ``interval_s`` in a daemon thread, until :meth:`stop`."""

    def __init__(
        self, folders: Iterable[Path], policy: CleanupPolicy = CleanupPolicy(), interval_s: float = INTERVAL_S
    ) -> None:
        self.folders, self.policy, self.interval_s = list(folders), policy, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[CleanupReport]:
        reports = []
        for folder in self.folders:
            try:
                reports.append(clean_temp_dir(folder, self.policy))
            except Exception:  # a cleaning problem must never take the app down
                log.exception("cleaning temporary folder %s failed", folder)
        return reports

    def start(self) -> Janitor:
        self.run_once()
        self._thread = threading.Thread(target=self._loop, name="studio-janitor", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.run_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
