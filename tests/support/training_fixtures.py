"""Tiny datasets and model settings for the training tests (real files, real training, small sizes).

The shapes are easy on purpose -- solid red squares and cyan bars on a dark background -- so a
tiny randomly initialised network can learn them in a few hundred CPU steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("square", "bar")
COLOURS = ((230, 60, 60), (60, 200, 230))

#: A small RF-DETR Nano: 2 ViT blocks, narrow decoder, few queries. Architecture overrides only.
TINY = dict(
    pretrain_weights=None,
    vit_encoder_num_layers=2,
    out_feature_indexes=[1, 2],
    num_queries=20,
    group_detr=2,
    dec_layers=2,
    dim_feedforward=256,
    hidden_dim=128,
)
#: Reference-compatible reduced Nano (full ViT, fewer queries/groups) for cross-loading tests.
SMALL_NANO = dict(pretrain_weights=None, num_queries=20, group_detr=2)
#: Training arguments that keep a run to seconds: no augmentation, no workers.
FAST = dict(batch_size=2, num_workers=0, multi_scale=False, scale_jitter=False, aug_config={}, seed=0)


def _scene(rng: np.random.Generator, size: int) -> tuple[Image.Image, list[tuple[int, list[int]]]]:
    image = Image.new("RGB", (size, size), (30, 30, 30))
    draw = ImageDraw.Draw(image)
    boxes = []
    for _ in range(int(rng.integers(1, 3))):
        cls = int(rng.integers(0, len(CLASSES)))
        w = int(rng.integers(size // 4, size // 2))
        h = w if cls == 0 else max(6, w // 3)
        x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=COLOURS[cls])
        boxes.append((cls, [x, y, w, h]))
    return image, boxes


def make_shapes_dataset(
    root: Path,
    n: int = 8,
    size: int = 128,
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "valid"),
    same_images: bool = True,
) -> Path:
    """A Roboflow-layout COCO dataset; with ``same_images`` every split holds the same images (overfitting)."""
    for k, split in enumerate(splits):
        rng = np.random.default_rng(seed if same_images else seed + k)
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            image, boxes = _scene(rng, size)
            name = f"{split}_{i:02d}.png"
            image.save(folder / name)
            images.append({"id": i, "file_name": name, "width": size, "height": size})
            for cls, (x, y, w, h) in boxes:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i,
                        "category_id": cls + 1,
                        "bbox": [x, y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
        categories = [
            {"id": k + 1, "name": name, "supercategory": "shapes"} for k, name in enumerate(CLASSES)
        ]
        (folder / "_annotations.coco.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories})
        )
    return root
