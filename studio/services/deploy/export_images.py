"""The images an export is verified and calibrated on.

Verification uses the run's own frozen ``valid`` split: the labels the run was validated on while
training, so the PyTorch mAP shown next to the exported one is the mAP the run reported. TFLite INT8
calibration uses train images only, never the validation images the export is then judged on.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sqlalchemy import select

from studio.errors import StudioError
from studio.services.data.dataset_export import export_coco
from studio.store import ProjectStore
from studio.store.models import Image

CALIBRATION_IMAGES = 64  # enough for int8 ranges; more only slows the converter


def validation_folder(store: ProjectStore, snapshot: Path | None, scratch: Path) -> Path | None:
    """The run's frozen ``valid`` split (COCO layout); else the project's current one, written to *scratch*.

    ``None`` when neither exists (verification then compares on training images without mAP).
    """
    if snapshot is not None and (snapshot / "valid" / "_annotations.coco.json").is_file():
        return snapshot / "valid"
    with store.session(readonly=True) as s:
        has_valid = s.scalar(select(Image.id).where(Image.split == "valid").limit(1)) is not None
    if not has_valid:
        return None
    export_coco(store, scratch)
    return scratch / "valid"


def _train_images(store: ProjectStore, max_images: int, snapshot: Path | None) -> list[Path]:
    """Up to *max_images* train images of the project (unassigned ones train too), else of the run."""
    with store.session(readonly=True) as s:
        in_train = (Image.split == "train") | Image.split.is_(None)
        images = list(s.scalars(select(Image).where(in_train).order_by(Image.id).limit(max_images)))
    sources = [store.image_path(im) for im in images if store.image_path(im).is_file()]
    if not sources and snapshot is not None and (snapshot / "train").is_dir():
        from rfdetr_core.export.images import IMAGE_SUFFIXES

        sources = sorted(p for p in (snapshot / "train").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        sources = sources[:max_images]
    return sources


def calibration_folder(
    store: ProjectStore, dest: Path, max_images: int = CALIBRATION_IMAGES, snapshot: Path | None = None
) -> Path:
    """A folder of up to *max_images* images of the project's train split (unassigned images train too).

    TFLite INT8 ranges must come from the data the model will see, never from the validation images
    it is judged on. Falls back to the run's frozen train split when the project has none left.
    """
    sources = _train_images(store, max_images, snapshot)
    if not sources:
        raise StudioError(
            "TFLite export needs calibration images: the project has no images in the train split."
        )
    dest.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(sources):
        target = dest / f"{i:04d}{src.suffix.lower()}"
        try:
            os.link(src, target)  # no copy of the bytes when the file system allows it
        except OSError:
            shutil.copyfile(src, target)
    return dest


__all__ = ["CALIBRATION_IMAGES", "calibration_folder", "validation_folder"]
