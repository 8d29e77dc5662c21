"""Schema migrations: an ordered list of frozen steps, applied on open inside one transaction.

Why not Alembic: each project is its own small SQLite file that moves with its folder, and the app must
upgrade whatever version it finds when a project is opened, with no ``alembic.ini``/env script per
project. The part of Alembic we need is small: a ``schema_version`` table, numbered steps that are
*frozen* (never generated from the current models, so an old database replays exactly the DDL it was
created with), and a check that the result matches the models (``tests/test_store.py`` compares the
migrated schema with ``Base.metadata``). A step that needs data changes gets the live connection.
SQLite DDL is transactional, so a failed step leaves the file at its previous version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text

SCHEMA_VERSION_TABLE = "schema_version"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _run_script(script: str) -> Callable[[Connection], None]:
    def apply(conn: Connection) -> None:
        for stmt in script.split(";"):
            if stmt.strip():
                conn.exec_driver_sql(stmt)

    return apply


# Version 1: the initial schema (generated once from the models of that day, then frozen).
_V1 = """
CREATE TABLE category (
    id INTEGER NOT NULL,
    name VARCHAR(200) NOT NULL,
    parent_id INTEGER,
    color VARCHAR(7) NOT NULL,
    source_id INTEGER,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    UNIQUE (name),
    FOREIGN KEY(parent_id) REFERENCES category (id) ON DELETE SET NULL
);
CREATE INDEX ix_category_parent_id ON category (parent_id);
CREATE TABLE import_record (
    id INTEGER NOT NULL,
    created_at DATETIME NOT NULL,
    source TEXT NOT NULL,
    format VARCHAR(40) NOT NULL,
    report JSON NOT NULL,
    PRIMARY KEY (id)
);
CREATE TABLE project (
    id INTEGER NOT NULL,
    name VARCHAR(200) NOT NULL,
    created_at DATETIME NOT NULL,
    settings JSON NOT NULL,
    PRIMARY KEY (id)
);
CREATE TABLE run (
    id INTEGER NOT NULL,
    name VARCHAR(200) NOT NULL,
    model_size VARCHAR(20) NOT NULL,
    status VARCHAR(12) NOT NULL,
    config JSON NOT NULL,
    dataset_snapshot JSON NOT NULL,
    class_names JSON NOT NULL,
    output_dir TEXT,
    best_checkpoint TEXT,
    last_checkpoint TEXT,
    best_metrics JSON NOT NULL,
    epochs_done INTEGER NOT NULL,
    total_epochs INTEGER,
    pid INTEGER,
    error TEXT,
    created_at DATETIME NOT NULL,
    started_at DATETIME,
    finished_at DATETIME,
    heartbeat_at DATETIME,
    PRIMARY KEY (id),
    CONSTRAINT ck_run_status CHECK (status IN ('queued','running','completed','failed','stopped','interrupted'))
);
CREATE TABLE export (
    id INTEGER NOT NULL,
    run_id INTEGER,
    kind VARCHAR(40) NOT NULL,
    path TEXT NOT NULL,
    status VARCHAR(20) NOT NULL,
    details JSON NOT NULL,
    error TEXT,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE SET NULL
);
CREATE INDEX ix_export_run_id ON export (run_id);
CREATE TABLE image (
    id INTEGER NOT NULL,
    file_name VARCHAR(500) NOT NULL,
    original_name VARCHAR(500) NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    split VARCHAR(5),
    content_hash VARCHAR(64) NOT NULL,
    status VARCHAR(10) NOT NULL,
    version INTEGER NOT NULL,
    import_id INTEGER,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT ck_image_split CHECK (split IS NULL OR split IN ('train','valid','test')),
    CONSTRAINT ck_image_status CHECK (status IN ('unlabeled','labeled','reviewed')),
    CONSTRAINT ck_image_size CHECK (width > 0 AND height > 0),
    UNIQUE (content_hash),
    FOREIGN KEY(import_id) REFERENCES import_record (id) ON DELETE SET NULL
);
CREATE INDEX ix_image_split_status ON image (split, status);
CREATE TABLE run_metric (
    id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    epoch INTEGER,
    step INTEGER,
    split VARCHAR(5),
    name VARCHAR(100) NOT NULL,
    value FLOAT NOT NULL,
    category_id INTEGER,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE,
    FOREIGN KEY(category_id) REFERENCES category (id) ON DELETE SET NULL
);
CREATE INDEX ix_run_metric_run_name_epoch ON run_metric (run_id, name, epoch);
CREATE TABLE annotation (
    id INTEGER NOT NULL,
    image_id INTEGER NOT NULL,
    category_id INTEGER NOT NULL,
    x FLOAT NOT NULL,
    y FLOAT NOT NULL,
    w FLOAT NOT NULL,
    h FLOAT NOT NULL,
    source VARCHAR(10) NOT NULL,
    score FLOAT,
    run_id INTEGER,
    version INTEGER NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT ck_annotation_source CHECK (source IN ('gt','proposal')),
    CONSTRAINT ck_annotation_size CHECK (w > 0 AND h > 0),
    FOREIGN KEY(image_id) REFERENCES image (id) ON DELETE CASCADE,
    FOREIGN KEY(category_id) REFERENCES category (id) ON DELETE CASCADE,
    FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE SET NULL
);
CREATE INDEX ix_annotation_category_id ON annotation (category_id);
CREATE INDEX ix_annotation_image_id ON annotation (image_id);
CREATE TABLE image_problem (
    id INTEGER NOT NULL,
    image_id INTEGER NOT NULL,
    kind VARCHAR(40) NOT NULL,
    message TEXT NOT NULL,
    import_id INTEGER,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(image_id) REFERENCES image (id) ON DELETE CASCADE,
    FOREIGN KEY(import_id) REFERENCES import_record (id) ON DELETE SET NULL
);
CREATE INDEX ix_image_problem_image_id ON image_problem (image_id);
CREATE TABLE prediction (
    id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    image_id INTEGER NOT NULL,
    category_id INTEGER,
    class_index INTEGER NOT NULL,
    x FLOAT NOT NULL,
    y FLOAT NOT NULL,
    w FLOAT NOT NULL,
    h FLOAT NOT NULL,
    score FLOAT NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE,
    FOREIGN KEY(image_id) REFERENCES image (id) ON DELETE CASCADE,
    FOREIGN KEY(category_id) REFERENCES category (id) ON DELETE SET NULL
);
CREATE INDEX ix_prediction_run_image ON prediction (run_id, image_id);
"""

# Version 2: predictions remember which checkpoint of a run produced them (best / last / ...).
_V2 = "ALTER TABLE prediction ADD COLUMN checkpoint VARCHAR(200)"

# Version 3: a run's live progress (written by the trainer) and the UI's stop request.
_V3 = """
ALTER TABLE run ADD COLUMN progress JSON NOT NULL DEFAULT '{}';
ALTER TABLE run ADD COLUMN stop_requested BOOLEAN NOT NULL DEFAULT 0
"""

# Version 4: the Review page's record of each computed prediction set (run x checkpoint x split).
_V4 = """
CREATE TABLE prediction_set (
    id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    checkpoint VARCHAR(200) NOT NULL,
    split VARCHAR(5) NOT NULL,
    checkpoint_path TEXT NOT NULL,
    checkpoint_mtime_ns INTEGER NOT NULL,
    checkpoint_size INTEGER NOT NULL,
    class_names JSON NOT NULL,
    image_ids JSON NOT NULL,
    n_images INTEGER NOT NULL,
    n_predictions INTEGER NOT NULL,
    seconds FLOAT NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES run (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX ux_prediction_set_key ON prediction_set (run_id, checkpoint, split)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _run_script(_V1)),
    Migration(2, "prediction.checkpoint", _run_script(_V2)),
    Migration(3, "run.progress, run.stop_requested", _run_script(_V3)),
    Migration(4, "prediction_set", _run_script(_V4)),
)
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """Schema version of the database behind ``conn`` (0 for an empty file)."""
    exists = conn.execute(
        text("SELECT name FROM sqlite_master WHERE type='table' AND name=:n"), {"n": SCHEMA_VERSION_TABLE}
    ).first()
    if exists is None:
        return 0
    row = conn.execute(text(f"SELECT MAX(version) FROM {SCHEMA_VERSION_TABLE}")).first()
    return int(row[0] or 0)


def migrate(conn: Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply every step newer than the database's version; return the versions applied.

    The caller owns the transaction (one ``BEGIN IMMEDIATE`` so two processes opening the same old
    project cannot both upgrade it).
    """
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_VERSION_TABLE} ("
        "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
        "applied_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    have = current_version(conn)
    newest = max((m.version for m in migrations), default=0)
    if have > newest:
        raise RuntimeError(
            f"This project was written by a newer RF-DETR Studio (schema {have} > {newest}); upgrade the app."
        )
    applied = []
    for step in sorted(migrations, key=lambda m: m.version):
        if step.version <= have:
            continue
        step.apply(conn)
        conn.execute(
            text(f"INSERT INTO {SCHEMA_VERSION_TABLE} (version, description) VALUES (:v, :d)"),
            {"v": step.version, "d": step.description},
        )
        applied.append(step.version)
    return applied
