"""The box editor's data format (``gradio_image_annotation``) <-> :mod:`studio.services.label.labeling`.

The component exchanges ``{"image": ..., "boxes": [{"xmin", "ymin", "xmax", "ymax", "label", "color"}]}``
with integer pixel corners and no row ids. Plain dicts in, plain dicts out: no Gradio import here.

Proposals are drawn in the editor too, in one loud colour and with a label that starts with ``?`` and
ends with their row id (``"? circle 0.83 #17"``), so they never look like ground truth. What the user
does to them in the editor has a meaning:
- deleted -> rejected;
- re-classed (label changed to a class) -> accepted with that class (a "fix");
- moved or resized -> accepted with the new box and its class (a "fix");
- left alone -> stays a proposal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select

from studio.services.data.classes import trainable_classes
from studio.services.label.labeling import SAME_BOX_PX, Box, ImageState
from studio.store.db import ProjectStore
from studio.store.models import Category

PROPOSAL_COLOR = "#ff00ff"
#: Label the editor gives a freshly drawn box; on save it becomes the class picked on the page. (The
#: component fixes its default label when it mounts, so the page's class picker cannot change it.)
NEW_BOX_LABEL = "(new box)"
NEW_BOX_COLOR = "#9e9e9e"
_PROPOSAL_LABEL = re.compile(r"^\?.*#(\d+)\s*$")


@dataclass
class ClassInfo:
    id: int
    name: str
    color: str


@dataclass
class LabelClasses:
    """Classes offered for drawing (trained ones, number keys 1-9 in this order) and all names."""

    offered: list[ClassInfo]
    by_name: dict[str, ClassInfo]
    by_id: dict[int, ClassInfo]


def label_classes(store: ProjectStore) -> LabelClasses:
    with store.session(readonly=True) as s:
        cats = [ClassInfo(c.id, c.name, c.color) for c in s.scalars(select(Category).order_by(Category.id))]
    trained = {c.id for c in trainable_classes(store)}
    return LabelClasses(
        [c for c in cats if c.id in trained], {c.name: c for c in cats}, {c.id: c for c in cats}
    )


def rgb(hex_color: str) -> str:
    """'#rrggbb' -> 'rgb(r, g, b)' (the component's own colour format)."""
    h = hex_color.lstrip("#")
    try:
        r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        r, g, b = 31, 119, 180
    return f"rgb({r}, {g}, {b})"


def proposal_label(name: str, score: float | None, ann_id: int | None) -> str:
    return f"? {name} {score or 0:.2f} #{ann_id}"


def editor_boxes(state: ImageState, classes: LabelClasses) -> list[dict]:
    """Ground truth in class colours, then proposals in :data:`PROPOSAL_COLOR`."""

    def corners(b: Box) -> dict:
        return {"xmin": round(b.x), "ymin": round(b.y), "xmax": round(b.x + b.w), "ymax": round(b.y + b.h)}

    out = []
    for b in state.boxes:
        info = classes.by_id.get(b.category_id)
        out.append(
            {**corners(b), "label": info.name if info else "?", "color": rgb(info.color if info else "")}
        )
    for b in state.proposals:
        info = classes.by_id.get(b.category_id)
        label = proposal_label(info.name if info else "?", b.score, b.id)
        out.append({**corners(b), "label": label, "color": rgb(PROPOSAL_COLOR)})
    return out


def editor_classes(classes: LabelClasses) -> tuple[list[str], list[str]]:
    """Labels and colours the editor offers when a box is (re)classed: the new-box label first."""
    return [NEW_BOX_LABEL] + [c.name for c in classes.offered], [NEW_BOX_COLOR] + [
        c.color for c in classes.offered
    ]


def editor_value(state: ImageState, classes: LabelClasses) -> dict:
    return {"image": state.path, "boxes": editor_boxes(state, classes)}


def unchanged(shown: list[dict] | None, returned: list[dict] | None, tol: float = 1.0) -> bool:
    """True when the editor hands back the boxes it was given (same labels, corners within ``tol``
    px: the component rounds when it rescales), i.e. the user made no edit since the image was shown."""

    def key(d: dict) -> tuple:
        return (str(d.get("label") or ""), *(float(d[k]) for k in ("xmin", "ymin", "xmax", "ymax")))

    a, b = sorted(map(key, shown or [])), sorted(map(key, returned or []))
    return len(a) == len(b) and all(
        p[0] == q[0] and all(abs(x - y) <= tol for x, y in zip(p[1:], q[1:], strict=True))
        for p, q in zip(a, b, strict=True)
    )


@dataclass
class EditorBoxes:
    boxes: list[Box]  # ground truth to save (includes proposals the user fixed)
    keep_proposals: list[int]  # proposals left untouched
    unknown_labels: list[str]  # labels that are no class (boxes skipped; the page says so)


def from_editor(
    boxes: list[dict] | None, state: ImageState, classes: LabelClasses, default_class: int | None
) -> EditorBoxes:
    """Turn the editor's boxes back into :class:`Box` es (see the module docstring for proposals)."""
    proposals = {p.id: p for p in state.proposals}
    out, keep, unknown = [], [], []
    for d in boxes or []:
        x0, y0, x1, y1 = (float(d[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        label = str(d.get("label") or "").strip()
        m = _PROPOSAL_LABEL.match(label)
        if m and int(m.group(1)) in proposals:
            p = proposals[int(m.group(1))]
            moved = any(abs(a - b) > SAME_BOX_PX for a, b in zip((x0, y0, x1, y1), p.xyxy, strict=True))
            if moved:
                out.append(Box(x0, y0, x1 - x0, y1 - y0, p.category_id))
            else:
                keep.append(p.id)
            continue
        if label in ("", NEW_BOX_LABEL) and default_class is not None:
            cid = default_class
        elif label in classes.by_name:
            cid = classes.by_name[label].id
        else:
            unknown.append(label or "(no class)")
            continue
        out.append(Box(x0, y0, x1 - x0, y1 - y0, cid))
    return EditorBoxes(out, keep, unknown)


__all__ = [
    "NEW_BOX_LABEL",
    "PROPOSAL_COLOR",
    "ClassInfo",
    "EditorBoxes",
    "LabelClasses",
    "editor_boxes",
    "editor_classes",
    "editor_value",
    "from_editor",
    "label_classes",
    "proposal_label",
    "unchanged",
    "rgb",
]
