"""Where a dataset's files are: format detection and split folders.

Two on-disk layouts are understood, the same two the reference accepts:

* **COCO (Roboflow export)** -- ``train/``, ``valid/``, ``test/``, each holding its images and an
  ``_annotations.coco.json``.
* **YOLO** -- a ``data.yaml`` (or ``data.yml``) with ``names`` and, optionally, ``train``/``val``/
  ``test`` paths; otherwise the Roboflow convention ``<split>/images`` + ``<split>/labels``.

COCO wins when both are present, because its annotation file is the more specific signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from rfdetr_core.data.errors import DatasetError

DatasetFormat = Literal["coco", "yolo"]
Split = Literal["train", "val", "test"]

COCO_ANNOTATION_FILE = "_annotations.coco.json"
YOLO_DATA_FILES = ("data.yaml", "data.yml")
IMAGE_EXTENSIONS = frozenset({".bmp", ".dng", ".jpg", ".jpeg", ".mpo", ".png", ".tif", ".tiff", ".webp"})

# On-disk folder names of each split in a Roboflow export, in order of preference.
_SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {"train": ("train",), "val": ("valid", "val"), "test": ("test",)}


def normalise_split(split: str) -> Split:
    """Accept the spellings people use for the three splits (``valid`` is Roboflow's)."""
    aliases = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
    try:
        return aliases[split.lower()]  # type: ignore[return-value]
    except KeyError:
        raise DatasetError(f"Unknown split {split!r}; expected one of train, valid (val), test.") from None


def coco_split_dir(dataset_dir: Path, split: str) -> Path:
    """Folder of a COCO split; ``val`` resolves to ``valid/`` (or ``val/`` when that is what exists)."""
    candidates = [dataset_dir / name for name in _SPLIT_FOLDERS[normalise_split(split)]]
    for candidate in candidates:
        if (candidate / COCO_ANNOTATION_FILE).is_file():
            return candidate
    return candidates[0]


def find_yolo_data_file(dataset_dir: Path) -> Path | None:
    """``data.yaml`` beats ``data.yml`` when a folder holds both, as in the reference."""
    for name in YOLO_DATA_FILES:
        if (dataset_dir / name).is_file():
            return dataset_dir / name
    return None


def read_yolo_data_file(path: Path) -> dict[str, Any]:
    """Parse a YOLO data file, insisting on a mapping at its root."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"Could not read the YOLO data file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"The YOLO data file {path} must be a mapping with a 'names' entry.")
    return data


def _inside(candidate: Path, root: Path) -> bool:
    try:
        candidate.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


@dataclass(frozen=True)
class YoloSplitDirs:
    """Image and label folders of one YOLO split."""

    images: Path
    labels: Path


def _labels_beside(images: Path, root: Path) -> Path | None:
    """Ultralytics rule: swap the right-most ``images`` path component whose ``labels`` twin exists."""
    parts = images.parts
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] != "images":
            continue
        labels = Path(*parts[:index], "labels", *parts[index + 1 :])
        if labels.is_dir() and _inside(labels, root):
            return labels
    return None


def _declared_yolo_split(root: Path, data: dict[str, Any], split: Split) -> YoloSplitDirs | None:
    """Split folders named in ``data.yaml`` (relative to its ``path:`` base, or to the root)."""
    raw = data.get(split)
    if raw is None and split == "val":
        raw = data.get("valid")
    if not isinstance(raw, str):
        return None
    base = root
    declared_base = data.get("path")
    if isinstance(declared_base, str) and declared_base:
        candidate = Path(declared_base)
        candidate = candidate if candidate.is_absolute() else root / candidate
        base = candidate if candidate.is_dir() else root
    images = base / raw
    if not images.is_dir() or not _inside(images, root):
        return None
    labels = _labels_beside(images, root)
    if labels is not None:
        return YoloSplitDirs(images, labels)
    if (images / "images").is_dir() and (images / "labels").is_dir():
        return YoloSplitDirs(images / "images", images / "labels")
    return None


def yolo_split_dirs(dataset_dir: Path, data: dict[str, Any], split: str) -> YoloSplitDirs | None:
    """Resolve a YOLO split from ``data.yaml``, falling back to ``<split>/images`` + ``<split>/labels``."""
    name = normalise_split(split)
    declared = _declared_yolo_split(dataset_dir, data, name)
    if declared is not None:
        return declared
    for folder in _SPLIT_FOLDERS[name]:
        images, labels = dataset_dir / folder / "images", dataset_dir / folder / "labels"
        if images.is_dir() and _inside(images, dataset_dir):
            return YoloSplitDirs(images, labels)
    return None


def detect_format(dataset_dir: str | Path) -> DatasetFormat:
    """Tell COCO from YOLO, or raise a :class:`DatasetError` that says what was looked for."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"Dataset folder {root} does not exist.")
    if any((root / name / COCO_ANNOTATION_FILE).is_file() for name in ("train", "valid", "val", "test")):
        return "coco"
    data_file = find_yolo_data_file(root)
    if data_file is not None:
        return "yolo"
    raise DatasetError(
        f"Could not recognise the dataset format of {root}: expected a COCO export "
        f"(train/{COCO_ANNOTATION_FILE}, valid/{COCO_ANNOTATION_FILE}) or a YOLO dataset "
        f"({' or '.join(YOLO_DATA_FILES)} with train/ and valid/ image and label folders)."
    )


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in a stable (sorted) order, the order the reference indexes them in."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
