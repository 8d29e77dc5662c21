"""Browsing a project's images: filtered, paged queries and images with their boxes drawn.

Why paging happens in SQL: projects grow to tens of thousands of images; the page only ever needs one
screenful, so we never load more rows than that. Filtering by a parent class also matches its
sub-classes (asking for "vehicle" should show cars and trucks).

supervision (and the scipy it pulls in) is imported inside :func:`render_image` so the app starts fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import Select, func, select

from studio.errors import StudioError
from studio.services.data.classes import class_choices
from studio.services.projects.catalog import project_info
from studio.store.db import ProjectStore
from studio.store.models import SPLITS, Annotation, Category, Image

#: Pseudo split for images that were never assigned to train/valid/test.
UNASSIGNED = "unassigned"


@dataclass
class GalleryItem:
    id: int
    original_name: str
    split: str | None
    width: int
    height: int
    n_boxes: int

    @property
    def caption(self) -> str:
        return f"{self.original_name} · {self.split or UNASSIGNED} · {self.n_boxes} box(es)"


@dataclass
class GalleryPage:
    items: list[GalleryItem]
    total: int
    page: int
    page_size: int

    @property
    def n_pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))

    def summary(self) -> str:
        if not self.total:
            return "No images match."
        first = self.page * self.page_size + 1
        return f"Page {self.page + 1} of {self.n_pages} · images {first}–{first + len(self.items) - 1} of {self.total}"


def with_descendants(store: ProjectStore, category_id: int) -> list[int]:
    """``category_id`` and every class below it: filtering by a parent class shows its sub-classes too."""
    with store.session(readonly=True) as s:
        pairs = s.execute(select(Category.id, Category.parent_id)).all()
    ids, frontier = {category_id}, {category_id}
    while frontier:
        frontier = {cid for cid, pid in pairs if pid in frontier and cid not in ids}
        ids |= frontier
    return sorted(ids)


def filter_images(stmt: Select, split: str | None, category_ids: list[int] | None) -> Select:
    """Restrict an ``Image`` query to a split (or ``"unassigned"``) and to images with a gt box of the classes."""
    if split == UNASSIGNED:
        stmt = stmt.where(Image.split.is_(None))
    elif split:
        if split not in SPLITS:
            raise StudioError(f"Unknown split '{split}' (expected one of {', '.join(SPLITS)}).")
        stmt = stmt.where(Image.split == split)
    if category_ids:
        has_box = (
            select(Annotation.id)
            .where(Annotation.image_id == Image.id, Annotation.category_id.in_(category_ids))
            .where(Annotation.source == "gt")
            .exists()
        )
        stmt = stmt.where(has_box)
    return stmt


def query_images(
    store: ProjectStore,
    split: str | None = None,
    category_id: int | None = None,
    page: int = 0,
    page_size: int = 24,
) -> GalleryPage:
    """One page of images (oldest first) matching the split and class filters.

    ``split`` is a split name, ``"unassigned"`` or ``None`` (all). A page past the end is clamped to
    the last page, so deleting images never strands the user on an empty page.
    """
    if page_size < 1:
        raise StudioError("page_size must be at least 1.")
    cat_ids = with_descendants(store, category_id) if category_id is not None else None
    with store.session(readonly=True) as s:
        total = s.scalar(filter_images(select(func.count(Image.id)), split, cat_ids)) or 0
        n_pages = max(1, math.ceil(total / page_size))
        page = min(max(0, page), n_pages - 1)
        n_boxes = (
            select(func.count(Annotation.id))
            .where(Annotation.image_id == Image.id, Annotation.source == "gt")
            .scalar_subquery()
        )
        stmt = filter_images(select(Image, n_boxes), split, cat_ids).order_by(Image.id)
        rows = s.execute(stmt.offset(page * page_size).limit(page_size)).all()
    items = [GalleryItem(im.id, im.original_name, im.split, im.width, im.height, n) for im, n in rows]
    return GalleryPage(items, total, page, page_size)


def render_image(store: ProjectStore, image_id: int, max_side: int | None = None) -> np.ndarray:
    """The image as RGB ``uint8`` with its ground-truth boxes and class names drawn (class colours).

    ``max_side`` downsizes large images *before* drawing so thumbnails keep readable labels.
    """
    import supervision as sv

    with store.session(readonly=True) as s:
        image = s.get(Image, image_id)
        if image is None:
            raise StudioError(f"Image #{image_id} does not exist (it may have been deleted).")
        path = store.image_path(image)
        anns = s.execute(
            select(Annotation.x, Annotation.y, Annotation.w, Annotation.h, Category.name, Category.color)
            .join(Category, Category.id == Annotation.category_id)
            .where(Annotation.image_id == image_id, Annotation.source == "gt")
            .order_by(Annotation.id)
        ).all()
    try:
        with PILImage.open(path) as im:
            pil = im.convert("RGB")
    except (OSError, ValueError) as exc:
        raise StudioError(f"Cannot read image file {path.name}: {exc}") from exc
    scale = 1.0
    if max_side and max(pil.size) > max_side:
        scale = max_side / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))))
    frame = np.asarray(pil).copy()
    if not anns:
        return frame
    colors = sorted({a.color for a in anns})
    xyxy = np.array([[a.x, a.y, a.x + a.w, a.y + a.h] for a in anns], dtype=np.float32) * scale
    detections = sv.Detections(xyxy=xyxy, class_id=np.array([colors.index(a.color) for a in anns]))
    palette = sv.ColorPalette([sv.Color.from_hex(c) for c in colors])
    thickness = max(1, round(min(frame.shape[:2]) / 200))
    bgr = np.ascontiguousarray(frame[..., ::-1])  # supervision draws numpy frames as OpenCV BGR
    bgr = sv.BoxAnnotator(color=palette, thickness=thickness).annotate(bgr, detections)
    labeler = sv.LabelAnnotator(color=palette, text_scale=0.4, text_padding=3, text_color=sv.Color.WHITE)
    bgr = labeler.annotate(bgr, detections, labels=[a.name for a in anns])
    return np.ascontiguousarray(bgr[..., ::-1])


#: Filter value meaning "no filter" (the split and class pickers of the Data page).
ALL = "all"


@dataclass
class GalleryView:
    """One screenful of the Data page: thumbnails with captions, the paging line and the class filter
    (``class_value`` falls back to :data:`ALL` when the class picked no longer exists)."""

    items: list[tuple[np.ndarray, str]]
    page_info: str
    page: int
    class_choices: list[tuple[str, int | str]]
    class_value: int | str


def gallery_view(
    store: ProjectStore,
    split: str | None = ALL,
    class_id: int | str | None = ALL,
    page: int = 0,
    page_size: int = 24,
    thumb_side: int = 480,
) -> GalleryView:
    """The gallery for a split (or :data:`ALL`) and a class id (or :data:`ALL`), one page of it."""
    choices: list[tuple[str, int | str]] = [("All classes", ALL), *class_choices(store)]
    class_value = class_id if class_id in {v for _, v in choices} else ALL
    result = query_images(
        store,
        split=None if split in (None, ALL) else split,
        category_id=None if class_value == ALL else int(class_value),
        page=page,
        page_size=page_size,
    )
    items = [(render_image(store, it.id, max_side=thumb_side), it.caption) for it in result.items]
    return GalleryView(items, result.summary(), result.page, choices, class_value)


def summary_markdown(store: ProjectStore) -> str:
    """ "**8** images · **21** boxes · **5 classes (+3 groups)**": the same counts as the app header."""
    info = project_info(store)
    return f"**{info.n_images}** images · **{info.n_boxes}** boxes · **{info.classes_text}**"
