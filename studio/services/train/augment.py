"""Augmentation settings of a project and a preview grid made by the trainer's own pipeline.

Why it looks like this: what the user sees must be exactly what the trainer will do. The settings
are stored in ``Project.settings["augment"]`` in the vocabulary of ``AugmentConfig``, but they reach
the trainer through ``train(aug_config=..., multi_scale=..., ...)``. So the preview does not use the
stored config directly: it converts it to ``train()`` keyword arguments and back with the core's own
translation (:mod:`rfdetr_core.data.aug_config`), then augments with :class:`AugmentPipeline` — the
same object the training dataset calls. A knob that would not survive that round trip is not shown.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy import or_, select

from rfdetr_core.ops.boxes import xywh_to_xyxy_np
from studio.errors import StudioError
from studio.services.train.defaults import MODEL_SIZES
from studio.services.train.runs import load_train_settings
from studio.store import Annotation, Category, Image, Project, ProjectStore

if TYPE_CHECKING:  # torch is imported on first use, not when the app starts
    from rfdetr_core.data.transforms import AugmentConfig, AugmentedSample

SETTINGS_KEY = "augment"
#: The knobs ``train()`` accepts (through ``aug_config`` / ``multi_scale`` / ...), in page order.
KNOBS = (
    "horizontal_flip",
    "vertical_flip",
    "multi_scale",
    "expanded_scales",
    "scale_jitter",
    "color_jitter",
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "grayscale",
    "blur",
    "blur_max_radius",
    "rotate",
    "rotate_degrees",
)
MULTI_SCALE_CHOICES = ("off", "per-batch", "per-sample")


def default_settings() -> dict[str, Any]:
    """The trainer's defaults (the reference's default recipe) for every knob on the page."""
    from rfdetr_core.data.transforms import AugmentConfig

    cfg = AugmentConfig()
    return {k: getattr(cfg, k) for k in KNOBS}


def effective_config(settings: dict[str, Any] | None) -> AugmentConfig:
    """The :class:`AugmentConfig` the trainer will build from these settings (via ``train()`` kwargs)."""
    from rfdetr_core.data.aug_config import augment_config_from_train_kwargs, train_kwargs_from_augment_config
    from rfdetr_core.data.transforms import AugmentConfig

    values = {k: v for k, v in (settings or {}).items() if k in KNOBS}
    try:
        cfg = AugmentConfig(**values)
    except ValueError as exc:
        raise StudioError(f"Invalid augmentation settings: {exc}") from exc
    return augment_config_from_train_kwargs(**train_kwargs_from_augment_config(cfg))


def train_kwargs(settings: dict[str, Any] | None) -> dict[str, Any]:
    """The ``train()`` keyword arguments (``aug_config``, ``multi_scale``, ...) for these settings."""
    from rfdetr_core.data.aug_config import train_kwargs_from_augment_config
    from rfdetr_core.data.transforms import AugmentConfig

    values = {k: v for k, v in (settings or {}).items() if k in KNOBS}
    return train_kwargs_from_augment_config(AugmentConfig(**values))


def load_settings(store: ProjectStore) -> dict[str, Any]:
    """Stored settings over the defaults (a project that never saved any gets the defaults)."""
    with store.session(readonly=True) as s:
        stored = dict((s.scalars(select(Project)).one().settings or {}).get(SETTINGS_KEY) or {})
    return {**default_settings(), **{k: v for k, v in stored.items() if k in KNOBS}}


def save_settings(store: ProjectStore, settings: dict[str, Any]) -> dict[str, Any]:
    """Validate and store; returns what the trainer will actually use (after the round trip)."""
    cfg = effective_config({**default_settings(), **settings})
    values = {k: getattr(cfg, k) for k in KNOBS}
    with store.session() as s:
        project = s.scalars(select(Project)).one()
        project.settings = {**(project.settings or {}), SETTINGS_KEY: values}  # new dict: JSON change tracked
    return values


def _sample_images(
    store: ProjectStore, n: int, seed: int
) -> tuple[list[Image], dict[int, list[Annotation]], dict]:
    """``n`` labeled training images (random but fixed by ``seed``), their boxes and class names."""
    with store.session(readonly=True) as s:
        in_train = or_(Image.split == "train", Image.split.is_(None))  # unassigned images train too
        ids = list(
            s.scalars(select(Image.id).where(Image.status != "unlabeled", in_train).order_by(Image.id))
        )
        if not ids:
            ids = list(s.scalars(select(Image.id).order_by(Image.id)))
        if not ids:
            raise StudioError("The project has no images yet: import some on the Data tab.")
        chosen = random.Random(seed).sample(ids, min(n, len(ids)))
        images = list(s.scalars(select(Image).where(Image.id.in_(chosen))))
        images.sort(key=lambda im: chosen.index(im.id))
        boxes: dict[int, list[Annotation]] = defaultdict(list)
        for a in s.scalars(
            select(Annotation).where(Annotation.image_id.in_(chosen), Annotation.source == "gt")
        ):
            boxes[a.image_id].append(a)
        names = {c.id: (c.name, c.color) for c in s.scalars(select(Category))}
    return images, boxes, names


def _draw(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, names: dict) -> np.ndarray:
    pil = PILImage.fromarray(image)
    draw = ImageDraw.Draw(pil)
    for (x0, y0, x1, y1), cid in zip(boxes.tolist(), labels.tolist(), strict=True):
        name, color = names.get(int(cid), (str(cid), "#ff0000"))
        draw.rectangle([x0, y0, x1, y1], outline=color, width=2)
        tw = draw.textlength(name)
        draw.rectangle([x0, max(0, y0 - 12), x0 + tw + 4, max(12, y0)], fill=color)
        draw.text((x0 + 2, max(0, y0 - 12)), name, fill="white")
    return np.asarray(pil)


def preview_samples(
    store: ProjectStore,
    settings: dict[str, Any] | None,
    seed: int,
    n: int = 12,
    resolution: int = 384,
    block_size: int = 32,
) -> list[tuple[Image, AugmentedSample]]:
    """``n`` training images run through the trainer's pipeline (sample ``i`` uses seed ``seed*1000+i``)."""
    from rfdetr_core.data.transforms import AugmentPipeline

    pipeline = AugmentPipeline(effective_config(settings), resolution=resolution, block_size=block_size)
    images, boxes, _ = _sample_images(store, n, seed)
    out = []
    for i, im in enumerate(images):
        rows = boxes.get(im.id, [])
        xywh = np.array([[a.x, a.y, a.w, a.h] for a in rows], dtype=np.float64).reshape(-1, 4)
        xyxy = xywh_to_xyxy_np(xywh).astype(np.float32)
        labels = np.array([a.category_id for a in rows], dtype=np.int64)
        with PILImage.open(store.image_path(im)) as src:
            out.append((im, pipeline.preview(src.convert("RGB"), xyxy, seed=seed * 1000 + i, labels=labels)))
    return out


