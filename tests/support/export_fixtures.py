"""Shared builders for the export tests: real image files and a small labelled COCO set, made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def draw_scene(
    rng: np.random.Generator, size: tuple[int, int]
) -> tuple[Image.Image, list[list[float]], list[int]]:
    """A textured background with 1–4 filled shapes; returns the image, xywh boxes and class ids."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.integers(30, 220, size=3)
    bg = (
        base
        + 35 * np.sin(xx / rng.uniform(6, 30))[..., None]
        + 25 * np.cos(yy / rng.uniform(6, 30))[..., None]
    )
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    boxes, labels = [], []
    for _ in range(int(rng.integers(1, 5))):
        w, h = int(rng.integers(width // 8, width // 3)), int(rng.integers(height // 8, height // 3))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        label = int(rng.integers(0, 3))
        colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
        if label == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        elif label == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            draw.polygon([(x0, y0 + h), (x0 + w // 2, y0), (x0 + w, y0 + h)], fill=colour)
        boxes.append([float(x0), float(y0), float(w), float(h)])
        labels.append(label)
    return img, boxes, labels


def write_images(folder: Path, count: int = 4, seed: int = 0) -> Path:
    """*count* varied JPEG/PNG files of different sizes in *folder*."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        size = (int(rng.integers(320, 700)), int(rng.integers(240, 560)))
        img, _, _ = draw_scene(rng, size)
        img.save(folder / (f"img_{i}.jpg" if i % 2 else f"img_{i}.png"))
    return folder


def write_coco(folder: Path, count: int = 4, seed: int = 1) -> Path:
    """A labelled set (Roboflow layout: images + ``_annotations.coco.json``) with classes square/circle/triangle."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = ["square", "circle", "triangle"]
    images, annotations = [], []
    for i in range(count):
        size = (int(rng.integers(320, 640)), int(rng.integers(240, 480)))
        img, boxes, labels = draw_scene(rng, size)
        name = f"val_{i}.jpg"
        img.save(folder / name)
        images.append({"id": i, "file_name": name, "width": size[0], "height": size[1]})
        for box, label in zip(boxes, labels, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": label,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for i, n in enumerate(names)],
    }
    (folder / "_annotations.coco.json").write_text(json.dumps(coco))
    return folder


def perturb_box_head(rf, scale: float = 0.02, seed: int = 0) -> None:
    """Give the (zero-initialised) box head random weights so boxes depend on the whole decoder.

    With fresh weights the last box layer is zero and boxes equal the encoder proposals, which would
    let a broken decoder slip through a box comparison.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in rf.model.model.named_parameters():
            if "bbox_embed" in name:
                param.add_(scale * torch.randn(param.shape, generator=gen))
