"""Labeling: the image queue, loading an image's boxes, and version-checked saves with undo.

Why whole-image saves guarded by ``Image.version``: the editor hands back the full list of boxes of
one image (the drawing component does not keep row ids), so a save is "make the image look like
this". It is refused when the image changed since the editor loaded it (another tab saved, a
proposal batch ran), so two tabs never silently overwrite each other. The service diffs the incoming
boxes against the stored rows: untouched boxes keep their row and ``Annotation.version``, a moved or
re-classed box is updated (its version goes up), and only the rest is inserted or deleted.

Why undo lives in session state (:class:`UndoHistory`, one per browser tab) and not in the store:
undo is one user's editing history. A shared table would let tab B undo tab A's work, and would need
a schema change for data that is worthless after the tab closes. Undo is itself a version-checked
save, so it can never roll back someone else's newer edit.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import exists, select, update

from studio.errors import StudioError
from studio.services.data.gallery import UNASSIGNED as UNASSIGNED  # re-exported for the Label page
from studio.services.data.gallery import filter_images, with_descendants
from studio.services.data.importing.report import ImportReport
from studio.store.db import ProjectStore
from studio.store.models import Annotation, Category, Image, ImageProblem, utcnow

#: Two boxes closer than this (pixels, every side) are the same box: the editor rounds to integers.
SAME_BOX_PX = 0.51
#: A changed box is matched to a stored one when they overlap at least this much (IoU).
MATCH_IOU = 0.3
UNDO_DEPTH = 20


@dataclass
class Box:
    """A box in absolute pixels (top-left ``x, y`` + ``w, h``). ``id``/``version`` None = new box."""

    x: float
    y: float
    w: float
    h: float
    category_id: int
    id: int | None = None
    version: int | None = None
    source: str = "gt"
    score: float | None = None

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.x + self.w, self.y + self.h)


@dataclass
class ImageState:
    """What the editor shows for one image: ground truth, proposals, and the version it is based on."""

    image_id: int
    path: str
    original_name: str
    width: int
    height: int
    split: str | None
    status: str
    version: int
    boxes: list[Box]
    proposals: list[Box]
    problems: list[str] = field(default_factory=list)


@dataclass
class SaveResult:
    state: ImageState
    changed: bool
    #: The ground truth before this save (boxes, status), for the undo history; None if nothing changed.
    before: tuple[list[Box], str] | None = None
    summary: str = ""


class VersionConflict(StudioError):
    """The image changed since it was loaded; ``current`` is what the store holds now."""

    def __init__(self, message: str, current: ImageState) -> None:
        super().__init__(message)
        self.current = current


# -- queue -------------------------------------------------------------------------------------------


def queue(
    store: ProjectStore,
    *,
    split: str | None = None,
    category_id: int | None = None,
    status: str | None = None,
    has_problems: bool = False,
) -> list[int]:
    """Image ids to label, unlabeled first (then by id), after the filters.

    ``split`` is a split name, ``"unassigned"`` or None; ``category_id`` keeps images with a ground-truth
    box of that class (or of a sub-class); ``has_problems`` keeps images with import problems.
    """
    category_ids = with_descendants(store, category_id) if category_id is not None else None
    stmt = filter_images(select(Image.id), split, category_ids)
    if status:
        stmt = stmt.where(Image.status == status)
    if has_problems:
        stmt = stmt.where(exists().where(ImageProblem.image_id == Image.id))
    with store.session(readonly=True) as s:
        stmt = stmt.order_by((Image.status != "unlabeled"), Image.id)
        return list(s.scalars(stmt))


def position_text(ids: Sequence[int], image_id: int | None) -> str:
    """ "12 / 340" (1-based) or a hint when the queue is empty / the image is not in it."""
    if not ids:
        return "0 / 0"
    if image_id not in ids:
        return f"– / {len(ids)}"
    return f"{list(ids).index(image_id) + 1} / {len(ids)}"


def neighbour(ids: Sequence[int], image_id: int | None, step: int) -> int | None:
    """The id ``step`` places from ``image_id`` in the queue (clamped); the first one if not in it."""
    if not ids:
        return None
    ids = list(ids)
    if image_id not in ids:
        return ids[0]
    i = min(max(ids.index(image_id) + step, 0), len(ids) - 1)
    return ids[i]


# -- load ----------------------------------------------------------------------------------------------


def _box(a: Annotation) -> Box:
    return Box(a.x, a.y, a.w, a.h, a.category_id, a.id, a.version, a.source, a.score)


def _state(store: ProjectStore, session, image_id: int) -> ImageState:
    image = session.get(Image, image_id)
    if image is None:
        raise StudioError(f"Image #{image_id} does not exist (it may have been deleted).")
    anns = session.scalars(select(Annotation).where(Annotation.image_id == image_id).order_by(Annotation.id))
    boxes, proposals = [], []
    for a in anns:
        (boxes if a.source == "gt" else proposals).append(_box(a))
    problems = [f"{p.kind}: {p.message}" for p in image.problems]
    return ImageState(
        image.id,
        str(store.image_path(image)),
        image.original_name,
        image.width,
        image.height,
        image.split,
        image.status,
        image.version,
        boxes,
        proposals,
        problems,
    )


def load_image(store: ProjectStore, image_id: int) -> ImageState:
    """The image's current boxes and proposals and the version a later save must be based on."""
    with store.session(readonly=True) as s:
        return _state(store, s, image_id)