def preview_grid(
    store: ProjectStore,
    settings: dict[str, Any] | None,
    seed: int,
    n: int = 12,
    resolution: int = 384,
    block_size: int = 32,
) -> list[tuple[np.ndarray, str]]:
    """The samples with boxes and class names drawn, as ``[(image, caption)]`` for a gallery.

    The same seed gives the same grid (and the same images), a new seed new images and new draws.
    """
    _, _, names = _sample_images(store, 0, seed)
    out = []
    for im, sample in preview_samples(store, settings, seed, n, resolution, block_size):
        h, w = sample.image.shape[:2]
        caption = f"{im.original_name} · {w}×{h} · {len(sample.boxes)} box(es)"
        out.append((_draw(sample.image, sample.boxes, sample.labels, names), caption))
    return out


@dataclass(frozen=True)
class Preview:
    """A grid for the Augment page and the line that says what it shows."""

    items: list[tuple[np.ndarray, str]]
    text: str


def next_run_size(store: ProjectStore) -> tuple[int, int, str]:
    """Resolution, block size and name of the model the next run trains (Nano until one is chosen):
    the preview crops and scales as that run will."""
    train = load_train_settings(store) or {}
    size = MODEL_SIZES.get(train.get("model_size", "Nano"), MODEL_SIZES["Nano"])
    return int(train.get("resolution") or size.resolution), size.block_size, size.name


def preview_for_next_run(store: ProjectStore, settings: dict[str, Any], seed: int, n: int) -> Preview:
    """:func:`preview_grid` at the next run's resolution, with its description."""
    resolution, block, name = next_run_size(store)
    items = preview_grid(store, settings, int(seed or 0), n, resolution, block)
    return Preview(items, f"{len(items)} samples · seed {int(seed or 0)} · {name} at {resolution} px")
