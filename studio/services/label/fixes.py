"""Applying a suspected mistake's suggested fix, and dismissing suspects.

Why a fix is a plain :func:`~studio.services.label.labeling.save_image`: it must obey the same rules as a
hand edit — refused when the image changed since the suspect's evidence was shown (``base_version``),
undoable from the same per-tab :class:`~studio.services.label.labeling.UndoHistory`.

Why dismissals live in ``Project.settings["dismissed_suspects"][run id]`` (a list of suspect keys) and not
in a table: they are a small per-run list read as a whole, and keys of a deleted run are harmless.
"""

from __future__ import annotations

from sqlalchemy import select

from studio.errors import StudioError
from studio.services.label.labeling import Box, SaveResult, UndoHistory, load_image, save_image
from studio.services.review.mistakes import Suspect
from studio.store.db import ProjectStore
from studio.store.models import Category, Project

SETTINGS_KEY = "dismissed_suspects"


def _category_id(store: ProjectStore, name: str | None) -> int:
    with store.session(readonly=True) as s:
        cid = s.scalar(select(Category.id).where(Category.name == name))
    if cid is None:
        raise StudioError(f"Class {name!r} no longer exists in this project.")
    return cid


def _xywh(xyxy: list[float]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = xyxy
    return x0, y0, x1 - x0, y1 - y0


def _target(boxes: list[Box], suspect: Suspect) -> int:
    """Position of the suspect's ground-truth box among the image's current boxes (by id)."""
    for k, b in enumerate(boxes):
        if b.id == suspect.gt_id:
            return k
    raise StudioError("That box was already changed or deleted; refresh the suspects.")


def fixed_boxes(store: ProjectStore, boxes: list[Box], suspect: Suspect) -> list[Box]:
    """The image's boxes after the suggested fix (a new list; untouched boxes keep id and version)."""
    out = list(boxes)
    if suspect.fix == "add_box":
        out.append(Box(*_xywh(suspect.pred_box), _category_id(store, suspect.pred_class)))
        return out
    k = _target(out, suspect)
    old = out[k]
    if suspect.fix in ("delete_duplicate", "delete_box"):
        del out[k]
    elif suspect.fix == "change_class":
        out[k] = Box(old.x, old.y, old.w, old.h, _category_id(store, suspect.pred_class), old.id, old.version)
    elif suspect.fix == "replace_box":
        out[k] = Box(*_xywh(suspect.pred_box), old.category_id, old.id, old.version)
    else:
        raise StudioError(f"Unknown fix {suspect.fix!r}.")
    return out


def apply_fix(store: ProjectStore, suspect: Suspect, base_version: int, history: UndoHistory) -> SaveResult:
    """Apply the suggested fix as a version-checked save (raises ``VersionConflict``) and record undo."""
    state = load_image(store, suspect.image_id)
    result = save_image(store, suspect.image_id, fixed_boxes(store, state.boxes, suspect), base_version)
    history.push(suspect.image_id, result.before)
    return result


def dismissed(store: ProjectStore, run_id: int) -> set[str]:
    """Keys of the suspects the user dismissed for this run."""
    return set((store.project().settings or {}).get(SETTINGS_KEY, {}).get(str(run_id), []))


def dismiss(store: ProjectStore, run_id: int, suspect_key: str) -> None:
    """Remember that this suspect is not a mistake (it stays hidden for this run)."""
    with store.session() as s:
        project = s.scalars(select(Project).limit(1)).one()
        settings = dict(project.settings or {})
        by_run = dict(settings.get(SETTINGS_KEY, {}))
        keys = set(by_run.get(str(run_id), []))
        keys.add(suspect_key)
        by_run[str(run_id)] = sorted(keys)
        settings[SETTINGS_KEY] = by_run
        project.settings = settings  # a new dict, so SQLAlchemy sees the JSON change


__all__ = ["apply_fix", "dismiss", "dismissed", "fixed_boxes"]
