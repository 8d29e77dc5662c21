"""Real images in, model-ready arrays out — shared by tracing, calibration and verification.

Exports are traced, calibrated and checked on the same preprocessing, so an artefact is compared with
PyTorch on exactly the tensor both see; differences in the report are then the artefact's, not ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(folder: str | Path, max_images: int | None = None) -> list[Path]:
    """Image files directly under *folder* or its sub-folders, sorted, at most *max_images*."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {folder}")
    return files[:max_images] if max_images else files


def load_rgb(item: str | Path | Image.Image | np.ndarray) -> Image.Image:
    """Open a path, PIL image or HWC uint8 array as an RGB PIL image."""
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, np.ndarray):
        array = item if item.dtype == np.uint8 else np.clip(item * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(array).convert("RGB")
    with Image.open(item) as img:
        return img.convert("RGB")


def resolve_images(
    images: str | Path | Sequence[str | Path | Image.Image | np.ndarray] | None, max_images: int | None = None
) -> list[Image.Image]:
    """Accept a folder, one image file, a list of paths/arrays/images, or ``None`` (→ empty list)."""
    if images is None:
        return []
    if isinstance(images, (str, Path)):
        if Path(images).is_file():  # a single image (the reference's `infer_dir` is often one file)
            return [load_rgb(images)]
        return [load_rgb(p) for p in list_images(images, max_images)]
    items: Iterable = images[:max_images] if max_images else images
    return [load_rgb(i) for i in items]


def to_unit_nhwc(images: Sequence[Image.Image], shape: tuple[int, int]) -> np.ndarray:
    """Resize to ``(height, width)`` and scale to [0, 1]; float32 ``[N,H,W,3]`` (onnx2tf's layout)."""
    height, width = shape
    out = np.empty((len(images), height, width, 3), dtype=np.float32)
    for i, img in enumerate(images):
        resized = img.resize((width, height), Image.BILINEAR)
        out[i] = np.asarray(resized, dtype=np.float32) / 255.0
    return out


def normalise_nchw(unit_nhwc: np.ndarray, means: Sequence[float], stds: Sequence[float]) -> np.ndarray:
    """Apply mean/std normalisation and move channels first: the network's input contract."""
    mean = np.asarray(means, dtype=np.float32).reshape(1, 1, 1, 3)
    std = np.asarray(stds, dtype=np.float32).reshape(1, 1, 1, 3)
    return np.ascontiguousarray(((unit_nhwc - mean) / std).transpose(0, 3, 1, 2), dtype=np.float32)


def synthetic_images(count: int, size: tuple[int, int] = (480, 640), seed: int = 0) -> list[Image.Image]:
    """Varied images with shapes on textured backgrounds, for when the caller gives none."""
    rng = np.random.default_rng(seed)
    height, width = size
    result = []
    for _ in range(count):
        base = rng.integers(0, 255, size=3)
        yy, xx = np.mgrid[0:height, 0:width]
        img = (
            base
            + 40 * np.sin(xx / rng.uniform(8, 40))[..., None]
            + 30 * np.cos(yy / rng.uniform(8, 40))[..., None]
        )
        img = np.clip(img, 0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(2, 6))):
            x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
            w, h = int(rng.integers(20, width // 3)), int(rng.integers(20, height // 3))
            img[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 255, size=3)
        result.append(Image.fromarray(img))
    return result