# -- save ----------------------------------------------------------------------------------------------


def _iou(a: Box, b: Box) -> float:
    ax0, ay0, ax1, ay1 = a.xyxy
    bx0, by0, bx1, by1 = b.xyxy
    iw, ih = min(ax1, bx1) - max(ax0, bx0), min(ay1, by1) - max(ay0, by0)
    inter = max(0.0, iw) * max(0.0, ih)
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def _same(a: Box, b: Box) -> bool:
    return a.category_id == b.category_id and all(
        abs(p - q) <= SAME_BOX_PX for p, q in zip(a.xyxy, b.xyxy, strict=True)
    )


def match_boxes(
    stored: list[Box], incoming: list[Box]
) -> tuple[list[Box], list[tuple[Box, Box]], list[Box], list[Box]]:
    """Diff: (unchanged stored, (stored, new values) updates, inserts, deletes).

    Incoming boxes with an ``id`` match that row; the rest match identical boxes first, then the most
    overlapping remaining box (a drag or resize), so a small edit updates one row instead of
    deleting and re-creating every box.
    """
    left = {b.id: b for b in stored}
    unchanged, updates, inserts = [], [], []
    pending = []
    for box in incoming:
        if box.id is not None and box.id in left:
            old = left.pop(box.id)
            (unchanged.append(old) if _same(old, box) else updates.append((old, box)))
        else:
            pending.append(box)
    rest = []
    for box in pending:
        twin = next((b for b in left.values() if _same(b, box)), None)
        if twin is not None:
            unchanged.append(left.pop(twin.id))
        else:
            rest.append(box)
    for box in rest:
        best = max(left.values(), key=lambda b: _iou(b, box), default=None)
        if best is not None and _iou(best, box) >= MATCH_IOU:
            updates.append((left.pop(best.id), box))
        else:
            inserts.append(box)
    return unchanged, updates, inserts, list(left.values())


def _clip(box: Box, width: int, height: int) -> Box | None:
    x0, y0 = max(0.0, min(box.x, box.x + box.w)), max(0.0, min(box.y, box.y + box.h))
    x1, y1 = min(float(width), max(box.x, box.x + box.w)), min(float(height), max(box.y, box.y + box.h))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return Box(x0, y0, x1 - x0, y1 - y0, box.category_id, box.id, box.version, box.source, box.score)


def _conflict(store: ProjectStore, image_id: int, what: str) -> VersionConflict:
    current = load_image(store, image_id)
    return VersionConflict(
        f"Not saved: {what} changed this image since you opened it (another tab or a model pre-label "
        f"run saved version {current.version}). The current state is shown now; redo your edit on it.",
        current,
    )


