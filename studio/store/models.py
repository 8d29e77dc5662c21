"""SQLAlchemy 2.0 typed ORM for one project's database (``projects/<slug>/project.db``).

Why these shapes:
- Boxes are absolute pixels, top-left ``x, y`` plus ``w, h`` (COCO convention), so the UI, the COCO
  export and the trainer never disagree about normalisation.
- ``Annotation.version`` is SQLAlchemy's optimistic-locking column: an ORM update that was computed
  from a stale row raises ``StaleDataError`` instead of silently overwriting another tab's edit.
  ``Image.version`` is the same idea at image level for editors that save a whole image at once
  (``UPDATE image SET version = version + 1 WHERE id = ? AND version = ?``).
- Tables for later issues (runs, metrics, predictions, exports) are long/JSON shaped so new metrics or
  export kinds need new rows, not new columns.

The schema itself is created by :mod:`studio.store.migrations` (frozen DDL per version); a test checks
that the migrated database matches these models.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SPLITS = ("train", "valid", "test")
IMAGE_STATUSES = ("unlabeled", "labeled", "reviewed")
ANNOTATION_SOURCES = ("gt", "proposal")
RUN_STATUSES = ("queued", "running", "completed", "failed", "stopped", "interrupted")


def utcnow() -> datetime:
    """Naive UTC timestamp (SQLite has no time zones; everything stored is UTC)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Project(Base):
    """The single row describing this project (name, free-form settings such as augmentation)."""

    __tablename__ = "project"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ImportRecord(Base):
    """One import attempt that committed (aborted imports leave no row, by design)."""

    __tablename__ = "import_record"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    source: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(40))
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Category(Base):
    """A class. ``parent_id`` holds the COCO supercategory link; parents are not trained."""

    __tablename__ = "category"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("category.id", ondelete="SET NULL"), index=True)
    color: Mapped[str] = mapped_column(String(7), default="#1f77b4")
    source_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    parent: Mapped[Category | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Category]] = relationship(back_populates="parent")


class Image(Base):
    """An image copied into the project (``file_name`` is relative to the project folder)."""

    __tablename__ = "image"
    __table_args__ = (
        CheckConstraint("split IS NULL OR split IN ('train','valid','test')", name="ck_image_split"),
        CheckConstraint("status IN ('unlabeled','labeled','reviewed')", name="ck_image_status"),
        CheckConstraint("width > 0 AND height > 0", name="ck_image_size"),
        Index("ix_image_split_status", "split", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    file_name: Mapped[str] = mapped_column(String(500))
    original_name: Mapped[str] = mapped_column(String(500))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    split: Mapped[str | None] = mapped_column(String(5))
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="unlabeled")
    version: Mapped[int] = mapped_column(Integer, default=1)
    import_id: Mapped[int | None] = mapped_column(ForeignKey("import_record.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    annotations: Mapped[list[Annotation]] = relationship(
        back_populates="image", cascade="all, delete-orphan", passive_deletes=True
    )
    problems: Mapped[list[ImageProblem]] = relationship(
        back_populates="image", cascade="all, delete-orphan", passive_deletes=True
    )


class Annotation(Base):
    """A box in absolute pixels. ``source='proposal'`` rows come from a model and await review."""

    __tablename__ = "annotation"
    __table_args__ = (
        CheckConstraint("source IN ('gt','proposal')", name="ck_annotation_source"),
        CheckConstraint("w > 0 AND h > 0", name="ck_annotation_size"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("category.id", ondelete="CASCADE"), index=True)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    w: Mapped[float] = mapped_column(Float)
    h: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(10), default="gt")
    score: Mapped[float | None] = mapped_column(Float)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    image: Mapped[Image] = relationship(back_populates="annotations")
    category: Mapped[Category] = relationship()

    __mapper_args__ = {"version_id_col": version}


class ImageProblem(Base):
    """Something wrong with an image found on import or later (drives the "has problems" filter)."""

    __tablename__ = "image_problem"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    import_id: Mapped[int | None] = mapped_column(ForeignKey("import_record.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    image: Mapped[Image] = relationship(back_populates="problems")


class Run(Base):
    """A training run. ``status`` 'interrupted' is set on app start for runs whose process vanished."""

    __tablename__ = "run"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued','running','completed','failed','stopped','interrupted')",
            name="ck_run_status",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    model_size: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default="queued")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dataset_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    class_names: Mapped[list[Any]] = mapped_column(JSON, default=list)
    output_dir: Mapped[str | None] = mapped_column(Text)
    best_checkpoint: Mapped[str | None] = mapped_column(Text)
    last_checkpoint: Mapped[str | None] = mapped_column(Text)
    best_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    total_epochs: Mapped[int | None] = mapped_column(Integer)
    pid: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Schema 3: live progress written by the trainer (step, total_steps, eta_s, lr ...) and the UI's
    # stop request, in their own columns so the two processes never overwrite each other's JSON.
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    metrics: Mapped[list[RunMetric]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class RunMetric(Base):
    """One scalar per row (long format): e.g. name='mAP50', epoch=3, split='valid', category_id=None."""

    __tablename__ = "run_metric"
    __table_args__ = (Index("ix_run_metric_run_name_epoch", "run_id", "name", "epoch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    epoch: Mapped[int | None] = mapped_column(Integer)
    step: Mapped[int | None] = mapped_column(Integer)
    split: Mapped[str | None] = mapped_column(String(5))
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("category.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Prediction(Base):
    """A model's box on a project image (for review and model-assisted labeling)."""

    __tablename__ = "prediction"
    __table_args__ = (Index("ix_prediction_run_image", "run_id", "image_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("category.id", ondelete="SET NULL"))
    class_index: Mapped[int] = mapped_column(Integer)
    checkpoint: Mapped[str | None] = mapped_column(String(200))  # e.g. "best"/"last": one run, several models
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    w: Mapped[float] = mapped_column(Float)
    h: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class PredictionSet(Base):
    """One computed set of stored predictions: run ``run_id``'s ``checkpoint`` over ``split``.

    Schema 4 (Review page). ``image_ids`` and the checkpoint file's ``mtime_ns``/``size`` are what the
    set was computed from, so the page can say the set is stale (images added to / removed from the
    split, or the checkpoint rewritten) without running the model again. ``class_names`` are the
    model's classes the rows' ``class_index`` refer to.
    """

    __tablename__ = "prediction_set"
    __table_args__ = (Index("ux_prediction_set_key", "run_id", "checkpoint", "split", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    checkpoint: Mapped[str] = mapped_column(String(200))
    split: Mapped[str] = mapped_column(String(5))
    checkpoint_path: Mapped[str] = mapped_column(Text)
    checkpoint_mtime_ns: Mapped[int] = mapped_column(Integer)
    checkpoint_size: Mapped[int] = mapped_column(Integer)
    class_names: Mapped[list[Any]] = mapped_column(JSON, default=list)
    image_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    n_images: Mapped[int] = mapped_column(Integer)
    n_predictions: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Export(Base):
    """A written export (dataset or model bundle) and the checks run on it."""

    __tablename__ = "export"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="done")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


__all__ = [
    "ANNOTATION_SOURCES",
    "IMAGE_STATUSES",
    "RUN_STATUSES",
    "SPLITS",
    "Annotation",
    "Base",
    "Category",
    "Export",
    "Image",
    "ImageProblem",
    "ImportRecord",
    "Prediction",
    "PredictionSet",
    "Project",
    "Run",
    "RunMetric",
    "utcnow",
]
