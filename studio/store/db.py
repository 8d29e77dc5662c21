"""``ProjectStore``: one project folder = ``project.db`` (SQLite, WAL) + ``images/`` + runs/exports.

Why it looks like this:
- WAL lets the UI read while a training process writes metrics; ``busy_timeout`` makes writers queue
  instead of failing; foreign keys are off by default in SQLite and must be turned on per connection.
- Write transactions start with ``BEGIN IMMEDIATE``: a deferred transaction that reads then writes can
  hit ``SQLITE_BUSY`` on the lock upgrade, which the busy handler cannot retry. Taking the write lock
  up front makes two processes writing the same project queue cleanly instead of losing a transaction.
- Image files are named by content hash, so the same picture is stored once and the folder can be
  moved (paths in the DB are relative). Files written during a transaction are remembered on the
  session and removed if it rolls back, so an aborted import leaves no stray files.
- An import copies its images *before* its transaction (so the write lock is held only briefly); a
  ``kill -9`` in between leaves files no row references. :meth:`ProjectStore.import_guard` journals
  the copying and holds a shared lock on ``.import.lock`` while it runs; :meth:`ProjectStore.open`
  sees a journal whose import is gone and removes its orphans (:meth:`clean_orphan_files`).
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; orphan cleaning is then skipped (never unsafe)
    fcntl = None  # type: ignore[assignment]

from PIL import Image as PILImage
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session

from studio.store.migrations import LATEST_VERSION, current_version, migrate
from studio.store.models import Image, Project

DB_NAME = "project.db"
IMAGES_DIR = "images"
BUSY_TIMEOUT_MS = 30_000
IMPORT_LOCK = ".import.lock"
JOURNAL_DIR = ".imports"
ORPHAN_SAFE_AGE_S = 3600  # an unreferenced image no journal names is removed only once this old
_FORMAT_SUFFIX = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "BMP": ".bmp",
    "WEBP": ".webp",
    "TIFF": ".tif",
    "GIF": ".gif",
}


class StoreError(Exception):
    """A project folder that cannot be created or opened (message is meant for the user)."""


def _make_engine(db_path: Path, busy_timeout_ms: int) -> Engine:
    engine = create_engine(f"sqlite:///{db_path}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        readonly = conn.get_execution_options().get("studio_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


class _Journal(list):
    """The files an import wrote: kept in memory (for its own rollback) and appended to a journal file
    as they are written, so that after a ``kill -9`` the next open knows which files to check."""

    def __init__(self, file: IO[str]) -> None:
        super().__init__()
        self._file = file
        self._mutex = threading.Lock()  # images are copied by a thread pool

    def append(self, path: str) -> None:
        with self._mutex:
            super().append(path)
            self._file.write(path + "\n")
            self._file.flush()


def _flock(path: Path, exclusive: bool, blocking: bool) -> IO[bytes] | None:
    """An advisory lock on ``path`` (held until the returned file is closed), or None when it is
    taken (non-blocking) or the platform has no ``fcntl``. The OS drops it when the process dies."""
    if fcntl is None:
        return None
    f = open(path, "ab")
    flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
    try:
        fcntl.flock(f.fileno(), flags)
    except OSError:
        f.close()
        return None
    return f


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ProjectStore:
    """Handle on one project folder. Cheap to create; call :meth:`close` when done."""

    def __init__(self, project_dir: Path, engine: Engine) -> None:
        self.path = Path(project_dir)
        self.engine = engine
        self._readonly_engine = engine.execution_options(studio_readonly=True)

    # -- lifecycle ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, project_dir: Path, name: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> ProjectStore:
        """Create the folder, the database (migrated to the latest schema) and the project row."""
        project_dir = Path(project_dir)
        if (project_dir / DB_NAME).exists():
            raise StoreError(f"A project already exists in {project_dir}.")
        (project_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        store = cls._connect(project_dir, busy_timeout_ms)
        with store.session() as s:
            s.add(Project(name=name, settings={}))
        return store

    @classmethod
    def open(cls, project_dir: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> ProjectStore:
        """Open an existing project, upgrading its schema if it was written by an older version."""
        project_dir = Path(project_dir)
        if not (project_dir / DB_NAME).is_file():
            raise StoreError(f"No project database found in {project_dir}.")
        (project_dir / IMAGES_DIR).mkdir(exist_ok=True)
        store = cls._connect(project_dir, busy_timeout_ms)
        store.clean_orphan_files()
        return store

    @classmethod
    def _connect(cls, project_dir: Path, busy_timeout_ms: int) -> ProjectStore:
        engine = _make_engine(project_dir / DB_NAME, busy_timeout_ms)
        # Check the version under a plain read first: opening an up-to-date project (the Projects list
        # does it for every project) must not queue behind a trainer that holds the write lock.
        with engine.execution_options(studio_readonly=True).begin() as conn:
            up_to_date = current_version(conn) == LATEST_VERSION
        if not up_to_date:
            with engine.begin() as conn:
                migrate(conn)
        return cls(project_dir, engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ProjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paths -------------------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.path / DB_NAME

    @property
    def images_dir(self) -> Path:
        return self.path / IMAGES_DIR

    def image_path(self, image: Image) -> Path:
        """Absolute path of an image's file (``file_name`` is relative to the project folder)."""
        return self.path / image.file_name

    # -- transactions ------------------------------------------------------------------------------
    @contextmanager
    def session(self, readonly: bool = False) -> Iterator[Session]:
        """One transaction: commits on success; on error rolls back and deletes files it wrote.

        ``readonly=True`` starts a deferred transaction (does not queue behind writers).
        Objects stay usable after the block (``expire_on_commit=False``).
        """
        bind = self._readonly_engine if readonly else self.engine
        with Session(bind, expire_on_commit=False) as s:
            s.info["new_files"] = []
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                for p in s.info["new_files"]:
                    Path(p).unlink(missing_ok=True)
                raise

    # -- imports and orphaned files ------------------------------------------------------------------
    @contextmanager
    def import_guard(self) -> Iterator[list[str]]:
        """Journal the image files an import writes before its transaction (see the module docstring).

        Yields the list to pass to :meth:`write_image_bytes`. While the block runs, a shared lock tells
        :meth:`clean_orphan_files` (in any process) that these files are about to be committed.
        """
        lock = _flock(self.path / IMPORT_LOCK, exclusive=False, blocking=True)
        journal_dir = self.path / JOURNAL_DIR
        journal_dir.mkdir(exist_ok=True)
        path = journal_dir / f"{os.getpid()}-{uuid.uuid4().hex}.journal"
        try:
            with open(path, "w", encoding="utf-8") as f:
                yield _Journal(f)
        finally:
            path.unlink(missing_ok=True)
            if lock is not None:
                lock.close()

    def clean_orphan_files(self) -> list[str]:
        """Remove image files a killed import left behind; returns their paths (relative).

        Runs only when a journal is left over, and only when no import holds the import lock and no
        writer holds the database (so no file can be one that is about to be committed). Then a file no
        row references is deleted if a journal names it or it is a temp file, or else once it is older
        than ``ORPHAN_SAFE_AGE_S`` (it was not written by a journaled import). Never raises: a project
        that cannot be cleaned now is cleaned on a later open.
        """
        journal_dir = self.path / JOURNAL_DIR
        try:
            journals = sorted(journal_dir.glob("*.journal"))
        except OSError:
            return []
        if not journals:
            return []
        try:
            lock = _flock(self.path / IMPORT_LOCK, exclusive=True, blocking=False)
            if lock is None:
                return []
            with lock:
                return self._clean_locked(journals)
        except (OSError, sqlite3.Error):
            return []

    def _clean_locked(self, journals: list[Path]) -> list[str]:
        listed: set[str] = set()
        for j in journals:
            listed.update(
                Path(line).name for line in j.read_text(encoding="utf-8", errors="replace").split("\n")
            )
        conn = sqlite3.connect(self.db_path, timeout=1.0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")  # no other writer is mid-transaction while we look
            referenced = {Path(n).name for (n,) in conn.execute("SELECT file_name FROM image")}
            removed = self._remove_unreferenced(referenced, listed)
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        for j in journals:
            j.unlink(missing_ok=True)
        return removed

    def _remove_unreferenced(self, referenced: set[str], listed: set[str]) -> list[str]:
        removed, old = [], time.time() - ORPHAN_SAFE_AGE_S
        for entry in os.scandir(self.images_dir):
            if entry.name in referenced or not entry.is_file(follow_symlinks=False):
                continue
            if entry.name in listed or entry.name.startswith(".tmp-") or entry.stat().st_mtime < old:
                os.unlink(entry.path)
                removed.append(f"{IMAGES_DIR}/{entry.name}")
        return removed

    def project(self) -> Project:
        with self.session(readonly=True) as s:
            return s.scalars(select(Project).limit(1)).one()

    # -- image files -------------------------------------------------------------------------------
    def write_image_bytes(self, data: bytes, sha256: str, suffix: str, new_files: list[str]) -> str:
        """Store ``data`` under its hash; return the path relative to the project folder.

        The file is written to a temp name and renamed, so a crash never leaves a half file under a
        valid name. Files this call created are appended to ``new_files`` (the caller deletes them if
        its transaction fails; :meth:`session` does that for ``session.info["new_files"]``).
        """
        rel = f"{IMAGES_DIR}/{sha256[:32]}{suffix.lower()}"
        dest = self.path / rel
        if not dest.exists():
            self.images_dir.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.images_dir, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            new_files.append(str(dest))
        return rel

    def add_image_file(
        self,
        src_path: Path,
        session: Session,
        *,
        split: str | None = None,
        original_name: str | None = None,
        status: str = "unlabeled",
    ) -> Image:
        """Copy one image into the project (or return the existing row with the same content)."""
        data = Path(src_path).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        existing = session.scalars(select(Image).where(Image.content_hash == sha)).first()
        if existing is not None:
            return existing
        with PILImage.open(io.BytesIO(data)) as im:
            width, height = im.size
            suffix = _FORMAT_SUFFIX.get(im.format or "", Path(src_path).suffix or ".img")
        rel = self.write_image_bytes(data, sha, suffix, session.info.setdefault("new_files", []))
        image = Image(
            file_name=rel,
            original_name=original_name or Path(src_path).name,
            width=width,
            height=height,
            split=split,
            content_hash=sha,
            status=status,
        )
        session.add(image)
        session.flush()
        return image


__all__ = ["DB_NAME", "IMAGES_DIR", "ProjectStore", "StoreError", "file_sha256"]