def _bump(session, image: Image, base_version: int, status: str) -> bool:
    res = session.execute(
        update(Image)
        .where(Image.id == image.id, Image.version == base_version)
        .values(version=Image.version + 1, status=status, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return res.rowcount == 1


def _status_after(current: str, has_boxes: bool, no_objects: bool, edited: bool, *, had_boxes: bool) -> str:
    """Boxes -> labeled (a reviewed image stays reviewed until edited); marked empty -> labeled;
    last box deleted -> unlabeled; an untouched empty image keeps its status (e.g. "no objects")."""
    if has_boxes:
        return current if current == "reviewed" and not edited else "labeled"
    if no_objects:
        return "labeled"
    return "unlabeled" if had_boxes else current


def save_image(
    store: ProjectStore,
    image_id: int,
    boxes: Iterable[Box],
    base_version: int,
    *,
    no_objects: bool = False,
    keep_proposals: Iterable[int] | None = None,
    status: str | None = None,
) -> SaveResult:
    """Make the image's ground truth equal to ``boxes`` if nobody saved since ``base_version``.

    ``no_objects=True`` with no boxes marks the image labeled (it truly has no objects); an image whose
    last box is deleted goes back to unlabeled. ``keep_proposals`` (ids) are the proposals still shown
    in the editor; others the user deleted there are rejected. None leaves proposals alone.
    A save with no change writes nothing (no new version). ``status`` forces the image status (undo).
    Raises :class:`VersionConflict`.
    """
    boxes = list(boxes)
    if no_objects and boxes:
        raise StudioError("'No objects' needs an image without boxes: delete the boxes first.")
    with store.session() as s:
        image = s.get(Image, image_id)
        if image is None:
            raise StudioError(f"Image #{image_id} does not exist (it may have been deleted).")
        valid = set(s.scalars(select(Category.id)))
        clipped = []
        for b in boxes:
            if b.category_id not in valid:
                raise StudioError(f"Class #{b.category_id} does not exist (deleted in another tab?).")
            c = _clip(b, image.width, image.height)
            if c is not None:
                clipped.append(c)
        rows = {a.id: a for a in s.scalars(select(Annotation).where(Annotation.image_id == image_id))}
        stored = [_box(a) for a in rows.values() if a.source == "gt"]
        unchanged, updates, inserts, deletes = match_boxes(stored, clipped)
        drop = []
        if keep_proposals is not None:
            keep = set(keep_proposals)
            drop = [a for a in rows.values() if a.source == "proposal" and a.id not in keep]
        edited = bool(updates or inserts or deletes)
        if status is None:
            status = _status_after(image.status, bool(clipped), no_objects, edited, had_boxes=bool(stored))
        if not (edited or drop) and status == image.status:
            return SaveResult(_state(store, s, image_id), changed=False, summary="No changes to save.")
        before = ([_box(rows[b.id]) for b in stored], image.status)
        if not _bump(s, image, base_version, status):
            s.rollback()
            raise _conflict(store, image_id, "someone else")
        for old, new in updates:
            row = rows[old.id]
            row.x, row.y, row.w, row.h, row.category_id = new.x, new.y, new.w, new.h, new.category_id
        for b in inserts:
            s.add(
                Annotation(
                    image_id=image_id, category_id=b.category_id, x=b.x, y=b.y, w=b.w, h=b.h, source="gt"
                )
            )
        for b in deletes:
            s.delete(rows[b.id])
        for a in drop:
            s.delete(a)
        s.flush()
        s.expire_all()
        summary = (
            f"Saved: {len(inserts)} added, {len(updates)} changed, {len(deletes)} deleted"
            + (f", {len(drop)} proposal(s) rejected" if drop else "")
            + "."
        )
        return SaveResult(_state(store, s, image_id), changed=True, before=before, summary=summary)


# -- adding images -------------------------------------------------------------------------------------


def add_images(store: ProjectStore, sources: Sequence[Path], *, progress=None) -> ImportReport:
    """Add uploaded image files, or one folder / ``.zip``, through the importer's validation.

    Loose files are staged in a temporary folder (same-named uploads get " (2)" …, since the name is
    kept as the image's original name) and imported as one folder, so they get one import report and
    one transaction. Raises :class:`ImportAborted` like :func:`import_dataset`.
    """
    from studio.services.data.importing.importer import import_dataset

    sources = [Path(p) for p in sources]
    if not sources:
        raise StudioError("Choose images or a .zip to upload, or type a folder / .zip path.")
    if len(sources) == 1:  # a folder, a .zip or one image: the importer reads it as it is
        return import_dataset(store, sources[0], progress=progress)
    missing = [p.name for p in sources if not p.is_file()]
    if missing:
        raise StudioError("These uploads are missing or not files: " + ", ".join(missing) + ".")
    with tempfile.TemporaryDirectory(prefix="studio-add-") as tmp:
        for src in sources:
            dest, n = Path(tmp) / src.name, 1
            while dest.exists():
                n += 1
                dest = Path(tmp) / f"{src.stem} ({n}){src.suffix}"
            shutil.copyfile(src, dest)
        return import_dataset(store, Path(tmp), progress=progress)


# -- undo ------------------------------------------------------------------------------------------------


@dataclass
class UndoHistory:
    """Per-tab undo stacks: image id -> snapshots (boxes, status) taken before each save."""

    stacks: dict[int, list[tuple[list[Box], str]]] = field(default_factory=dict)
    depth: int = UNDO_DEPTH

    def push(self, image_id: int, snapshot: tuple[list[Box], str] | None) -> None:
        if snapshot is None:
            return
        stack = self.stacks.setdefault(image_id, [])
        stack.append(snapshot)
        del stack[: max(0, len(stack) - self.depth)]

    def size(self, image_id: int) -> int:
        return len(self.stacks.get(image_id, []))


def undo(store: ProjectStore, history: UndoHistory, image_id: int, base_version: int) -> SaveResult:
    """Restore the ground truth from before the last save of this tab on this image.

    It is a normal version-checked save: if someone else saved since, it is refused and the snapshot
    stays on the stack.
    """
    stack = history.stacks.get(image_id) or []
    if not stack:
        raise StudioError("Nothing to undo on this image.")
    boxes, status = stack[-1]
    fresh = [Box(b.x, b.y, b.w, b.h, b.category_id) for b in boxes]
    result = save_image(store, image_id, fresh, base_version, status=status)
    stack.pop()
    result.summary = "Undone: " + result.summary.removeprefix("Saved: ")
    return result


__all__ = [
    "Box",
    "ImageState",
    "SaveResult",
    "UndoHistory",
    "add_images",
    "VersionConflict",
    "load_image",
    "match_boxes",
    "neighbour",
    "position_text",
    "queue",
    "save_image",
    "undo",
]
