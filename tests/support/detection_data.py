"""Small detection datasets written to disk for the rfdetr_core data/transform tests.

Images are PNG (lossless, so decoders cannot differ) with solid coloured rectangles on noise, and
every writer returns what it wrote, so tests compare loaders against known truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw


@dataclass
class Scene:
    """One image: file name, size, and boxes as (class index, [x, y, w, h]) in pixels."""

    name: str
    width: int
    height: int
    boxes: list[tuple[int, list[float]]] = field(default_factory=list)


def draw_scene(path: Path, scene: Scene, rng: np.random.Generator) -> None:
    noise = rng.integers(0, 256, (scene.height, scene.width, 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    draw = ImageDraw.Draw(image)
    for _, (x, y, w, h) in scene.boxes:
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
    image.save(path)


def random_scenes(
    n: int, num_classes: int, seed: int, max_boxes: int = 5, empty_every: int = 4, prefix: str = "img"
) -> list[Scene]:
    """Scenes of varied sizes with integer boxes fully inside the image; every ``empty_every``-th has none."""
    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(n):
        width, height = int(rng.integers(64, 200)), int(rng.integers(64, 200))
        scene = Scene(f"{prefix}_{i:03d}.png", width, height)
        count = (
            0 if empty_every and i % empty_every == empty_every - 1 else int(rng.integers(1, max_boxes + 1))
        )
        for _ in range(count):
            w, h = int(rng.integers(6, width // 2)), int(rng.integers(6, height // 2))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            scene.boxes.append((int(rng.integers(0, num_classes)), [float(x), float(y), float(w), float(h)]))
        scenes.append(scene)
    return scenes


def write_coco_split(
    split_dir: Path,
    scenes: list[Scene],
    categories: list[dict],
    category_of_class: list[int],
    seed: int = 0,
    extra_annotations: list[dict] | None = None,
) -> dict:
    """Write images + ``_annotations.coco.json``; image ids start at 0 (as Roboflow exports do)."""
    split_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id, scene in enumerate(scenes):
        draw_scene(split_dir / scene.name, scene, rng)
        images.append({"id": image_id, "file_name": scene.name, "width": scene.width, "height": scene.height})
        for class_index, bbox in scene.boxes:
            annotations.append(
                {
                    "id": len(annotations),
                    "image_id": image_id,
                    "category_id": category_of_class[class_index],
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    for extra in extra_annotations or []:
        annotations.append(dict(extra, id=len(annotations)))
    doc = {"images": images, "annotations": annotations, "categories": categories}
    (split_dir / "_annotations.coco.json").write_text(json.dumps(doc))
    return doc


def yolo_line(class_index: int, bbox: list[float], width: int, height: int) -> str:
    x, y, w, h = bbox
    return f"{class_index} {(x + w / 2) / width!r} {(y + h / 2) / height!r} {w / width!r} {h / height!r}\n"


def write_yolo_split(root: Path, folder: str, scenes: list[Scene], seed: int = 0) -> None:
    """Roboflow YOLO layout: ``<folder>/images`` + ``<folder>/labels``; empty scenes get no label file."""
    rng = np.random.default_rng(seed)
    (root / folder / "images").mkdir(parents=True, exist_ok=True)
    (root / folder / "labels").mkdir(parents=True, exist_ok=True)
    for scene in scenes:
        draw_scene(root / folder / "images" / scene.name, scene, rng)
        if scene.boxes:
            lines = [yolo_line(c, b, scene.width, scene.height) for c, b in scene.boxes]
            (root / folder / "labels" / f"{Path(scene.name).stem}.txt").write_text("".join(lines))


def write_yolo_data(root: Path, names: list[str] | dict[int, str]) -> None:
    (root / "data.yaml").write_text(
        yaml.safe_dump({"train": "train/images", "val": "valid/images", "names": names})
    )


# A Roboflow-like hierarchy with sparse ids: a root grouping node, two intermediate parents, five leaves.
HIERARCHY = [
    {"id": 0, "name": "things", "supercategory": "none"},
    {"id": 2, "name": "vehicle", "supercategory": "things"},
    {"id": 3, "name": "animal", "supercategory": "things"},
    {"id": 5, "name": "car", "supercategory": "vehicle"},
    {"id": 7, "name": "bus", "supercategory": "vehicle"},
    {"id": 9, "name": "cat", "supercategory": "animal"},
    {"id": 11, "name": "dog", "supercategory": "animal"},
    {"id": 12, "name": "person", "supercategory": "person"},
]
LEAVES = ["car", "bus", "cat", "dog", "person"]
LEAF_IDS = [5, 7, 9, 11, 12]


def make_coco_dataset(
    root: Path, counts: dict[str, int] | None = None, seed: int = 0
) -> dict[str, list[Scene]]:
    """A COCO (Roboflow layout) dataset with :data:`HIERARCHY`; returns the scenes of each split."""
    counts = counts or {"train": 6, "valid": 4}
    out = {}
    for k, (split, n) in enumerate(counts.items()):
        scenes = random_scenes(n, len(LEAVES), seed * 100 + k, prefix=split)
        write_coco_split(root / split, scenes, HIERARCHY, LEAF_IDS, seed=k)
        out[split] = scenes
    return out


def make_yolo_dataset(root: Path, scenes_by_split: dict[str, list[Scene]], names: list[str]) -> None:
    for k, (split, scenes) in enumerate(scenes_by_split.items()):
        write_yolo_split(root, split, scenes, seed=k)
    write_yolo_data(root, names)
