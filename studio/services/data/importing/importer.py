"""Import a dataset (folder or uploaded zip) into a project: detect the format, read, write.

A folder (or the folder inside a zip) is read in the first matching format of the documented order in
:mod:`.detect` (COCO, YOLO, Pascal VOC, CVAT, LabelMe, loose images); other formats found beside it are
named in the report as ignored. A path to one ``.json`` (COCO or LabelMe), ``.xml`` (VOC or CVAT),
``.yaml`` or image picks the format directly; a video file is imported as frames (:mod:`.video`).

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
from collections.abc import Callable
from pathlib import Path

from studio.errors import StudioError
from studio.services.data.importing.detect import VIDEO_SUFFIXES, read_folder
from studio.services.data.importing.formats import voc
from studio.services.data.importing.formats.coco import read_coco
from studio.services.data.importing.formats.common import RawDataset, abort, list_files, split_from_name
from studio.services.data.importing.formats.cvat import read_cvat
from studio.services.data.importing.formats.labelme import is_labelme, read_labelme
from studio.services.data.importing.formats.loose import read_loose
from studio.services.data.importing.formats.xml_safe import xml_root_tag
from studio.services.data.importing.formats.yolo import read_yolo
from studio.services.data.importing.image_check import is_image_name
from studio.services.data.importing.report import ImportAborted, ImportReport
from studio.services.data.importing.safe_zip import dataset_root, safe_extract
from studio.services.data.importing.video import CANCELLED, VideoOptions, import_video
from studio.services.data.importing.writer import Progress, write_dataset
from studio.store import ProjectStore
from studio.text import clip, quote

log = logging.getLogger(__name__)


def _no_progress(_fraction: float, _message: str) -> None:
    return None


def import_dataset(
    store: ProjectStore,
    source: Path,
    *,
    progress: Progress | None = None,
    video: VideoOptions | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ImportReport:
    """Import ``source`` (folder, ``.zip``, video, COCO/LabelMe ``.json``, VOC/CVAT ``.xml``, YOLO
    ``.yaml`` or one image) into ``store``. ``video``: how frames are taken from a video file;
    ``cancel``: polled while images are copied (and frames decoded); when it returns True the import
    stops with ``ImportAborted`` and the project is unchanged."""
    source = Path(source).expanduser()
    report = ImportReport(source=str(source))
    progress = _cancellable(progress or _no_progress, cancel, report, source.name)
    try:
        _check_source(source, report)
        if source.suffix.lower() in VIDEO_SUFFIXES and source.is_file():
            return import_video(store, source, video, progress=progress, cancel=cancel)
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


def _cancellable(
    progress: Progress, cancel: Callable[[], bool] | None, report: ImportReport, name: str
) -> Progress:
    """``progress`` that first checks ``cancel``: the writer reports progress between batches of
    images, so a cancel lands there, before the database transaction (files written are removed)."""
    if cancel is None:
        return progress

    def wrapped(fraction: float, message: str) -> None:
        if cancel():
            raise abort(report, name, CANCELLED)
        progress(fraction, message)

    return wrapped


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
        return read_folder(source, report)
    suffix = source.suffix.lower()
    if suffix == ".zip":
        root = dataset_root(safe_extract(source, tmp / "zip"))
        if not any(root.iterdir()):
            raise abort(report, source.name, f"{quote(source.name)} is empty")
        report.source = str(source)
        return read_folder(root, report)
    if suffix == ".json":
        if is_labelme(source):
            return read_labelme(
                source.parent, report, [source], list_files(source.parent), only_annotated=True
            )
        return read_coco(source.parent, [(source, split_from_name(source.stem))], report, "coco")
    if suffix == ".xml":
        return _read_xml_file(source, report)
    if suffix in {".yaml", ".yml"}:
        return read_yolo(source.parent, source, report)
    if is_image_name(source):
        return read_loose(source.parent, report, files=[source])
    raise abort(
        report,
        source.name,
        f"{quote(source.name)} is not a folder, .zip, video, COCO/LabelMe .json, VOC/CVAT .xml, YOLO .yaml or image",
    )


def _read_xml_file(source: Path, report: ImportReport) -> RawDataset:
    """One Pascal VOC ``.xml`` (its image next to it or in ``../JPEGImages``) or a CVAT task file."""
    tag = xml_root_tag(source)
    if tag == "annotations":
        return read_cvat(source.parent, source, report, list_files(source.parent))
    if tag != "annotation":
        raise abort(
            report, source.name, f"{quote(source.name)} is neither a Pascal VOC nor a CVAT annotation file"
        )
    root = source.parent.parent if source.parent.name == voc.VOC_ANNOTATIONS else source.parent
    return voc.read_voc(root, report, list_files(root), [source], only_annotated=True)


__all__ = ["ImportAborted", "ImportReport", "import_dataset"]
