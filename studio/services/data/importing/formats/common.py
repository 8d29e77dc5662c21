"""What every format reader produces, and the box rules shared by all of them.

Why: readers only *parse* (json/yaml/txt into :class:`RawDataset`, naming classes by name and
reporting per-item problems); one writer (:mod:`studio.services.data.importing.importer`) validates images, fixes or
skips boxes against the real image size and stores everything in one transaction. So the rules for
"slightly outside", NaN, degenerate boxes are the same for COCO and YOLO.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from studio.services.data.importing import limits
from studio.services.data.importing.image_check import file_kind, is_image_name
from studio.services.data.importing.report import ImportAborted, ImportReport
from studio.text import clip, quote

PLACEHOLDER_SUPERCATEGORIES = {"", "none", "null"}
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "valid",
    "valid": "valid",
    "validation": "valid",
    "test": "test",
}
MIN_KEPT_FRACTION = 0.5  # a box that loses more than half its area to clipping is wrong, not "slightly out"
MIN_SIDE_PX = 1.0


@dataclass
class RawBox:
    label: str  # category name (readers resolve ids)
    x: float  # COCO: top-left x in px; YOLO (normalized=True): centre x in [0, 1]
    y: float
    w: float
    h: float
    where: str  # "file:line" or "file#annotation 12", for the report
    normalized: bool = False


@dataclass
class RawImage:
    path: Path
    name: str  # name as written in the source (kept for export)
    split: str | None
    labeled: bool
    where: str
    declared_size: tuple[float, float] | None = None
    boxes: list[RawBox] = field(default_factory=list)
    # (kind, message) of problems found while reading (a skipped box): stored as ImageProblem rows so
    # the gallery's "has problems" filter finds the image, not only the report
    notes: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class RawCategory:
    name: str
    supercategory: str | None = None
    source_id: int | None = None


@dataclass
class RawDataset:
    format: str
    categories: list[RawCategory] = field(default_factory=list)
    images: list[RawImage] = field(default_factory=list)


def abort(report: ImportReport, file: object, message: str) -> ImportAborted:
    """Record a fatal problem and build the exception that aborts the import."""
    file, message = clip(str(file), limits.MAX_WHERE_CHARS), clip(message, limits.MAX_REASON_CHARS)
    report.add(file, message, "fatal")
    report.fatal = f"{message} ({file})" if file not in message else message
    return ImportAborted(report.fatal, report)


def class_name_problem(value: object) -> str | None:
    """Why ``value`` cannot be a class name (None when it can). Types are checked before anything is
    turned into text: a YAML alias bomb must never be formatted whole."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return f"is not text but {quote(value)}"
    text = str(value).strip()
    if not text:
        return "is empty"
    if len(text) > limits.MAX_CLASS_NAME_CHARS:
        return f"is {len(text):,} characters long (limit {limits.MAX_CLASS_NAME_CHARS})"
    return None


def id_problem(value: object) -> str | None:
    """Why ``value`` is not a usable integer id (bools are not ids; SQLite stores 64-bit integers)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"is not an integer ({quote(value)})"
    if abs(value) > limits.MAX_ID:
        return f"is out of range ({quote(value)}; ids must fit in 64 bits)"
    return None


def skip_box(report: ImportReport, image: RawImage | None, where: str, reason: str) -> None:
    """A box a reader cannot use: reported, counted, and noted on its image when it has one."""
    report.add(where, reason + "; box skipped")
    report.count("boxes_skipped")
    if image is not None:
        image.notes.append(("box_skipped", clip(f"{where}: {reason}; box skipped", limits.MAX_REASON_CHARS)))


def parent_name(cat: RawCategory) -> str | None:
    """The supercategory to link as parent, or None for placeholders and self-references."""
    sc = cat.supercategory
    if sc is None or str(sc).strip().lower() in PLACEHOLDER_SUPERCATEGORIES or sc == cat.name:
        return None
    return str(sc)


def split_from_name(name: str) -> str | None:
    low = name.lower()
    for key in ("train", "valid", "val", "test"):
        if key in low:
            return SPLIT_ALIASES[key]
    return None


def inside(root: Path, path: Path) -> bool:
    """True when ``path`` stays under ``root`` after resolving ``..`` (lexically, so it is cheap for
    thousands of images; symlinked files are never listed and zips with links are refused)."""
    root_s = os.path.normpath(os.path.abspath(root))
    path_s = os.path.normpath(os.path.abspath(path))
    return path_s == root_s or path_s.startswith(root_s + os.sep)


def is_regular_file(path: Path) -> bool:
    """A plain file, not a symlink, pipe, socket or device (``Path.is_file`` follows links)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def list_files(folder: Path, report: ImportReport | None = None, root: Path | None = None) -> list[Path]:
    """All regular files under ``folder`` (sorted; hidden files left out). Symlinks, pipes, sockets
    and devices are never opened: with a ``report`` each is listed as skipped. Symlinked folders are
    not entered (``os.walk`` does not follow them)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            p = Path(dirpath) / f
            try:
                mode = os.lstat(p).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                out.append(p)
            elif report is not None:
                report.add(rel(p, root or folder), f"is {file_kind(mode)}; skipped without opening it")
                report.count("files_skipped")
    return out


def split_images(files: list[Path], report: ImportReport, root: Path) -> list[Path]:
    """Keep image files; report everything else as skipped."""
    images = []
    for p in files:
        if is_image_name(p):
            images.append(p)
        elif p.suffix.lower() not in {".txt", ".json", ".yaml", ".yml", ".md"}:
            report.add(rel(p, root), "not an image file; skipped")
            report.count("files_skipped")
    return images


def rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def fix_box(
    box: RawBox, width: int, height: int
) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """Absolute ``(x, y, w, h)`` inside the image, or ``(None, reason)``; a reason with a box is a warning."""
    vals = (box.x, box.y, box.w, box.h)
    if not all(math.isfinite(v) for v in vals):
        return None, "box has NaN or infinite values"
    if box.w <= 0 or box.h <= 0:
        return None, f"box has non-positive size (w={box.w:g}, h={box.h:g})"
    if box.normalized:
        x0, y0 = (box.x - box.w / 2) * width, (box.y - box.h / 2) * height
        x1, y1 = x0 + box.w * width, y0 + box.h * height
    else:
        x0, y0, x1, y1 = box.x, box.y, box.x + box.w, box.y + box.h
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    if cx1 - cx0 < MIN_SIDE_PX or cy1 - cy0 < MIN_SIDE_PX:
        return None, "box is outside the image or degenerate (under 1 px after clipping)"
    kept = (cx1 - cx0) * (cy1 - cy0) / ((x1 - x0) * (y1 - y0))
    if kept < MIN_KEPT_FRACTION:
        return None, f"box lies mostly outside the {width}x{height} image ({kept:.0%} inside)"
    clipped = (cx0, cy0, cx1 - cx0, cy1 - cy0)
    moved = max(abs(cx0 - x0), abs(cy0 - y0), abs(cx1 - x1), abs(cy1 - y1))
    return clipped, (f"box clipped to the image by {moved:.1f} px" if moved > 0.5 else None)
