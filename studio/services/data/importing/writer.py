"""Second half of an import: check and copy images, fix boxes, write everything in one transaction.

Why this order: image files are hashed, checked and copied *before* the write transaction opens, in a
thread pool (file I/O and hashing release the GIL), so the project database is locked only for the
short bulk inserts and a training process writing metrics is never starved. Every file this import
created is remembered; if anything fails before the commit, they are deleted again, so an aborted
import leaves the folder exactly as it was. The copying runs inside ``store.import_guard()``, which
journals it: if the process is killed (nothing above runs then), the next open of the project finds
the journal and removes the files no row references, while a live import's files are left alone.

Re-importing what the project already holds is not an error: the report says so and names the
user's files (never the internal content-hash names).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from studio.services.data.importing import limits
from studio.services.data.importing.formats.common import (
    RawBox,
    RawCategory,
    RawDataset,
    RawImage,
    abort,
    fix_box,
    parent_name,
)
from studio.services.data.importing.image_check import BadImage, check_image
from studio.services.data.importing.report import ImportReport
from studio.store import Category, Image, ImageProblem, ImportRecord, ProjectStore
from studio.store.models import utcnow
from studio.text import clip, quote

Progress = Callable[[float, str], None]
PALETTE = [
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
    "#dcbeff",
    "#9a6324",
    "#800000",
    "#aaffc3",
    "#808000",
    "#000075",
    "#a9a9a9",
    "#ffd8b1",
]
IO_WORKERS = min(8, 2 * (os.cpu_count() or 2))
BATCH = 32
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"
IMAGE_COLUMNS = (
    "file_name",
    "original_name",
    "width",
    "height",
    "split",
    "content_hash",
    "status",
    "version",
    "import_id",
    "created_at",
    "updated_at",
)
ANNOTATION_COLUMNS = (
    "image_id",
    "category_id",
    "x",
    "y",
    "w",
    "h",
    "source",
    "version",
    "created_at",
    "updated_at",
)


@dataclass
class _Stored:
    raw: RawImage
    sha256: str
    width: int
    height: int
    file_name: str
    orientation: int = 1  # EXIF orientation applied at import (1: none)
    raw_size: tuple[int, int] | None = None  # size before that rotation


def write_dataset(
    store: ProjectStore, raw: RawDataset, report: ImportReport, progress: Progress
) -> ImportReport:
    """Store ``raw`` in the project; raises ``ImportAborted`` (project unchanged) on a fatal problem."""
    report.format = raw.format
    if not raw.images:
        raise abort(report, report.source, "no images found in the dataset")
    with store.import_guard() as new_files:
        try:
            t0 = time.perf_counter()
            stored = _copy_images(store, raw.images, report, progress, new_files)
            report.timings["images"] = time.perf_counter() - t0
            if not stored:
                return _nothing_stored(report, len(raw.images))
            progress(0.85, "writing the database")
            t0 = time.perf_counter()
            with store.session() as s:
                _write_rows(s, raw, stored, report)
            report.timings["database"] = time.perf_counter() - t0
            progress(1.0, report.summary())
        except OperationalError as e:
            _remove_new_files(store, new_files)
            if "locked" in str(e):
                raise abort(
                    report,
                    store.db_path.name,
                    "the project is busy (another process is writing to it); nothing was imported, try again",
                ) from None
            raise
        except BaseException:
            _remove_new_files(store, new_files)
            raise
    return report


def _nothing_stored(report: ImportReport, n: int) -> ImportReport:
    """All images already in the project is a finished no-op; anything else unusable is an abort."""
    present = report.counts["images_already_in_project"]
    if present == n:
        report.note = f"all {n} images are already in this project (same content); nothing was changed"
        return report
    also = f"; {present} are already in this project" if present else ""
    raise abort(report, report.source, f"none of the {n} images could be imported{also} (see the problems)")


def _copy_images(
    store: ProjectStore,
    images: list[RawImage],
    report: ImportReport,
    progress: Progress,
    new_files: list[str],
) -> list[_Stored]:
    with store.session(readonly=True) as s:
        known = {h: n for h, n in s.execute(select(Image.content_hash, Image.original_name))}

    def work(raw: RawImage) -> _Stored | str:
        if raw.path is None:
            return "image file not found"
        try:
            chk = check_image(raw.path)
        except BadImage as e:
            return str(e)
        if chk.sha256 in known:
            return chk.sha256
        rel = store.write_image_bytes(chk.data, chk.sha256, chk.suffix, new_files)
        return _Stored(raw, chk.sha256, chk.width, chk.height, rel, chk.orientation, chk.raw_size)

    stored: list[_Stored] = []
    seen: dict[str, str] = {}
    step = max(1, len(images) // 50)
    batches = [images[i : i + BATCH] for i in range(0, len(images), BATCH)]  # fewer, larger tasks
    with ThreadPoolExecutor(IO_WORKERS) as pool:
        results = chain.from_iterable(pool.map(lambda batch: [work(r) for r in batch], batches))
        for i, (raw, res) in enumerate(zip(images, results, strict=True)):
            if i % step == 0:
                progress(0.85 * i / len(images), f"checking and copying images ({i}/{len(images)})")
            if isinstance(res, _Stored) and res.sha256 in seen:
                res = f"duplicate of {quote(seen[res.sha256])} (same content)"
            elif isinstance(res, str) and res in known:
                _already_present(report, raw, known[res])
                continue
            if isinstance(res, str):
                _skip_image(report, raw, res)
                continue
            seen[res.sha256] = raw.where
            stored.append(res)
            if res.orientation != 1:
                report.count("images_rotated_by_exif")
    return stored


def _already_present(report: ImportReport, raw: RawImage, original_name: str) -> None:
    same = "" if Path(original_name).name == Path(raw.name).name else f" as {quote(original_name)}"
    boxes = f" (nor its {len(raw.boxes)} boxes)" if raw.boxes else ""
    report.add(
        raw.where, f"already in this project (same content{same}); not imported again{boxes}", "warning"
    )
    report.count("images_already_in_project")


def _capped_boxes(report: ImportReport, st: _Stored) -> list:
    """The image's boxes, at most ``MAX_BOXES_PER_IMAGE`` (the rest reported once, as one problem)."""
    boxes = st.raw.boxes
    if len(boxes) <= limits.MAX_BOXES_PER_IMAGE:
        return boxes
    extra = len(boxes) - limits.MAX_BOXES_PER_IMAGE
    report.add(
        st.raw.where,
        f"image has {len(boxes):,} boxes; only the first {limits.MAX_BOXES_PER_IMAGE:,} are kept "
        f"(limit per image), {extra:,} skipped",
    )
    report.count("boxes_skipped", extra)
    return boxes[: limits.MAX_BOXES_PER_IMAGE]


