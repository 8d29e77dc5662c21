"""Planted near-duplicates for the duplicate, split and label-next tests (issue 18).

The copies are the ones a real project gets: a resized export, a re-encoded JPEG, a slight crop, a
brighter shot, a frame shifted by a few pixels. The originals are generated scenes, so distinct images
are "of the same scene type" (gradient backgrounds with shapes), the hard case for a perceptual hash.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageEnhance

from studio.services.projects.synthetic import generate_scenes
from studio.store.db import ProjectStore
from studio.store.models import Annotation, Category

COPY_KINDS = ("resize60", "jpeg50", "crop5", "bright10", "shift8")


def planted_copy(im: PILImage.Image, kind: str) -> PILImage.Image:
    """One near-copy of ``im`` of the given kind (see ``COPY_KINDS``)."""
    w, h = im.size
    if kind == "resize60":
        return im.resize((int(w * 0.6), int(h * 0.6)), PILImage.BILINEAR)
    if kind == "jpeg50":
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=50)
        return PILImage.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "crop5":
        dx, dy = round(w * 0.025), round(h * 0.025)  # 5 % of each side in total
        return im.crop((dx, dy, w - dx, h - dy))
    if kind == "bright10":
        return ImageEnhance.Brightness(im).enhance(1.1)
    if kind == "shift8":
        a = np.asarray(im)
        return PILImage.fromarray(np.concatenate([a[:, :8][:, ::-1], a[:, :-8]], axis=1))
    raise ValueError(kind)


def scenes(n: int, seed: int, size: tuple[int, int] = (640, 480)) -> list[PILImage.Image]:
    return [s.image for s in generate_scenes(n, seed=seed, size=size)]


def add_image(store: ProjectStore, s, folder: Path, name: str, im: PILImage.Image, split: str | None) -> int:
    """Write ``im`` as ``folder/name`` and add it to the project; returns the image id."""
    path = folder / name
    im.save(path, quality=92) if name.endswith(".jpg") else im.save(path)
    return store.add_image_file(path, s, split=split, original_name=name).id


def leaky_project(
    tmp: Path, size: tuple[int, int] = (320, 240), project_dir: Path | None = None
) -> tuple[ProjectStore, dict[str, list[int]]]:
    """A project with 12 distinct scenes and 3 planted groups.

    - ``leak``: an original in train and two copies (resize, shift) in valid -> 2 leaked valid images
    - ``same``: an original and a crop copy, both in train -> a group without leakage
    - ``test``: an original in train, a JPEG copy in test -> 1 leaked test image
    Distinct scenes are spread over train/valid. Each image has one box of class ``shape``.
    Returns the store (in ``project_dir``, default ``tmp/proj``) and
    ``{"leak"|"same"|"test"|"distinct": [image ids]}``.
    """
    store = ProjectStore.create(project_dir or tmp / "proj", "Duplicates")
    folder = tmp / "src"
    folder.mkdir()
    ims = scenes(15, seed=11, size=size)
    ids: dict[str, list[int]] = {"leak": [], "same": [], "test": [], "distinct": []}
    with store.session() as s:
        cat = Category(name="shape")
        s.add(cat)
        s.flush()
        plan = [
            ("leak", ims[0], [("train", None), ("valid", "resize60"), ("valid", "shift8")]),
            ("same", ims[1], [("train", None), ("train", "crop5")]),
            ("test", ims[2], [("train", None), ("test", "jpeg50")]),
        ]
        for key, im, members in plan:
            for k, (split, kind) in enumerate(members):
                copy = im if kind is None else planted_copy(im, kind)
                ids[key].append(add_image(store, s, folder, f"{key}{k}.png", copy, split))
        for k, im in enumerate(ims[3:]):
            ids["distinct"].append(
                add_image(store, s, folder, f"d{k}.png", im, "train" if k % 3 else "valid")
            )
        for image_id in sum(ids.values(), []):
            s.add(Annotation(image_id=image_id, category_id=cat.id, x=2, y=2, w=20, h=20))
    return store, ids
