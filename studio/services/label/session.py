"""The Label tab's use cases, one function per user action, returning what the tab shows next.

Why here and not in the page: each action is a small sequence (save the editor first, then move, open
the queue, propose, accept…) with rules that matter — a refused save shows the current state and
goes nowhere, a filter pick that changes nothing does nothing, undo with nothing to undo only says
so. Written on plain data (:class:`Editing` in, :class:`LabelView` out) they are tested without a
browser, and the page only turns a :class:`LabelView` into component updates.

Every string that came from a file or a user (file names, class names, problems, model class names)
is escaped here for the Markdown it is shown in (:func:`studio.text.md_text`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from studio.errors import StudioError
from studio.services.data.classes import add_class
from studio.services.label import editor_format as ed
from studio.services.label import labeling as lab
from studio.services.label import next as nxt
from studio.services.label import proposals as prop
from studio.services.label.saving import LabelCursor, QueueFilter, flush
from studio.services.train.checkpoints import runs_with_checkpoint
from studio.store.db import ProjectStore
from studio.text import md_text

#: The value of a filter dropdown meaning "no filter".
ALL = "all"
NO_IMAGES = "No images match. Add images below or change the filters."
NO_PROJECT = "No project open."
NOTHING_TO_UNDO = "Nothing to undo on this image."
FROM_REVIEW = "Opened from Review: fix the boxes, save, then go back to Review to re-score."


def queue_filter(
    split: str | None, class_id: object, status: str | None, problems: object, order: str | None = None
) -> QueueFilter:
    """The filter dropdowns' values (``"all"`` = no filter) and the queue order as a :class:`QueueFilter`."""
    return QueueFilter(
        split=None if split in (None, ALL) else split,
        category_id=None if class_id in (None, ALL) else int(class_id),  # type: ignore[call-overload]
        status=None if status in (None, ALL) else status,
        has_problems=bool(problems),
        order=order or nxt.ORDER_FILE,
    )


def order_choices(store: ProjectStore) -> list[tuple[str, str]]:
    """The queue-order dropdown: file order, most useful first by diversity, and by each run's predictions."""
    runs = [
        (f"Most useful first · {c.run_name}", nxt.order_value(c.run_id)) for c in runs_with_checkpoint(store)
    ]
    return [("File order", nxt.ORDER_FILE), ("Most useful first (diversity)", nxt.order_value(None)), *runs]


@dataclass
class Editing:
    """What every action that saves first gets from the tab: the project, the tab's cursor and undo
    history, the editor's value, and the class given to boxes drawn without one."""

    slug: str
    cursor: LabelCursor
    history: lab.UndoHistory
    editor: dict | None
    default_class: int | None


@dataclass
class LabelView:
    """Everything the tab shows after an action. ``redraw=False``: only ``message`` changes (the
    editor and the rest stay as they are, e.g. undo with nothing to undo)."""

    cursor: LabelCursor
    message: str = ""
    editor: dict | None = None
    label_list: list[str] | None = None  # the editor's classes (None: leave them)
    label_colors: list[str] | None = None
    position: str = "0 / 0"
    info: str = ""
    split: str | None = None
    picks: list[tuple[str, int]] = field(default_factory=list)  # proposals: (label, annotation id)
    class_choices: list[tuple[str, int]] = field(default_factory=list)
    class_value: int | None = None
    redraw: bool = True
    reason: str = ""  # why this image is here in a most-useful-first queue ('' in file order)


def info_text(state: lab.ImageState) -> str:
    """The image line: the user's own file name (never the stored hash name), size, status, boxes."""
    lines = [
        f"**{md_text(state.original_name, 300)}** · image #{state.image_id} · {state.width}×{state.height} · "
        f"status **{state.status}** · {len(state.boxes)} box(es) · version {state.version}"
    ]
    if state.proposals:
        lines.append(f"{len(state.proposals)} proposal(s) to review (magenta).")
    lines += [f"⚠️ {md_text(p, 500)}" for p in state.problems]
    return "\n\n".join(lines)