def _skip_image(report: ImportReport, raw: RawImage, reason: str) -> None:
    report.add(
        raw.where, f"{reason}; image skipped" + (f" with its {len(raw.boxes)} boxes" if raw.boxes else "")
    )
    report.count("images_skipped")
    report.count("boxes_skipped", len(raw.boxes))


def _write_rows(s: Session, raw: RawDataset, stored: list[_Stored], report: ImportReport) -> None:
    """Bulk inserts at the driver level (``executemany`` of plain tuples): 20k boxes in well under a
    second, where per-row ORM/Core parameter processing would dominate the whole import."""
    record = ImportRecord(source=clip(report.source, limits.MAX_WHERE_CHARS), format=raw.format, report={})
    s.add(record)
    s.flush()
    cat_ids = _ensure_categories(s, raw.categories, report)
    now = utcnow()
    stamp = now.strftime(SQLITE_DATETIME)  # the same text SQLAlchemy's SQLite DateTime writes
    _bulk(
        s,
        "image",
        IMAGE_COLUMNS,
        [
            (
                st.file_name,
                clip(st.raw.name, limits.MAX_FILE_NAME_CHARS),
                st.width,
                st.height,
                st.raw.split,
                st.sha256,
                "labeled" if st.raw.labeled else "unlabeled",
                1,
                record.id,
                stamp,
                stamp,
            )
            for st in stored
        ],
    )
    id_of = dict(s.execute(select(Image.content_hash, Image.id).where(Image.import_id == record.id)).all())
    ann_rows: list[tuple] = []
    problem_rows: list[dict] = []
    for st in stored:
        image_id = id_of[st.sha256]

        def problem(kind: str, msg: str, image_id: int = image_id) -> None:
            problem_rows.append(_problem(image_id, kind, msg, record.id, now))

        for kind, note in st.raw.notes:
            problem(kind, note)
        for warning in _size_warnings(st):
            report.add(st.raw.where, warning, "warning")
            problem("size_mismatch", warning)
        for box, fixed in _fixed_boxes(st, report, problem):
            ann_rows.append((image_id, cat_ids[box.label], *fixed, "gt", 1, stamp, stamp))
    _bulk(s, "annotation", ANNOTATION_COLUMNS, ann_rows)
    if problem_rows:
        s.execute(insert(ImageProblem), problem_rows)
    report.count("images_imported", len(stored))
    report.count("boxes_imported", len(ann_rows))
    record.report = report.to_dict()


