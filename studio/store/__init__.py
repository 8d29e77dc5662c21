"""Per-project SQLite store: ORM models, schema migrations and the ``ProjectStore`` handle."""

from studio.store.db import DB_NAME, IMAGES_DIR, ProjectStore, StoreError
from studio.store.models import (
    Annotation,
    Base,
    Category,
    Export,
    Image,
    ImageProblem,
    ImportRecord,
    Prediction,
    Project,
    Run,
    RunMetric,
)

__all__ = [
    "DB_NAME",
    "IMAGES_DIR",
    "Annotation",
    "Base",
    "Category",
    "Export",
    "Image",
    "ImageProblem",
    "ImportRecord",
    "Prediction",
    "Project",
    "ProjectStore",
    "Run",
    "RunMetric",
    "StoreError",
]
