"""Project store on real SQLite files: migrations, pragmas, image dedup, transactions, locking,
concurrent writers in two processes, and the projects service."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import Connection, create_engine, delete, func, inspect, select, update
from sqlalchemy.orm.exc import StaleDataError

from studio.errors import StudioError
from studio.services.projects import catalog as proj
from studio.store import Annotation, Base, Category, Image, ProjectStore, Run, RunMetric, StoreError
from studio.store.migrations import LATEST_VERSION, MIGRATIONS, Migration, current_version, migrate

REPO = Path(__file__).resolve().parents[2]


def _png(path: Path, colour=(200, 10, 10), size=(40, 30)) -> Path:
    PILImage.new("RGB", size, colour).save(path)
    return path


@pytest.fixture()
def store(tmp_path: Path):
    st = ProjectStore.create(tmp_path / "proj", "Proj")
    yield st
    st.close()


def test_migrations_from_empty_file_match_models(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "project.db").write_bytes(b"")  # an empty file is a valid, empty SQLite db
    st = ProjectStore.open(tmp_path / "p")
    with st.engine.connect() as conn:
        assert current_version(conn) == LATEST_VERSION
        insp = inspect(conn)
        assert set(insp.get_table_names()) == set(Base.metadata.tables) | {"schema_version"}
        for name, table in Base.metadata.tables.items():
            cols = {c["name"]: c for c in insp.get_columns(name)}
            assert set(cols) == set(table.columns.keys()), name
            for col in table.columns:
                assert cols[col.name]["nullable"] == col.nullable, (name, col.name)
            assert {i["name"] for i in insp.get_indexes(name)} == {i.name for i in table.indexes}, name
            fks = {
                (f["referred_table"], tuple(f["constrained_columns"])) for f in insp.get_foreign_keys(name)
            }
            assert fks == {(f.column.table.name, (f.parent.name,)) for f in table.foreign_keys}, name
            uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints(name)}
            assert uniques == {(c.name,) for c in table.columns if c.unique}, name
            checks = {c["name"] for c in insp.get_check_constraints(name)}
            assert checks == {
                c.name for c in table.constraints if c.__class__.__name__ == "CheckConstraint"
            }, name
    st.close()


def test_migrate_applies_new_steps_once_and_refuses_newer_schema(store: ProjectStore) -> None:
    def add_column(conn: Connection) -> None:
        conn.exec_driver_sql("ALTER TABLE image ADD COLUMN note TEXT")

    steps = (*MIGRATIONS, Migration(LATEST_VERSION + 1, "add note", add_column))
    with store.engine.begin() as conn:
        assert migrate(conn, steps) == [LATEST_VERSION + 1]
    with store.engine.begin() as conn:
        assert migrate(conn, steps) == []
        assert "note" in {c["name"] for c in inspect(conn).get_columns("image")}
    with pytest.raises(RuntimeError, match="newer RF-DETR Studio"), store.engine.begin() as conn:
        migrate(conn, MIGRATIONS)


def test_failed_migration_leaves_previous_version(store: ProjectStore) -> None:
    def broken(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE half_done (id INTEGER)")
        conn.exec_driver_sql("THIS IS NOT SQL")

    with pytest.raises(Exception, match="syntax error"), store.engine.begin() as conn:
        migrate(conn, (*MIGRATIONS, Migration(LATEST_VERSION + 1, "broken", broken)))
    with store.engine.connect() as conn:
        assert current_version(conn) == LATEST_VERSION
        assert "half_done" not in inspect(conn).get_table_names()


def test_pragmas_wal_foreign_keys_busy_timeout(store: ProjectStore) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    with pytest.raises(Exception, match="FOREIGN KEY"), store.session() as s:
        s.add(Annotation(image_id=999, category_id=999, x=0, y=0, w=1, h=1))


def test_create_refuses_existing_and_open_refuses_missing(tmp_path: Path, store: ProjectStore) -> None:
    with pytest.raises(StoreError, match="already exists"):
        ProjectStore.create(store.path, "again")
    with pytest.raises(StoreError, match="No project database"):
        ProjectStore.open(tmp_path / "nothing")


def test_add_image_file_copies_and_dedups_by_content(store: ProjectStore, tmp_path: Path) -> None:
    a = _png(tmp_path / "a.png")
    b = tmp_path / "b.png"
    shutil.copyfile(a, b)
    with store.session() as s:
        im1 = store.add_image_file(a, s, split="train")
        im2 = store.add_image_file(b, s, split="valid")
    assert im1.id == im2.id and im1.original_name == "a.png"
    assert (im1.width, im1.height) == (40, 30)
    assert store.image_path(im1).read_bytes() == a.read_bytes()
    assert len(list(store.images_dir.iterdir())) == 1


def test_rollback_removes_copied_files_and_rows(store: ProjectStore, tmp_path: Path) -> None:
    src = _png(tmp_path / "c.png", (1, 2, 3))
    with pytest.raises(RuntimeError), store.session() as s:
        store.add_image_file(src, s)
        raise RuntimeError("user action failed")
    assert list(store.images_dir.iterdir()) == []
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count(Image.id))) == 0


def _one_box(store: ProjectStore, tmp_path: Path) -> int:
    with store.session() as s:
        im = store.add_image_file(_png(tmp_path / "d.png", (9, 9, 9)), s)
        cat = Category(name="thing")
        s.add(cat)
        s.flush()
        ann = Annotation(image_id=im.id, category_id=cat.id, x=1, y=1, w=5, h=5)
        s.add(ann)
    return ann.id


def test_optimistic_locking_detects_concurrent_edit(store: ProjectStore, tmp_path: Path) -> None:
    ann_id = _one_box(store, tmp_path)
    with store.session() as s1:
        stale = s1.get(Annotation, ann_id)
    with store.session() as s2:
        s2.get(Annotation, ann_id).x = 2.0  # the other tab saves first
    with pytest.raises(StaleDataError), store.session() as s3:
        mine = s3.merge(stale, load=False)
        mine.x = 3.0
    with store.session(readonly=True) as s:
        got = s.get(Annotation, ann_id)
        assert (got.x, got.version) == (2.0, 2)


def test_deleting_image_cascades_to_boxes_and_run_to_metrics(store: ProjectStore, tmp_path: Path) -> None:
    _one_box(store, tmp_path)
    with store.session() as s:
        run = Run(name="r1", model_size="nano")
        s.add(run)
        s.flush()
        s.add(RunMetric(run_id=run.id, epoch=0, name="mAP50", value=0.5))
    with store.session() as s:
        s.execute(delete(Image))
        s.execute(delete(Run))
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count(Annotation.id))) == 0
        assert s.scalar(select(func.count(RunMetric.id))) == 0


def test_project_folder_is_movable(store: ProjectStore, tmp_path: Path) -> None:
    _one_box(store, tmp_path)
    store.close()
    moved = tmp_path / "elsewhere" / "moved"
    shutil.move(str(store.path), moved)
    with ProjectStore.open(moved) as st, st.session(readonly=True) as s:
        im = s.scalars(select(Image)).one()
        assert st.image_path(im).is_file() and st.image_path(im).parent == moved / "images"


_WRITER = """
import sys, time
from pathlib import Path
from sqlalchemy import func, select
from studio.store import ProjectStore, Annotation, Image
tag, n = sys.argv[1], int(sys.argv[2])
store = ProjectStore.open(Path(sys.argv[3]))
(store.path / f"ready-{tag}").touch()
while not (store.path / "go").exists():   # start together so the transactions really interleave
    time.sleep(0.01)
