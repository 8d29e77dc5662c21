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

from sqlalchemy import bindparam, exists, select, update

from studio.errors import StudioError
from studio.services.data.gallery import UNASSIGNED as UNASSIGNED  # re-exported for the Label page
from studio.services.data.gallery import filter_images, with_descendants
from studio.services.data.importing.report import ImportReport
from studio.services.label.box_matching import MATCH_IOU as MATCH_IOU
from studio.services.label.box_matching import SAME_BOX_PX as SAME_BOX_PX
from studio.services.label.box_matching import BoxDiff, match_boxes
from studio.store.db import ProjectStore
from studio.store.models import Annotation, Category, Image, ImageProblem, utcnow

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
    order: str = "file",
) -> list[int]:
    """Image ids to label, unlabeled first (then by id), after the filters.

    ``split`` is a split name, ``"unassigned"`` or None; ``category_id`` keeps images with a ground-truth
    box of that class (or of a sub-class); ``has_problems`` keeps images with import problems.
    ``order``: ``"file"``, or "most useful first" (``"useful"`` / ``"useful:<run id>"``, see
    :mod:`studio.services.label.next`) for the unlabeled images.
    """
    category_ids = with_descendants(store, category_id) if category_id is not None else None
    stmt = filter_images(select(Image.id), split, category_ids)
    if status:
        stmt = stmt.where(Image.status == status)
    if has_problems:
        stmt = stmt.where(exists().where(ImageProblem.image_id == Image.id))
    with store.session(readonly=True) as s:
        stmt = stmt.order_by((Image.status != "unlabeled"), Image.id)
        ids = list(s.scalars(stmt))
    if order == "file":
        return ids
    from studio.services.label.next import useful_order  # next imports this module's neighbours

    return useful_order(store, ids, order)


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


#: The columns of :class:`Box`, in its field order: plain rows load ~5x faster than ORM objects, which
#: matters for images with thousands of boxes.
_BOX_COLUMNS = select(
    Annotation.x,
    Annotation.y,
    Annotation.w,
    Annotation.h,
    Annotation.category_id,
    Annotation.id,
    Annotation.version,
    Annotation.source,
    Annotation.score,
)


def _state(store: ProjectStore, session, image_id: int) -> ImageState:
    image = session.get(Image, image_id)
    if image is None:
        raise StudioError(f"Image #{image_id} does not exist (it may have been deleted).")
    boxes, proposals = [], []
    for row in session.execute(_BOX_COLUMNS.where(Annotation.image_id == image_id).order_by(Annotation.id)):
        (boxes if row.source == "gt" else proposals).append(Box(*row))
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


def _status_after(current: str, has_boxes: bool, no_objects: bool, edited: bool, *, had_boxes: bool) -> str:
    """Boxes -> labeled (a reviewed image stays reviewed until edited); marked empty -> labeled;
    last box deleted -> unlabeled; an untouched empty image keeps its status (e.g. "no objects")."""
    if has_boxes:
        return current if current == "reviewed" and not edited else "labeled"
    if no_objects:
        return "labeled"
    return "unlabeled" if had_boxes else current


@dataclass
class _SavePlan:
    """What a save will write, worked out from a read snapshot taken at ``base_version``."""

    state: ImageState  # the snapshot the plan was made from
    diff: BoxDiff[Box]
    drop: list[Box]  # proposals the editor no longer shows (rejected)
    status: str

    @property
    def changes(self) -> bool:
        d = self.diff
        return bool(d.updates or d.inserts or d.deletes or self.drop) or self.status != self.state.status

    def summary(self) -> str:
        d = self.diff
        return (
            f"Saved: {len(d.inserts)} added, {len(d.updates)} changed, {len(d.deletes)} deleted"
            + (f", {len(self.drop)} proposal(s) rejected" if self.drop else "")
            + "."
        )