def _fixed_boxes(
    st: _Stored, report: ImportReport, problem: Callable[[str, str], None]
) -> list[tuple[RawBox, tuple[float, float, float, float]]]:
    """The image's boxes fixed against its real (upright) size; a skipped or clipped box is reported
    and becomes an ``ImageProblem`` row, so the gallery's "has problems" filter finds its image."""
    out = []
    for box in _capped_boxes(report, st):
        fixed, reason = fix_box(box, st.width, st.height)
        if reason:
            reason += _raw_frame_hint(box, st)
        if fixed is None:
            report.add(box.where, f"{reason}; box skipped")
            report.count("boxes_skipped")
            problem("box_skipped", clip(f"{box.where}: {reason}; box skipped", limits.MAX_REASON_CHARS))
            continue
        if reason:
            report.add(box.where, reason, "warning")
            report.count("boxes_clipped")
            problem("box_clipped", reason)
        out.append((box, fixed))
    return out


def _bulk(s: Session, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    if rows:
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        s.connection().exec_driver_sql(sql, rows)


def _problem(image_id: int, kind: str, message: str, import_id: int, now: object) -> dict:
    return {"image_id": image_id, "kind": kind, "message": message, "import_id": import_id, "created_at": now}


def _size_warnings(st: _Stored) -> list[str]:
    ds = st.raw.declared_size
    if ds is None or (round(ds[0]) == st.width and round(ds[1]) == st.height):
        return []
    raw = st.raw_size
    why = (
        " (that is its size before the EXIF rotation; boxes are read in the displayed, upright frame)"
        if raw is not None and (round(ds[0]), round(ds[1])) == raw
        else ""
    )
    return [
        f"annotation file says {ds[0]:g}x{ds[1]:g} but the image is {st.width}x{st.height}; "
        f"the real size is used{why}"
    ]


def _raw_frame_hint(box: RawBox, st: _Stored) -> str:
    """When a box that does not fit the upright image would fit it as stored before its EXIF rotation,
    say so: the annotation tool drew it on the unrotated pixels (boxes are read in the displayed frame)."""
    if st.raw_size is None or st.raw_size == (st.width, st.height):
        return ""
    fixed, reason = fix_box(box, *st.raw_size)
    if fixed is None or reason is not None:
        return ""
    return (
        f"; it fits only the image as stored before its EXIF rotation (orientation {st.orientation}, "
        f"{st.raw_size[0]}x{st.raw_size[1]}): boxes are read in the displayed frame"
    )


def _ensure_categories(s: Session, cats: list[RawCategory], report: ImportReport) -> dict[str, int]:
    """Name -> id, creating missing classes and linking supercategories (creating parents as needed)."""
    by_name = {c.name: c for c in s.scalars(select(Category))}

    def get(name: str, source_id: int | None) -> Category:
        if name not in by_name:
            by_name[name] = Category(
                name=name, source_id=source_id, color=PALETTE[len(by_name) % len(PALETTE)]
            )
            s.add(by_name[name])
            report.count("categories_created")
        return by_name[name]

    for rc in cats:
        get(rc.name, rc.source_id)
    for rc in cats:
        pname = parent_name(rc)
        if pname is None:
            continue
        cat, parent = by_name[rc.name], get(pname, None)
        if cat.parent is None and not _is_ancestor(cat, parent):
            cat.parent = parent
        elif cat.parent is None:
            report.add(rc.name, f"supercategory '{pname}' would make a cycle; link ignored", "warning")
    s.flush()
    return {name: c.id for name, c in by_name.items()}


def _is_ancestor(cat: Category, node: Category | None) -> bool:
    while node is not None:
        if node is cat:
            return True
        node = node.parent
    return False


def _remove_new_files(store: ProjectStore, new_files: list[str]) -> None:
    """Delete files this import wrote, unless another writer committed a row for them meanwhile."""
    if not new_files:
        return
    try:
        with store.session(readonly=True) as s:
            keep = {str(store.path / n) for n in s.scalars(select(Image.file_name))}
    except Exception:
        keep = set()
    for f in set(new_files) - keep:
        Path(f).unlink(missing_ok=True)