for i in range(n):
    with store.session() as s:   # many small read-then-write transactions interleave
        seen = s.scalar(select(func.count(Image.id)))
        im = Image(file_name=f"images/{tag}{i}.png", original_name=f"{tag}{i}", width=10, height=10,
                   content_hash=f"{tag}-{i}", split="train")
        s.add(im)
        s.flush()
        s.add(Annotation(image_id=im.id, category_id=1, x=0, y=0, w=1, h=1))
        im.version += 1
store.close()
"""


def test_two_processes_write_concurrently_without_losing_rows(store: ProjectStore) -> None:
    with store.session() as s:
        s.add(Category(id=1, name="c"))
    n = 150
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, tag, str(n), str(store.path)], env=env, stderr=subprocess.PIPE
        )
        for tag in ("a", "b")
    ]
    deadline = time.monotonic() + 120
    while not all((store.path / f"ready-{t}").exists() for t in "ab") and time.monotonic() < deadline:
        time.sleep(0.05)
    (store.path / "go").touch()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count(Image.id))) == 2 * n
        assert s.scalar(select(func.count(Annotation.id))) == 2 * n
        assert set(s.scalars(select(Image.version))) == {2}
    with sqlite3.connect(store.db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_image_level_version_check(store: ProjectStore, tmp_path: Path) -> None:
    _one_box(store, tmp_path)
    with store.session() as s:
        im = s.scalars(select(Image)).one()
        first = s.execute(
            update(Image).where(Image.id == im.id, Image.version == 1).values(version=2)
        ).rowcount
        second = s.execute(
            update(Image).where(Image.id == im.id, Image.version == 1).values(version=2)
        ).rowcount
    assert (first, second) == (1, 0)


# -- projects service ---------------------------------------------------------------------------------


def test_projects_create_list_rename_delete(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    info = proj.create_project(root, "Café Parts #2")
    assert info.slug == "cafe-parts-2" and info.n_images == 0 and info.path == root / "cafe-parts-2"
    proj.create_project(root, "Second")
    assert [p.name for p in proj.list_projects(root)] == ["Second", "Café Parts #2"]
    renamed = proj.rename_project(root, "cafe-parts-2", "Bolts")
    assert renamed.name == "Bolts" and renamed.slug == "cafe-parts-2"
    with proj.open_store(root, "cafe-parts-2") as st:
        assert st.project().name == "Bolts"
    proj.delete_project(root, "cafe-parts-2")
    assert [p.slug for p in proj.list_projects(root)] == ["second"]


def test_projects_refuse_duplicates_bad_names_and_unknown_slugs(tmp_path: Path) -> None:
    proj.create_project(tmp_path, "Widgets")
    proj.create_project(tmp_path, "Gears")
    with pytest.raises(ValueError, match="already named"):
        proj.rename_project(tmp_path, "gears", "WIDGETS")
    with pytest.raises(ValueError, match="already exists"):
        proj.create_project(tmp_path, "widgets!")
    with pytest.raises(ValueError, match="name"):
        proj.create_project(tmp_path, "   ")
    with pytest.raises(ValueError, match="letter or digit"):
        proj.create_project(tmp_path, "###")
    with pytest.raises(StudioError, match="no project"):
        proj.delete_project(tmp_path, "../etc")
    with pytest.raises(StudioError, match="no project"):
        proj.open_store(tmp_path, "ghost")


def test_readonly_session_does_not_queue_behind_a_writer(tmp_path: Path) -> None:
    with ProjectStore.create(tmp_path / "p", "P", busy_timeout_ms=200) as st:
        blocker = sqlite3.connect(st.db_path, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # e.g. a training process in the middle of a write
        try:
            with st.session(readonly=True) as s:
                assert s.scalar(select(func.count(Image.id))) == 0
            with pytest.raises(Exception, match="locked"), st.session() as s:
                s.add(Category(name="x"))
        finally:
            blocker.rollback()
            blocker.close()


def test_project_written_at_schema_1_is_upgraded_on_open(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    engine = create_engine(f"sqlite:///{tmp_path / 'old' / 'project.db'}")
    with engine.begin() as conn:
        migrate(conn, MIGRATIONS[:1])
        conn.exec_driver_sql(
            "INSERT INTO project (name, created_at, settings) VALUES ('Old', '2025-01-01 00:00:00.000000', '{}')"
        )
    engine.dispose()
    with ProjectStore.open(tmp_path / "old") as st:
        with st.engine.connect() as conn:
            assert current_version(conn) == LATEST_VERSION >= 2
            assert "checkpoint" in {c["name"] for c in inspect(conn).get_columns("prediction")}
        assert st.project().name == "Old"


_PAUSED_IMPORT = r"""
import sys
from pathlib import Path
from studio.services.data.importing.importer import import_dataset
from studio.store import ProjectStore