def view(
    store: ProjectStore,
    cursor: LabelCursor,
    state: lab.ImageState | None,
    message: str,
    default_class: int | None,
) -> LabelView:
    """What the tab shows for ``state`` (None: the queue is empty), with the cursor moved onto it."""
    classes = ed.label_classes(store)
    ids = [c.id for c in classes.offered]
    default = default_class if default_class in ids else (ids[0] if ids else None)
    choices = [(f"{i + 1} · {c.name}" if i < 9 else c.name, c.id) for i, c in enumerate(classes.offered)]
    labels, colors = ed.editor_classes(classes)
    out = LabelView(cursor, message, None, labels, colors, class_choices=choices, class_value=default)
    if state is None:
        out.cursor = replace(cursor, image_id=None, version=None, shown=[])
        out.position, out.info = lab.position_text(cursor.queue, None), NO_IMAGES
        return out
    out.editor = ed.editor_value(state, classes)
    out.cursor = replace(cursor, image_id=state.image_id, version=state.version, shown=out.editor["boxes"])
    out.position, out.info = lab.position_text(cursor.queue, state.image_id), info_text(state)
    out.split = state.split or lab.UNASSIGNED
    order = cursor.filters.order if cursor.filters else None
    reason = nxt.reason_for(store, order, state.image_id)
    out.reason = f"**Why this image next:** {md_text(reason, 500)}" if reason else ""
    out.picks = [
        (ed.proposal_label(classes.by_id[p.category_id].name, p.score, p.id), p.id) for p in state.proposals
    ]
    return out


def no_project() -> LabelView:
    return LabelView(LabelCursor(), info=NO_PROJECT)


def message_only(cursor: LabelCursor, message: str) -> LabelView:
    return LabelView(cursor, message, redraw=False)


def open_queue(
    store: ProjectStore,
    cursor: LabelCursor,
    slug: str,
    flt: QueueFilter,
    target: int | None,
    message: str,
    default_class: int | None,
) -> LabelView:
    """Build the queue for ``flt`` and show ``target`` if it is in it (else the first image)."""
    ids = flt.queue(store)
    cursor = replace(cursor, queue=ids, slug=slug, filters=flt)
    image_id = target if target in ids else (ids[0] if ids else None)
    state = lab.load_image(store, image_id) if image_id is not None else None
    return view(store, cursor, state, message, default_class)


def goto_pending(cursor: LabelCursor, target: dict | None) -> bool:
    """Whether another page's request to open an image (``label_goto``) has not been shown yet: the tab's
    own reload and the request's handler can arrive in either order."""
    return bool(target) and cursor.goto_at != target.get("at")  # type: ignore[union-attr]


def goto(store: ProjectStore, cursor: LabelCursor, slug: str, target: dict) -> LabelView:
    """Open an image another page asked for (Review's *Fix in editor*: ``{"image_id", "at"}``), clearing
    the filters so it is in the queue. Unsaved edits of the image shown before are not kept (the hidden
    editor cannot be read reliably, see :func:`reload`)."""
    cursor = replace(cursor, goto_at=target.get("at"))
    return open_queue(store, cursor, slug, QueueFilter(), int(target["image_id"]), FROM_REVIEW, None)


def reload(
    store: ProjectStore,
    cursor: LabelCursor,
    slug: str,
    flt: QueueFilter,
    default_class: int | None,
    target: dict | None = None,
) -> LabelView:
    """Redraw from the store after the tab was selected or the project changed, keeping the image shown
    (unless the project changed). Nothing is saved here: while its tab is hidden the box editor reports
    an empty box list, which must never be taken for "all boxes deleted". A *Fix in editor* request
    this reload may have overtaken wins."""
    if goto_pending(cursor, target):
        return goto(store, cursor, slug, target)  # type: ignore[arg-type]
    if cursor.slug != slug:
        return open_queue(store, cursor, slug, QueueFilter(), None, "", default_class)
    return open_queue(store, cursor, slug, flt, cursor.image_id, "", default_class)


