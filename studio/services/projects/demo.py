"""The demo project: a synthetic dataset generated on the fly and imported on first start.

Why generate instead of shipping files: nothing may be downloaded, the repository stays small, and the
demo goes through the *real* importer (COCO Roboflow layout on disk -> ``import_dataset``), so the
first thing a new user sees is exactly what their own COCO export would look like.

The scenes are varied on purpose (gradient/noise backgrounds, unlabeled clutter, random colours, sizes,
rotations and partial overlaps) so the gallery, the class chart and later the training and review pages
have something realistic to show. The classes form a two-level supercategory hierarchy::

    shape
    ├── round:   circle, ring
    └── angular: square, triangle, star   (star is deliberately rare -> a "rare class" warning)
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

DEMO_NAME = "Demo shapes"
#: Written in the projects root once the demo was offered, so deleting the demo sticks across restarts.
DEMO_MARKER = ".studio-demo-created"

# (name, supercategory). Parents come first, as in a Roboflow export.
DEMO_CATEGORIES: list[tuple[str, str]] = [
    ("shape", "none"),
    ("round", "shape"),
    ("angular", "shape"),
    ("circle", "round"),
    ("ring", "round"),
    ("square", "angular"),
    ("triangle", "angular"),
    ("star", "angular"),
]
LEAF_CLASSES = ["circle", "ring", "square", "triangle", "star"]
# Sampling weights per leaf: 'star' is rare on purpose.
_LEAF_WEIGHTS = [1.0, 0.8, 1.0, 1.0, 0.12]
DEFAULT_SPLITS = {"train": 40, "valid": 12, "test": 8}


def _background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A two-colour gradient with blotches and blur: cheap, but not a flat colour."""
    w, h = size
    c0 = [rng.randint(30, 225) for _ in range(3)]
    c1 = [min(255, max(0, c + rng.randint(-90, 90))) for c in c0]
    grad = Image.linear_gradient("L").resize((w, h)).rotate(rng.choice([0, 90, 180, 270]), expand=False)
    img = Image.composite(Image.new("RGB", size, tuple(c1)), Image.new("RGB", size, tuple(c0)), grad)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(3, 9)):
        x, y, r = rng.randint(0, w), rng.randint(0, h), rng.randint(10, 60)
        shade = tuple(min(255, max(0, c + rng.randint(-40, 40))) for c in c0)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=shade)
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(2, 6)))


def _clutter(rng: random.Random, draw: ImageDraw.ImageDraw, size: tuple[int, int]) -> None:
    """Unlabeled lines and dots: the detector must learn they are background."""
    w, h = size
    for _ in range(rng.randint(0, 6)):
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        pts = [(rng.randint(0, w), rng.randint(0, h)) for _ in range(2)]
        draw.line(pts, fill=colour, width=rng.randint(1, 3))


def _regular_polygon(cx: float, cy: float, r: float, n: int, rot: float, inner: float | None = None):
    """Vertices of a regular polygon (or a star when ``inner`` radius is given)."""
    pts = []
    steps = n * 2 if inner else n
    for i in range(steps):
        radius = (r if i % 2 == 0 else r * inner) if inner else r
        a = rot + 2 * math.pi * i / steps
        pts.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return pts


def _draw_shape(
    rng: random.Random, draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float
) -> tuple[float, float, float, float]:
    """Draw one object and return its tight box (x0, y0, x1, y1)."""
    colour = tuple(rng.randint(0, 255) for _ in range(3))
    outline = tuple(max(0, c - 60) for c in colour)
    rot = rng.uniform(0, 2 * math.pi)
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline=outline, width=2)
        return cx - r, cy - r, cx + r, cy + r
    if kind == "ring":
        width = max(3, int(r * rng.uniform(0.25, 0.45)))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=width)
        return cx - r, cy - r, cx + r, cy + r
    if kind == "square":
        pts = _regular_polygon(cx, cy, r, 4, rot)
    elif kind == "triangle":
        pts = _regular_polygon(cx, cy, r, 3, rot)
    else:  # star
        pts = _regular_polygon(cx, cy, r, 5, rot, inner=0.45)
    draw.polygon(pts, fill=colour, outline=outline)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return min(xs), min(ys), max(xs), max(ys)


def _scene(rng: random.Random, size: tuple[int, int]) -> tuple[Image.Image, list[tuple[str, list[float]]]]:
    """One image and its boxes as (class name, [x, y, w, h]) clipped to the image."""
    w, h = size
    img = _background(rng, size)
    draw = ImageDraw.Draw(img)
    _clutter(rng, draw, size)
    boxes = []
    for _ in range(rng.randint(1, 5)):
        kind = rng.choices(LEAF_CLASSES, weights=_LEAF_WEIGHTS)[0]
        r = rng.uniform(12, min(w, h) / 4.5)
        cx, cy = rng.uniform(r * 0.6, w - r * 0.6), rng.uniform(r * 0.6, h - r * 0.6)
        x0, y0, x1, y1 = _draw_shape(rng, draw, kind, cx, cy, r)
        x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
        if x1 - x0 >= 4 and y1 - y0 >= 4:
            boxes.append((kind, [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]))
    return img, boxes


def generate_demo_dataset(
    out_dir: Path, *, seed: int = 0, splits: dict[str, int] | None = None, size: tuple[int, int] = (320, 240)
) -> Path:
    """Write a COCO dataset in the Roboflow layout (``<split>/_annotations.coco.json``) to ``out_dir``."""
    rng = random.Random(seed)
    out_dir = Path(out_dir)
    cat_ids = {name: i for i, (name, _) in enumerate(DEMO_CATEGORIES)}
    categories = [{"id": cat_ids[n], "name": n, "supercategory": sc} for n, sc in DEMO_CATEGORIES]
    for split, n_images in (splits or DEFAULT_SPLITS).items():
        split_dir = out_dir / split
        split_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(n_images):
            img, boxes = _scene(rng, size)
            file_name = f"{split}_{i:04d}.jpg"
            img.save(split_dir / file_name, quality=88)
            images.append({"id": i + 1, "file_name": file_name, "width": size[0], "height": size[1]})
            for kind, bbox in boxes:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i + 1,
                        "category_id": cat_ids[kind],
                        "bbox": bbox,
                        "area": round(bbox[2] * bbox[3], 2),
                        "iscrowd": 0,
                    }
                )
        coco = {"images": images, "annotations": annotations, "categories": categories}
        (split_dir / "_annotations.coco.json").write_text(json.dumps(coco))
    return out_dir


def ensure_demo_project(root: Path, *, progress: Callable[[float, str], None] | None = None) -> str | None:
    """Create the demo project when the projects root has none and no demo was offered before.

    Returns the demo project's slug, or ``None`` when nothing was created. The marker file makes this
    a one-time offer: a user who deletes the demo does not get it back on the next start.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / DEMO_MARKER
    if marker.exists():  # checked before the imports below: a later start stays fast
        return None
    from studio.services.data.importing.importer import import_dataset
    from studio.services.projects.catalog import create_project, delete_project, list_projects, open_store

    if list_projects(root):  # not a first start: never offer the demo to this folder
        marker.write_text("\n")
        return None
    info = create_project(root, DEMO_NAME)
    tmp = Path(tempfile.mkdtemp(prefix="studio-demo-"))
    try:
        generate_demo_dataset(tmp / "dataset")
        with open_store(root, info.slug) as store:
            import_dataset(store, tmp / "dataset", progress=progress)
    except BaseException:
        delete_project(root, info.slug)  # never leave a half-made demo behind
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    marker.write_text(info.slug + "\n")
    return info.slug
