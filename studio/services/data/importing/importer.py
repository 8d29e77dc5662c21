"""Import a dataset (folder or uploaded zip) into a project: detect the format, read, write.

Detection order (first match wins): COCO Roboflow layout (``train|valid|test/_annotations.coco.json``),
a root ``_annotations.coco.json``, a YOLO ``data*.yaml``, COCO json files at the root or in
``annotations/`` (split guessed from the file name), YOLO-looking ``labels/`` without a yaml (fatal:
class names unknown), loose images. A path to a ``.json``/``.yaml``/image file picks the format directly.

Errors: per-item problems are listed in the returned :class:`ImportReport`; fatal ones raise
:class:`ImportAborted` with the report, and the project is unchanged. Unexpected exceptions are turned
into ``ImportAborted`` too, so the UI never shows a traceback (their text is clipped: it may quote the
input). Re-importing only images the project already has returns a report whose ``note`` says so.
Anything that is not a regular file or folder (a pipe, a device, a link inside the dataset) is skipped
without being opened; the limits on sizes and counts are all in :mod:`.limits`.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import time
from pathlib import Path

from studio.errors import StudioError
from studio.services.data.importing.formats.coco import ROBOFLOW_JSON, read_coco, roboflow_files
from studio.services.data.importing.formats.common import (
    RawDataset,
    abort,
    is_regular_file,
    list_files,
    split_from_name,
)
from studio.services.data.importing.formats.loose import read_loose
from studio.services.data.importing.formats.yolo import find_yaml, read_yolo
from studio.services.data.importing.image_check import is_image_name
from studio.services.data.importing.report import ImportAborted, ImportReport
from studio.services.data.importing.safe_zip import dataset_root, safe_extract
from studio.services.data.importing.writer import Progress, write_dataset
from studio.store import ProjectStore
from studio.text import clip, quote

log = logging.getLogger(__name__)


def _no_progress(_fraction: float, _message: str) -> None:
    return None


def import_dataset(store: ProjectStore, source: Path, *, progress: Progress | None = None) -> ImportReport:
    """Import ``source`` (folder, ``.zip``, COCO ``.json``, YOLO ``.yaml`` or one image) into ``store``."""
    source = Path(source).expanduser()
    report = ImportReport(source=str(source))
    progress = progress or _no_progress
    try:
        _check_source(source, report)
        with tempfile.TemporaryDirectory(prefix="studio-import-") as tmp:
            progress(0.0, "reading annotations")
            t0 = time.perf_counter()
            raw = _read(source, Path(tmp), report)
            report.timings["read"] = time.perf_counter() - t0
            write_dataset(store, raw, report, progress)
    except ImportAborted:
        raise
    except StudioError as e:
        raise abort(report, source.name, str(e)) from None
    except RecursionError:
        raise abort(report, source.name, "the dataset is nested too deeply to read") from None
    except MemoryError:
        raise abort(report, source.name, "the dataset is too large to read into memory") from None
    except Exception as e:
        log.exception("import of %s failed", source)
        detail = clip(f"{type(e).__name__}: {e}", 300)
        raise abort(report, source.name, f"import failed unexpectedly ({detail})") from None
    return report


def _check_source(source: Path, report: ImportReport) -> None:
    """The source must exist and be a folder or a regular file (a pipe would block forever)."""
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise abort(report, source, f"{quote(str(source))} does not exist") from None
    except OSError as e:
        raise abort(report, source.name, f"cannot read {quote(str(source))}: {e.strerror or e}") from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise abort(report, source.name, f"{quote(source.name)} is not a regular file or folder; not read")


def _read(source: Path, tmp: Path, report: ImportReport) -> RawDataset:
    if source.is_dir():
        return _read_folder(source, report)
    suffix = source.suffix.lower()
    if suffix == ".zip":
        root = dataset_root(safe_extract(source, tmp / "zip"))
        if not any(root.iterdir()):
            raise abort(report, source.name, f"{quote(source.name)} is empty")
        report.source = str(source)
        return _read_folder(root, report)
    if suffix == ".json":
        return read_coco(source.parent, [(source, split_from_name(source.stem))], report, "coco")
    if suffix in {".yaml", ".yml"}:
        return read_yolo(source.parent, source, report)
    if is_image_name(source):
        return read_loose(source.parent, report, files=[source])
    raise abort(
        report, source.name, f"{quote(source.name)} is not a folder, .zip, COCO .json, YOLO .yaml or image"
    )


def _read_folder(root: Path, report: ImportReport) -> RawDataset:
    rf = roboflow_files(root)
    if rf:
        return read_coco(root, rf, report, "coco-roboflow")
    if is_regular_file(root / ROBOFLOW_JSON):
        return read_coco(root, [(root / ROBOFLOW_JSON, None)], report, "coco")
    yaml_path = find_yaml(root)
    if yaml_path is not None:
        return read_yolo(root, yaml_path, report)
    jsons = [
        p
        for p in sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))
        if is_regular_file(p)
    ]
    if jsons:
        return read_coco(root, [(j, split_from_name(j.stem)) for j in jsons], report, "coco")
    if _looks_like_yolo(root):
        raise abort(report, root.name, "YOLO label files found but no data.yaml with the class 'names'")
    raw = read_loose(root, report, files=list_files(root, report))
    if not raw.images:
        raise abort(report, root.name, "no images or annotations found")
    return raw


def _looks_like_yolo(root: Path) -> bool:
    candidates = [root / "labels", *(p / "labels" for p in root.iterdir() if p.is_dir())]
    return any(c.is_dir() and any(c.rglob("*.txt")) for c in candidates)


__all__ = ["ImportAborted", "ImportReport", "import_dataset"]
