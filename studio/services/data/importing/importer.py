"""Import a dataset (folder or uploaded zip) into a project: detect the format, read, write.

Detection order (first match wins): COCO Roboflow layout (``train|valid|test/_annotations.coco.json``),
a root ``_annotations.coco.json``, a YOLO ``data*.yaml``, COCO json files at the root or in
``annotations/`` (split guessed from the file name), YOLO-looking ``labels/`` without a yaml (fatal:
class names unknown), loose images. A path to a ``.json``/``.yaml``/image file picks the format directly.

Errors: per-item problems are listed in the returned :class:`ImportReport`; fatal ones raise
:class:`ImportAborted` with the report, and the project is unchanged. Unexpected exceptions are turned
into ``ImportAborted`` too, so the UI never shows a traceback.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from studio.errors import StudioError
from studio.services.data.importing.formats.coco import ROBOFLOW_JSON, read_coco, roboflow_files
from studio.services.data.importing.formats.common import RawDataset, abort, list_files, split_from_name
from studio.services.data.importing.formats.loose import read_loose
from studio.services.data.importing.formats.yolo import find_yaml, read_yolo
from studio.services.data.importing.image_check import is_image_name
from studio.services.data.importing.report import ImportAborted, ImportReport
from studio.services.data.importing.safe_zip import dataset_root, safe_extract
from studio.services.data.importing.writer import Progress, write_dataset
from studio.store import ProjectStore

log = logging.getLogger(__name__)


def _no_progress(_fraction: float, _message: str) -> None:
    return None


def import_dataset(store: ProjectStore, source: Path, *, progress: Progress | None = None) -> ImportReport:
    """Import ``source`` (folder, ``.zip``, COCO ``.json``, YOLO ``.yaml`` or one image) into ``store``."""
    source = Path(source).expanduser()
    report = ImportReport(source=str(source))
    progress = progress or _no_progress
    try:
        if not source.exists():
            raise abort(report, source, f"'{source}' does not exist")
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
    except Exception as e:
        log.exception("import of %s failed", source)
        raise abort(report, source.name, f"import failed unexpectedly ({type(e).__name__}: {e})") from None
    return report


def _read(source: Path, tmp: Path, report: ImportReport) -> RawDataset:
    if source.is_dir():
        return _read_folder(source, report)
    suffix = source.suffix.lower()
    if suffix == ".zip":
        root = dataset_root(safe_extract(source, tmp / "zip"))
        if not any(root.iterdir()):
            raise abort(report, source.name, f"'{source.name}' is empty")
        report.source = str(source)
        return _read_folder(root, report)
    if suffix == ".json":
        return read_coco(source.parent, [(source, split_from_name(source.stem))], report, "coco")
    if suffix in {".yaml", ".yml"}:
        return read_yolo(source.parent, source, report)
    if is_image_name(source):
        return read_loose(source.parent, report, files=[source])
    raise abort(
        report, source.name, f"'{source.name}' is not a folder, .zip, COCO .json, YOLO .yaml or image"
    )


def _read_folder(root: Path, report: ImportReport) -> RawDataset:
    rf = roboflow_files(root)
    if rf:
        return read_coco(root, rf, report, "coco-roboflow")
    if (root / ROBOFLOW_JSON).is_file():
        return read_coco(root, [(root / ROBOFLOW_JSON, None)], report, "coco")
    yaml_path = find_yaml(root)
    if yaml_path is not None:
        return read_yolo(root, yaml_path, report)
    jsons = sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))
    if jsons:
        return read_coco(root, [(j, split_from_name(j.stem)) for j in jsons], report, "coco")
    if _looks_like_yolo(root):
        raise abort(report, root.name, "YOLO label files found but no data.yaml with the class 'names'")
    raw = read_loose(root, report, files=list_files(root))
    if not raw.images:
        raise abort(report, root.name, "no images or annotations found")
    return raw


def _looks_like_yolo(root: Path) -> bool:
    candidates = [root / "labels", *(p / "labels" for p in root.iterdir() if p.is_dir())]
    return any(c.is_dir() and any(c.rglob("*.txt")) for c in candidates)


__all__ = ["ImportAborted", "ImportReport", "import_dataset"]
