"""Saving what the Label tab's editor shows: skip unchanged, refuse on conflict, record undo.

Why this is a use case of its own (and not inside the page): every action that leaves the image shown
(next, previous, a filter pick, proposing, accepting, adding a class, leaving the tab) first saves
the editor, so navigating never loses an edit. The rules are the same each time:

- nothing is saved when the editor shows no image (not drawn yet) or still shows an image of another
  project (the project was just switched: image ids are per project);
- nothing is saved when the editor hands back exactly what it was given: a tab that is merely behind
  another one moves on without a conflict, and the hidden editor's empty box list (see the page) is
  never taken for "all boxes deleted" unless the user edited;
- a save based on an old version is refused (:class:`VersionConflict`) and the current state is shown;
- a save that changed something pushes the previous ground truth on the tab's undo stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.errors import StudioError
from studio.services.label import editor_format as ed
from studio.services.label import labeling as lab
from studio.store.db import ProjectStore
from studio.text import md_text


@dataclass(frozen=True)
class QueueFilter:
    """The queue filters of the Label tab (None / False = no filter)."""

    split: str | None = None
    category_id: int | None = None
    status: str | None = None
    has_problems: bool = False
    order: str = "file"  # or most useful first: "useful" / "useful:<run id>" (studio.services.label.next)

    def queue(self, store: ProjectStore) -> list[int]:
        return lab.queue(
            store,
            split=self.split,
            category_id=self.category_id,
            status=self.status,
            has_problems=self.has_problems,
            order=self.order,
        )


@dataclass(frozen=True)
class LabelCursor:
    """One browser tab's place in the Label tab: the project and image shown, the version the editor is
    based on, the editor boxes as they were shown (to tell an edit from none), the queue and the filters
    it was built with, and the time of the last *Fix in editor* request shown (``goto_at``)."""

    slug: str | None = None
    image_id: int | None = None
    version: int | None = None
    shown: list[dict] = field(default_factory=list)
    queue: list[int] = field(default_factory=list)
    filters: QueueFilter | None = None
    goto_at: float | None = None


@dataclass
class Flush:
    """The outcome of saving the editor: the image state after it (None: nothing was saved and the
    caller reloads if it needs one), a message for the user, and whether the save was refused."""

    state: lab.ImageState | None
    message: str = ""
    conflict: bool = False


def flush(
    store: ProjectStore,
    slug: str,
    cursor: LabelCursor,
    history: lab.UndoHistory,
    editor: dict | None,
    default_class: int | None,
    *,
    no_objects: bool = False,
) -> Flush:
    """Save what the editor shows for the cursor's image (see the module docstring for the rules).

    ``editor`` is the editor component's value (``{"image", "boxes"}``); ``default_class`` is given
    to boxes drawn without a class; ``no_objects`` marks the image as having none.
    """
    image_id, version = cursor.image_id, cursor.version
    if (
        image_id is None
        or version is None
        or cursor.slug != slug
        or not editor
        or editor.get("image") is None
    ):
        return Flush(None)
    if not no_objects and ed.unchanged(cursor.shown, editor.get("boxes")):
        return Flush(None)
    try:
        loaded = lab.load_image(store, image_id)
    except StudioError:
        return Flush(None, "The image was deleted.")
    parsed = ed.from_editor(editor.get("boxes"), loaded, ed.label_classes(store), default_class)
    note = ""
    if parsed.unknown_labels:
        names = ", ".join(md_text(n, 80) for n in sorted(set(parsed.unknown_labels)))
        note = f" Skipped boxes with unknown class: {names}."
    try:
        res = lab.save_image(
            store,
            image_id,
            parsed.boxes,
            version,
            no_objects=no_objects,
            keep_proposals=parsed.keep_proposals,
        )
    except lab.VersionConflict as exc:
        return Flush(exc.current, f"⛔ {exc}", conflict=True)
    history.push(image_id, res.before)
    return Flush(res.state, (res.summary if res.changed else "") + note)


__all__ = ["Flush", "LabelCursor", "QueueFilter", "flush"]