def navigate(store: ProjectStore, e: Editing, flt: QueueFilter, step: int) -> LabelView:
    """Save, then show the image ``step`` places away in the queue (stays put if the save was refused)."""
    f = flush(store, e.slug, e.cursor, e.history, e.editor, e.default_class)
    if f.conflict:
        return view(store, e.cursor, f.state, f.message, e.default_class)
    if not e.cursor.queue:
        return open_queue(store, e.cursor, e.slug, flt, None, f.message, e.default_class)
    target = lab.neighbour(e.cursor.queue, e.cursor.image_id, step)
    return view(store, e.cursor, lab.load_image(store, target), f.message, e.default_class)


def refilter(store: ProjectStore, e: Editing, flt: QueueFilter, *, force: bool = False) -> LabelView | None:
    """Save, then rebuild the queue for new filters. None when the filters are the ones the queue was
    built with (a repeated or duplicate pick): nothing to do, and nothing is saved. ``force`` rebuilds
    anyway (images were added)."""
    if not force and e.cursor.slug == e.slug and e.cursor.filters == flt:
        return None
    f = flush(store, e.slug, e.cursor, e.history, e.editor, e.default_class)
    if f.conflict:
        return view(store, e.cursor, f.state, f.message, e.default_class)
    return open_queue(store, e.cursor, e.slug, flt, None, f.message, e.default_class)


def _require_image(cursor: LabelCursor, message: str = "No image open.") -> int:
    if cursor.image_id is None:
        raise StudioError(message)
    return cursor.image_id


def save(store: ProjectStore, e: Editing) -> LabelView:
    image_id = _require_image(e.cursor, "No image to save.")
    f = flush(store, e.slug, e.cursor, e.history, e.editor, e.default_class)
    state = f.state or lab.load_image(store, image_id)
    return view(store, e.cursor, state, f.message or "Nothing changed.", e.default_class)


def mark_empty(store: ProjectStore, e: Editing) -> LabelView:
    """Mark the image as having no objects, then move on (stays put if the save was refused)."""
    image_id = _require_image(e.cursor)
    f = flush(store, e.slug, e.cursor, e.history, e.editor, e.default_class, no_objects=True)
    if f.conflict or not e.cursor.queue:
        return view(store, e.cursor, f.state or lab.load_image(store, image_id), f.message, e.default_class)
    target = lab.neighbour(e.cursor.queue, image_id, +1)
    message = "Marked the previous image: no objects."
    return view(store, e.cursor, lab.load_image(store, target), message, e.default_class)


def undo(
    store: ProjectStore, cursor: LabelCursor, history: lab.UndoHistory, default_class: int | None
) -> LabelView:
    """Undo this tab's last save of the image shown. With nothing to undo (no image, nothing saved in
    this tab, e.g. right after a page reload) only a message changes: the editor keeps what it shows."""
    if cursor.image_id is None or cursor.version is None:
        return message_only(cursor, "No image open.")
    if history.size(cursor.image_id) == 0:
        return message_only(cursor, NOTHING_TO_UNDO)
    try:
        res = lab.undo(store, history, cursor.image_id, cursor.version)
    except lab.VersionConflict as exc:
        return view(store, cursor, exc.current, f"⛔ {exc}", default_class)
    return view(store, cursor, res.state, res.summary, default_class)


def create_class(store: ProjectStore, e: Editing, name: str) -> LabelView:
    """Add a class and make it the class for new boxes, saving the editor first."""
    new_id = add_class(store, name)
    f = flush(store, e.slug, e.cursor, e.history, e.editor, e.default_class)
    state = f.state or (lab.load_image(store, e.cursor.image_id) if e.cursor.image_id is not None else None)
    return view(store, e.cursor, state, f"Added class '{md_text(name.strip(), 200)}'. {f.message}", new_id)


