"""Synthetic detection scenes (coloured shapes on noisy backgrounds) written as a COCO dataset.

Why: the studio ships no data and nothing may be downloaded, yet every page (and every test) needs a
real dataset with a class hierarchy, several splits and varied boxes. Scenes are deterministic for a
seed, boxes are exact (computed from the drawn geometry), and the category list mimics a Roboflow
export: a dataset-level placeholder category ``shapes`` (supercategory ``none``), two intermediate
supercategories and five leaf classes — only the leaves are trained.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from rfdetr_core.ops.boxes import box_iou_np, xywh_to_xyxy_np

# Roboflow-like categories: id 0 is the dataset placeholder, leaves carry a real supercategory.
CATEGORIES: list[dict] = [
    {"id": 0, "name": "shapes", "supercategory": "none"},
    {"id": 1, "name": "round", "supercategory": "shapes"},
    {"id": 2, "name": "angular", "supercategory": "shapes"},
    {"id": 3, "name": "circle", "supercategory": "round"},
    {"id": 4, "name": "ellipse", "supercategory": "round"},
    {"id": 5, "name": "square", "supercategory": "angular"},
    {"id": 6, "name": "triangle", "supercategory": "angular"},
    {"id": 7, "name": "star", "supercategory": "angular"},
]
LEAF_CLASSES = ["circle", "ellipse", "square", "triangle", "star"]
_CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}


@dataclass
class Scene:
    """One generated image with its boxes as (class name, [x, y, w, h]) in absolute pixels."""

    image: Image.Image
    boxes: list[tuple[str, list[float]]] = field(default_factory=list)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A random two-colour gradient plus per-pixel noise, so no two backgrounds hash the same."""
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, w if rng.random() < 0.5 else h, dtype=np.float32)
    grad = c0[None, :] * (1 - t[:, None]) + c1[None, :] * t[:, None]
    img = (
        np.broadcast_to(grad[None, :, :], (h, w, 3))
        if len(t) == w
        else np.broadcast_to(grad[:, None, :], (h, w, 3))
    )
    noise = rng.normal(0.0, rng.uniform(5, 25), (h, w, 3)).astype(np.float32)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _polygon(kind: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    if kind == "square":
        angles = [rot + k * math.pi / 2 for k in range(4)]
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]
    if kind == "triangle":
        angles = [rot + k * 2 * math.pi / 3 for k in range(3)]
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]
    pts = []  # star: 5 outer + 5 inner vertices
    for k in range(10):
        rad = r if k % 2 == 0 else r * 0.45
        a = rot + k * math.pi / 5
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _draw_shape(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, kind: str, w: int, h: int
) -> list[float]:
    """Draw one shape fully inside the image and return its exact box [x, y, bw, bh]."""
    r = float(rng.uniform(0.06, 0.2) * min(w, h))
    cx, cy = float(rng.uniform(r + 1, w - r - 1)), float(rng.uniform(r + 1, h - r - 1))
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    if kind in ("circle", "ellipse"):
        rx, ry = (r, r) if kind == "circle" else (r, r * float(rng.uniform(0.4, 0.7)))
        if kind == "ellipse" and rng.random() < 0.5:
            rx, ry = ry, rx
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        draw.ellipse(box, fill=colour)
    else:
        pts = _polygon(kind, cx, cy, r, float(rng.uniform(0, 2 * math.pi)))
        draw.polygon(pts, fill=colour)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        box = [min(xs), min(ys), max(xs), max(ys)]
    x0, y0, x1, y1 = (round(v, 2) for v in box)
    return [x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)]


def generate_scenes(
    n: int, seed: int = 0, size: tuple[int, int] = (320, 240), boxes_per_image: tuple[int, int] = (1, 6)
) -> Iterator[Scene]:
    """Yield ``n`` deterministic scenes; shapes overlap little (IoU < 0.3) so every box is visible."""
    rng = np.random.default_rng(seed)
    w, h = size
    for _ in range(n):
        canvas = Image.fromarray(_background(rng, w, h))
        draw = ImageDraw.Draw(canvas)
        scene = Scene(canvas)
        target = int(rng.integers(boxes_per_image[0], boxes_per_image[1] + 1))
        for _attempt in range(target * 4):
            if len(scene.boxes) >= target:
                break
            kind = LEAF_CLASSES[int(rng.integers(len(LEAF_CLASSES)))]
            probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))  # measure first, draw only if it fits
            state = rng.bit_generator.state
            box = _draw_shape(probe, rng, kind, w, h)
            placed = xywh_to_xyxy_np([b for _, b in scene.boxes]).reshape(-1, 4)
            if (box_iou_np(xywh_to_xyxy_np(box), placed) > 0.3).any():
                continue
            rng.bit_generator.state = state
            _draw_shape(draw, rng, kind, w, h)
            scene.boxes.append((kind, box))
        yield scene


def coco_dict(scenes: list[tuple[str, Scene]], size: tuple[int, int]) -> dict:
    """COCO json for (file_name, scene) pairs, ids 1-based for images and annotations."""
    images, annotations = [], []
    for i, (name, scene) in enumerate(scenes, start=1):
        images.append({"id": i, "file_name": name, "width": size[0], "height": size[1]})
        for cls, (x, y, bw, bh) in scene.boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": _CAT_ID[cls],
                    "bbox": [x, y, bw, bh],
                    "area": round(bw * bh, 2),
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": "RF-DETR Studio synthetic shapes"},
        "images": images,
        "annotations": annotations,
        "categories": [dict(c) for c in CATEGORIES],
    }


def make_synthetic_coco(
    out_dir: Path,
    n_images_per_split: dict[str, int] | None = None,
    seed: int = 0,
    size: tuple[int, int] = (320, 240),
    boxes_per_image: tuple[int, int] = (1, 6),
    jpeg_quality: int = 90,
) -> Path:
    """Write a COCO dataset in the Roboflow layout (``<split>/_annotations.coco.json`` + images)."""
    out_dir = Path(out_dir)
    counts = n_images_per_split or {"train": 16, "valid": 4, "test": 4}
    for k, (split, n) in enumerate(counts.items()):
        split_dir = out_dir / split
        split_dir.mkdir(parents=True, exist_ok=True)
        pairs = []
        for i, scene in enumerate(generate_scenes(n, seed * 1000 + k, size, boxes_per_image)):
            name = f"{split}_{i:05d}.jpg"
            scene.image.save(split_dir / name, quality=jpeg_quality)
            pairs.append((name, scene))
        (split_dir / "_annotations.coco.json").write_text(json.dumps(coco_dict(pairs, size)))
    return out_dir


__all__ = ["CATEGORIES", "LEAF_CLASSES", "Scene", "coco_dict", "generate_scenes", "make_synthetic_coco"]
