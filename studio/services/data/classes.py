"""Classes of a project: the supercategory tree, counts, the training rule, warnings and edits.

Why the leaf rule lives here: RF-DETR trains only on categories that are *not* the parent of another
category (a COCO ``supercategory`` that is itself a category is a grouping, not a label). The Classes
page must show exactly the list the trainer will use, so both read :func:`trainable_classes`.

Only ground-truth boxes (``source='gt'``) are counted; model proposals awaiting review are not labels.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update

from studio.errors import StudioError
from studio.services.data.importing.writer import PALETTE  # one palette for imported and added classes
from studio.store.db import ProjectStore
from studio.store.models import SPLITS, Annotation, Category, Image
from studio.text import html_text, md_text

if TYPE_CHECKING:  # plotly is imported lazily (cold start of the app)
    import plotly.graph_objects as go

#: Splits shown in counts; images without a split are counted under "unassigned".
COUNT_SPLITS = (*SPLITS, "unassigned")
#: A trainable class with fewer training boxes than this gets a "rare" warning.
RARE_THRESHOLD = 10
SPLIT_COLORS = {"train": "#4363d8", "valid": "#f58231", "test": "#3cb44b", "unassigned": "#a9a9a9"}


@dataclass
class ClassNode:
    """One node of the class tree (``trained`` follows the leaf rule)."""

    id: int
    name: str
    parent_id: int | None
    color: str
    trained: bool
    n_boxes: int = 0
    children: list[ClassNode] = field(default_factory=list)


@dataclass
class ClassCount:
    """Boxes and images of one class per split (keys of the dicts are :data:`COUNT_SPLITS`)."""

    id: int
    name: str
    parent: str | None
    trained: bool
    boxes: dict[str, int]
    images: dict[str, int]

    @property
    def total_boxes(self) -> int:
        return sum(self.boxes.values())


@dataclass
class ClassWarning:
    """A problem worth fixing before training (``kind`` is stable for tests and filters)."""

    kind: str  # "no_classes" | "empty" | "rare" | "no_valid" | "parent_boxes"
    message: str
    category_id: int | None = None


def _categories(store: ProjectStore) -> list[Category]:
    with store.session(readonly=True) as s:
        return list(s.scalars(select(Category).order_by(Category.id)))


def _parent_ids(cats: list[Category]) -> set[int]:
    return {c.parent_id for c in cats if c.parent_id is not None}


def trainable_classes(store: ProjectStore) -> list[Category]:
    """Categories the model trains on, in id order: those that are nobody's parent.

    A flat dataset (no parents) trains on everything; the fallback to all categories mirrors the
    reference behaviour for pathological inputs (a cycle would leave no leaf).
    """
    cats = _categories(store)
    parents = _parent_ids(cats)
    return [c for c in cats if c.id not in parents] or cats


def class_tree(store: ProjectStore) -> list[ClassNode]:
    """The supercategory forest: roots in id order, children nested, box counts attached."""
    cats = _categories(store)
    parents = _parent_ids(cats)
    with store.session(readonly=True) as s:
        n_boxes = dict(
            s.execute(
                select(Annotation.category_id, func.count())
                .where(Annotation.source == "gt")
                .group_by(Annotation.category_id)
            ).all()
        )
    nodes = {
        c.id: ClassNode(c.id, c.name, c.parent_id, c.color, c.id not in parents, n_boxes.get(c.id, 0))
        for c in cats
    }
    roots: list[ClassNode] = []
    for node in nodes.values():
        parent = nodes.get(node.parent_id) if node.parent_id is not None else None
        (parent.children if parent is not None else roots).append(node)
    return roots


def class_counts(store: ProjectStore) -> list[ClassCount]:
    """Boxes and distinct images per class and split, for every category (zeros included)."""
    cats = _categories(store)
    parents = _parent_ids(cats)
    by_id = {c.id: c for c in cats}
    boxes: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNT_SPLITS, 0))
    images: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNT_SPLITS, 0))
    with store.session(readonly=True) as s:
        rows = s.execute(
            select(
                Annotation.category_id,
                Image.split,
                func.count(Annotation.id),
                func.count(func.distinct(Annotation.image_id)),
            )
            .join(Image, Image.id == Annotation.image_id)
            .where(Annotation.source == "gt")
            .group_by(Annotation.category_id, Image.split)
        ).all()
    for cat_id, split, n_box, n_img in rows:
        key = split or "unassigned"
        boxes[cat_id][key] += n_box
        images[cat_id][key] += n_img
    return [
        ClassCount(
            id=c.id,
            name=c.name,
            parent=by_id[c.parent_id].name if c.parent_id in by_id else None,
            trained=c.id not in parents,
            boxes=dict(boxes[c.id]),
            images=dict(images[c.id]),
        )
        for c in cats
    ]


def class_warnings(store: ProjectStore, rare_threshold: int = RARE_THRESHOLD) -> list[ClassWarning]:
    """What will hurt training: no classes, empty or rare trained classes, classes missing from the
    validation split (their AP cannot be measured), and boxes on parent classes (never trained)."""
    counts = class_counts(store)
    if not counts:
        return [
            ClassWarning("no_classes", "The project has no classes yet: import a dataset or add a class.")
        ]
    out: list[ClassWarning] = []
    for c in counts:
        if not c.trained:
            if c.total_boxes:
                out.append(
                    ClassWarning(
                        "parent_boxes",
                        f"'{c.name}' is a parent class: its {c.total_boxes} box(es) are not used for training.",
                        c.id,
                    )
                )
            continue
        if c.total_boxes == 0:
            out.append(ClassWarning("empty", f"'{c.name}' has no boxes: the model cannot learn it.", c.id))
        elif c.boxes["train"] < rare_threshold:
            out.append(
                ClassWarning(
                    "rare",
                    f"'{c.name}' is rare: {c.boxes['train']} training box(es) (fewer than {rare_threshold}).",
                    c.id,
                )
            )
        if c.total_boxes and c.boxes["valid"] == 0:
            out.append(
                ClassWarning(
                    "no_valid",
                    f"'{c.name}' has no boxes in the valid split: its AP cannot be measured.",
                    c.id,
                )
            )
    return out


# -- edits ----------------------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise StudioError("A class name cannot be empty.")
    if len(name) > 200:
        raise StudioError("A class name can be at most 200 characters.")
    return name


def _get(session, category_id: int) -> Category:
    cat = session.get(Category, category_id)
    if cat is None:
        raise StudioError(f"Class #{category_id} does not exist (it may have been deleted in another tab).")
    return cat


def _check_unique(session, name: str, except_id: int | None = None) -> None:
    clash = session.scalars(select(Category).where(func.lower(Category.name) == name.lower())).first()
    if clash is not None and clash.id != except_id:
        raise StudioError(f"A class named '{clash.name}' already exists.")


def _descendants(session, category_id: int) -> set[int]:
    pairs = session.execute(select(Category.id, Category.parent_id)).all()
    children: dict[int, list[int]] = defaultdict(list)
    for cid, pid in pairs:
        if pid is not None:
            children[pid].append(cid)
    out, stack = set(), [category_id]
    while stack:
        for child in children[stack.pop()]:
            if child not in out:
                out.add(child)
                stack.append(child)
    return out


def add_class(store: ProjectStore, name: str, parent_id: int | None = None, color: str | None = None) -> int:
    """Create a class (optionally under a parent, which then stops being trained). Returns its id."""
    name = _clean_name(name)
    with store.session() as s:
        _check_unique(s, name)
        if parent_id is not None:
            _get(s, parent_id)
        n = s.scalar(select(func.count()).select_from(Category)) or 0
        cat = Category(name=name, parent_id=parent_id, color=color or PALETTE[n % len(PALETTE)])
        s.add(cat)
        s.flush()
        return cat.id


def rename_class(store: ProjectStore, category_id: int, new_name: str) -> None:
    """Rename a class; names stay unique (case-insensitively, to avoid 'Car' vs 'car' confusion)."""
    new_name = _clean_name(new_name)
    with store.session() as s:
        cat = _get(s, category_id)
        _check_unique(s, new_name, except_id=cat.id)
        cat.name = new_name


def merge_classes(store: ProjectStore, source_ids: list[int], target_id: int) -> int:
    """Move every box of ``source_ids`` to ``target_id`` and delete the sources. Returns boxes moved.

    Children of a merged class are re-attached to the target, so the tree stays connected. Merging a
    class into one of its own descendants is refused (it would create a cycle).
    """
    sources = [i for i in dict.fromkeys(source_ids) if i != target_id]
    if not sources:
        raise StudioError("Pick at least one class to merge that is not the target class.")
    with store.session() as s:
        target = _get(s, target_id)
        for sid in sources:
            _get(s, sid)
            if target_id in _descendants(s, sid):
                raise StudioError(f"Cannot merge a class into its own sub-class '{target.name}'.")
        moved = s.execute(
            update(Annotation)
            .where(Annotation.category_id.in_(sources))
            .values(category_id=target_id, version=Annotation.version + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        s.execute(update(Category).where(Category.parent_id.in_(sources)).values(parent_id=target_id))
        s.execute(delete(Category).where(Category.id.in_(sources)))
        return int(moved or 0)


def delete_class(store: ProjectStore, category_id: int) -> int:
    """Delete a class and its boxes; its children move up to its parent. Returns boxes deleted.

    Image status is left alone on purpose: deleting a class means "I do not want this detected", so an
    image that loses its last box is a correct negative for the remaining classes.
    """
    with store.session() as s:
        cat = _get(s, category_id)
        removed = s.execute(
            delete(Annotation)
            .where(Annotation.category_id == category_id)
            .execution_options(synchronize_session=False)
        ).rowcount
        s.execute(update(Category).where(Category.parent_id == category_id).values(parent_id=cat.parent_id))
        s.execute(delete(Category).where(Category.id == category_id))
        return int(removed or 0)


def class_choices(store: ProjectStore) -> list[tuple[str, int]]:
    """(label, id) pairs for pickers; parents are marked so users see what is not trained."""
    cats = _categories(store)
    parents = _parent_ids(cats)
    return [(f"{c.name} (parent)" if c.id in parents else c.name, c.id) for c in cats]


# -- presentation helpers (no Gradio) ----------------------------------------------------------------


def tree_html(roots: list[ClassNode]) -> str:
    """The tree as nested HTML lists (trained classes in bold with their colour, groups marked).

    HTML rather than Markdown: Markdown renderers disagree on how deep a nested bullet must be
    indented, and a class tree that silently flattens is wrong information.
    """
    if not roots:
        return "<p><em>No classes yet.</em></p>"

    def item(node: ClassNode) -> str:
        name = html_text(node.name)
        dot = f'<span class="class-dot" style="background:{html_text(node.color)}"></span>'
        label = f"{dot}<strong>{name}</strong>" if node.trained else f"{name} <em>(group — not trained)</em>"
        kids = f"<ul>{''.join(item(c) for c in node.children)}</ul>" if node.children else ""
        return f'<li data-class-id="{node.id}">{label} · {node.n_boxes} box(es){kids}</li>'

    return f'<ul class="class-tree">{"".join(item(r) for r in roots)}</ul>'


def _shown_splits(counts: list[ClassCount]) -> list[str]:
    """Splits worth a column: the real ones always, "unassigned" only when it holds boxes."""
    return [s for s in COUNT_SPLITS if s != "unassigned" or any(c.boxes[s] for c in counts)]


def counts_table(counts: list[ClassCount]) -> tuple[list[str], list[list[object]]]:
    """Headers and rows for a table of per-split counts (boxes / images)."""
    splits = _shown_splits(counts)
    headers = ["Class", "Parent", "Trained"] + [f"{s} boxes / images" for s in splits] + ["Total boxes"]
    rows = [
        [c.name, c.parent or "", "yes" if c.trained else "no"]
        + [f"{c.boxes[s]} / {c.images[s]}" for s in splits]
        + [c.total_boxes]
        for c in counts
    ]
    return headers, rows


def class_chart(counts: list[ClassCount]) -> go.Figure:
    """Grouped bars of boxes (left) and images (right) per class, one colour per split.

    Parent classes appear only when they hold boxes (a group without boxes is not news).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Boxes per class", "Images per class"))
    counts = [c for c in counts if c.trained or c.total_boxes]
    names = [c.name if c.trained else f"{c.name} (parent)" for c in counts]
    for split in _shown_splits(counts):
        for col, attr in ((1, "boxes"), (2, "images")):
            fig.add_trace(
                go.Bar(
                    name=split,
                    x=names,
                    y=[getattr(c, attr)[split] for c in counts],
                    marker_color=SPLIT_COLORS[split],
                    legendgroup=split,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    fig.update_layout(
        barmode="group",
        height=360,
        margin=dict(l=40, r=20, t=40, b=40),
        legend=dict(orientation="h", y=-0.2),
        template="plotly_white",
    )
    fig.update_yaxes(rangemode="tozero")
    return fig


@dataclass
class ClassOverview:
    """Everything the Classes page shows, computed in one place (one store visit per refresh)."""

    trained_md: str
    warnings_md: str
    tree_html: str
    table_headers: list[str]
    table_rows: list[list[object]]
    choices: list[tuple[str, int]]
    counts: list[ClassCount]


def trained_markdown(trained: list[Category]) -> str:
    """ "The model will train on N class(es): a, b" with the names escaped (they come from files)."""
    if not trained:
        return "**No classes to train on yet.**"
    return f"**The model will train on {len(trained)} class(es):** " + ", ".join(
        md_text(c.name) for c in trained
    )


def warnings_markdown(warnings: list[ClassWarning]) -> str:
    """One bullet per warning, said in words (an emoji icon rendered as a tofu box without an emoji font)."""
    if not warnings:
        return "No class warnings."
    return "\n".join(f"- **Warning:** {md_text(w.message)}" for w in warnings)


def class_overview(store: ProjectStore) -> ClassOverview:
    """The trained list, warnings, tree, counts table and picker choices of a project."""
    counts = class_counts(store)
    headers, rows = counts_table(counts)
    return ClassOverview(
        trained_md=trained_markdown(trainable_classes(store)),
        warnings_md=warnings_markdown(class_warnings(store)),
        tree_html=tree_html(class_tree(store)),
        table_headers=headers,
        table_rows=rows,
        choices=class_choices(store),
        counts=counts,
    )