@dataclass
class ModelChoice:
    """The model to propose with: a run's checkpoint picked in the list, or a typed path (wins)."""

    run_path: str | None
    path_text: str | None
    threshold: float

    def load(self, store: ProjectStore) -> tuple[prop.Predictor, prop.ClassMapping]:
        path = (self.path_text or "").strip() or self.run_path
        if not path:
            raise StudioError("Pick a trained run or type the path of a checkpoint file.")
        predictor, names = prop.cached_checkpoint_predictor(path)
        return predictor, prop.map_classes(store, names)


def propose(store: ProjectStore, e: Editing, model: ModelChoice) -> tuple[LabelView, str]:
    """Save, then replace the image's proposals with the model's. Returns the view and the model
    message (class mapping) for the model panel."""
    image_id = _require_image(e.cursor)
    f = flush(store, e.slug, e.cursor, e.history, e.editor, e.default_class)
    if f.conflict:
        return view(store, e.cursor, f.state, f.message, e.default_class), ""
    predictor, mapping = model.load(store)
    base = f.state.version if f.state else e.cursor.version
    mapping_text = md_text(mapping.message)
    try:
        state = prop.propose(store, image_id, predictor, mapping, model.threshold, base_version=base)
    except lab.VersionConflict as exc:
        return view(store, e.cursor, exc.current, f"⛔ {exc}", e.default_class), mapping_text
    note = f"{len(state.proposals)} proposal(s) at confidence ≥ {model.threshold:.2f}."
    return view(store, e.cursor, state, note, e.default_class), mapping_text or "Model classes match."


def prelabel_all(
    store: ProjectStore,
    e: Editing,
    model: ModelChoice,
    *,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[LabelView, str]:
    """Save, then propose boxes for every unlabeled image (cancellable between images)."""
    flush(store, e.slug, e.cursor, e.history, e.editor, e.default_class)
    predictor, mapping = model.load(store)
    todo = prop.unlabeled_images(store)
    if e.cursor.filters is not None and e.cursor.filters.order != nxt.ORDER_FILE:
        todo = nxt.useful_order(store, todo, e.cursor.filters.order)  # pre-label in the queue's order
    res = prop.prelabel(
        store, todo, predictor, mapping, model.threshold, progress=progress, should_stop=should_stop
    )
    state = lab.load_image(store, e.cursor.image_id) if e.cursor.image_id is not None else None
    text = res.summary() + (" " + md_text(mapping.message) if mapping.message else "")
    return view(store, e.cursor, state, res.summary(), e.default_class), text


def review(store: ProjectStore, e: Editing, pick_id: int | None, *, accept: bool, one: bool) -> LabelView:
    """Save, then accept or reject all proposals of the image (or the picked one)."""
    image_id = _require_image(e.cursor)
    if one and pick_id is None:
        raise StudioError("Pick a proposal first.")
    f = flush(store, e.slug, e.cursor, e.history, e.editor, e.default_class)
    if f.conflict:
        return view(store, e.cursor, f.state, f.message, e.default_class)
    base = f.state.version if f.state else e.cursor.version
    fn = prop.accept_proposals if accept else prop.reject_proposals
    try:
        state = fn(store, image_id, base, [int(pick_id)] if one else None)  # type: ignore[arg-type]
    except lab.VersionConflict as exc:
        return view(store, e.cursor, exc.current, f"⛔ {exc}", e.default_class)
    return view(store, e.cursor, state, "Accepted." if accept else "Rejected.", e.default_class)


__all__ = [
    "ALL",
    "Editing",
    "LabelView",
    "ModelChoice",
    "create_class",
    "goto",
    "mark_empty",
    "navigate",
    "no_project",
    "open_queue",
    "order_choices",
    "prelabel_all",
    "propose",
    "queue_filter",
    "refilter",
    "reload",
    "review",
    "save",
    "undo",
    "view",
]
