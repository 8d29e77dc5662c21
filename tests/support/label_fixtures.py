"""A small real project for the labeling tests: 6 varied PNG images, flat classes, a few boxes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw

from studio.store.db import ProjectStore
from studio.store.models import Annotation, Category, Image, ImageProblem

CLASSES = {"circle": "#e6194b", "square": "#3cb44b", "star": "#4363d8"}


def make_project(tmp: Path) -> tuple[ProjectStore, dict[str, int], list[int]]:
    """Images 0-1 labeled (boxes), 2-5 unlabeled; image 3 has an import problem.

    Returns the store, class name -> id, and image ids in insertion order.
    """
    store = ProjectStore.create(tmp / "proj", "Label test")
    src = tmp / "src"
    src.mkdir()
    with store.session() as s:
        cats = {n: Category(name=n, color=c) for n, c in CLASSES.items()}
        s.add_all(cats.values())
        s.flush()
        ids = []
        for i in range(6):
            path = src / f"img{i}.png"
            im = PILImage.new("RGB", (96, 64), (20 + 37 * i % 200, 90, 160 - 11 * i))
            ImageDraw.Draw(im).ellipse((10 + i, 8, 40 + 2 * i, 38), fill=(250, 240, 10 * i))
            im.save(path)
            ids.append(store.add_image_file(path, s).id)
        for image_id, name, box in [
            (ids[0], "circle", (10, 8, 30, 30)),
            (ids[0], "square", (50, 20, 20, 20)),
            (ids[1], "star", (5, 5, 40, 30)),
        ]:
            s.add(
                Annotation(
                    image_id=image_id, category_id=cats[name].id, x=box[0], y=box[1], w=box[2], h=box[3]
                )
            )
        s.flush()
        for image_id in ids[:2]:
            s.get_one(Image, image_id).status = "labeled"
        s.add(ImageProblem(image_id=ids[3], kind="box_clipped", message="box clipped to the image"))
        name_to_id = {n: c.id for n, c in cats.items()}
    return store, name_to_id, ids