def progress(fraction, message):
    if message == "writing the database":  # every image is copied, no row is written yet
        print("copied", flush=True)
        sys.stdin.readline()  # the test kills us here, or lets us go on

with ProjectStore.open(Path(sys.argv[1])) as store:
    report = import_dataset(store, Path(sys.argv[2]), progress=progress)
    print("done", report.counts["images_imported"], flush=True)
"""


def _paused_import(project: Path, source: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_IMPORT, str(project), str(source)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.strip() == "copied", proc.stderr.read()
    return proc


def _image_files(store: ProjectStore) -> set[str]:
    return {f"images/{p.name}" for p in store.images_dir.iterdir()}


def _referenced(store: ProjectStore) -> set[str]:
    with store.session(readonly=True) as s:
        return set(s.scalars(select(Image.file_name)))


def test_kill_9_during_import_leaves_no_orphans_and_spares_a_concurrent_import(
    store: ProjectStore, tmp_path: Path
) -> None:
    from tests.support.datagen import loose_images

    loose_images(tmp_path / "a", n=6, seed=11)
    loose_images(tmp_path / "b", n=5, seed=12)
    killed = _paused_import(store.path, tmp_path / "a")
    live = _paused_import(store.path, tmp_path / "b")
    assert len(_image_files(store)) == 11 and not _referenced(store)  # copied before any transaction
    killed.kill()  # SIGKILL: no finally, no rollback handler runs
    killed.wait()
    killed.stdout.close()
    killed.stderr.close()

    ProjectStore.open(store.path).close()  # the live import holds its lock: nothing may go
    assert len(_image_files(store)) == 11

    out, err = live.communicate("\n", timeout=120)
    assert live.returncode == 0 and out.split()[-2:] == ["done", "5"], err
    with ProjectStore.open(store.path) as reopened:  # now the killed import's files are orphans
        files, referenced = _image_files(reopened), _referenced(reopened)
    assert files == referenced and len(referenced) == 5
    assert not any((store.path / ".imports").glob("*.journal"))


def test_orphans_wait_while_another_writer_holds_the_database(store: ProjectStore, tmp_path: Path) -> None:
    journal_dir = store.path / ".imports"
    journal_dir.mkdir()
    orphan = store.images_dir / "0123456789abcdef0123456789abcdef.png"
    _png(orphan)
    (journal_dir / "1-x.journal").write_text(f"{orphan}\n")
    blocker = sqlite3.connect(store.db_path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # a writer mid-transaction: it may be about to reference it
    try:
        assert store.clean_orphan_files() == []
        assert orphan.exists()
    finally:
        blocker.rollback()
        blocker.close()
    assert store.clean_orphan_files() == [f"images/{orphan.name}"]
    assert not orphan.exists() and not any(journal_dir.iterdir())