def _plan(
    store: ProjectStore,
    image_id: int,
    boxes: list[Box],
    *,
    no_objects: bool,
    keep_proposals: Iterable[int] | None,
    status: str | None,
) -> _SavePlan:
    """Read the image and match its boxes, in a read transaction (no write lock: matching thousands of
    boxes must not block the trainer's heartbeat or another tab)."""
    with store.session(readonly=True) as s:
        state = _state(store, s, image_id)
        valid = set(s.scalars(select(Category.id)))
    clipped = []
    for b in boxes:
        if b.category_id not in valid:
            raise StudioError(f"Class #{b.category_id} does not exist (deleted in another tab?).")
        c = _clip(b, state.width, state.height)
        if c is not None:
            clipped.append(c)
    diff = match_boxes(state.boxes, clipped)
    drop = []
    if keep_proposals is not None:
        keep = set(keep_proposals)
        drop = [p for p in state.proposals if p.id not in keep]
    edited = bool(diff.updates or diff.inserts or diff.deletes)
    if status is None:
        status = _status_after(state.status, bool(clipped), no_objects, edited, had_boxes=bool(state.boxes))
    return _SavePlan(state, diff, drop, status)


def _write(s, image_id: int, base_version: int, plan: _SavePlan) -> bool:
    """Apply ``plan`` in the write transaction ``s``; False when the image or a row changed since the
    plan was read (the caller rolls back). Rows are written with executemany, each version-checked."""
    t = Annotation.__table__
    bumped = s.execute(
        update(Image)
        .where(Image.id == image_id, Image.version == base_version)
        .values(version=Image.version + 1, status=plan.status, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if bumped.rowcount != 1:
        return False
    conn, d = s.connection(), plan.diff
    if d.updates:
        stmt = (
            t.update()
            .where(t.c.id == bindparam("b_id"), t.c.version == bindparam("b_version"))
            .values(x=bindparam("b_x"), y=bindparam("b_y"), w=bindparam("b_w"), h=bindparam("b_h"))
            .values(category_id=bindparam("b_cat"), version=t.c.version + 1, updated_at=utcnow())
        )
        rows = [
            {"b_id": o.id, "b_version": o.version, "b_x": n.x, "b_y": n.y, "b_w": n.w, "b_h": n.h}
            | {"b_cat": n.category_id}
            for o, n in d.updates
        ]
        if conn.execute(stmt, rows).rowcount != len(rows):
            return False
    gone = d.deletes + plan.drop
    if gone:
        stmt = t.delete().where(t.c.id == bindparam("b_id"), t.c.version == bindparam("b_version"))
        if conn.execute(stmt, [{"b_id": b.id, "b_version": b.version} for b in gone]).rowcount != len(gone):
            return False
    if d.inserts:
        fields = ("category_id", "x", "y", "w", "h")
        conn.execute(
            t.insert(),
            [{"image_id": image_id, "source": "gt"} | {f: getattr(b, f) for f in fields} for b in d.inserts],
        )
    return True


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

    The boxes are matched outside the write lock against a snapshot at ``base_version``; the write then
    re-checks the version (and each row's version) inside the lock, so the snapshot cannot be stale.
    Raises :class:`VersionConflict`.
    """
    boxes = list(boxes)
    if no_objects and boxes:
        raise StudioError("'No objects' needs an image without boxes: delete the boxes first.")
    plan = _plan(store, image_id, boxes, no_objects=no_objects, keep_proposals=keep_proposals, status=status)
    if not plan.changes:
        return SaveResult(plan.state, changed=False, summary="No changes to save.")
    if plan.state.version != base_version:
        raise _conflict(store, image_id, "someone else")
    with store.session() as s:
        if not _write(s, image_id, base_version, plan):
            s.rollback()
            raise _conflict(store, image_id, "someone else")
    before = (plan.state.boxes, plan.state.status)
    return SaveResult(load_image(store, image_id), changed=True, before=before, summary=plan.summary())


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
