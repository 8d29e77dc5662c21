"""Gallery service on a real project: paging, split/class filters, boxes drawn in class colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from studio.errors import StudioError
from studio.services.data import gallery as gal
from studio.store.db import ProjectStore
from studio.store.models import Annotation, Category

SPLITS = ["train"] * 5 + ["valid"] * 2 + [None]


@pytest.fixture()
def store(tmp_path: Path) -> ProjectStore:
    """8 grey 100x80 images; 'dog' (child of 'animal') boxed on train images 0 and 2, 'cat' on 1."""
    st = ProjectStore.create(tmp_path / "p", "P")
    with st.session() as s:
        animal = Category(name="animal", color="#00ff00")
        s.add(animal)
        s.flush()
        dog = Category(name="dog", parent_id=animal.id, color="#ff0000")
        cat = Category(name="cat", parent_id=animal.id, color="#0000ff")
        s.add_all([dog, cat])
        s.flush()
        images = []
        for i, split in enumerate(SPLITS):
            path = tmp_path / f"{i}.png"
            PILImage.new("RGB", (100, 80), (128, 128, 128 - i)).save(path)
            images.append(st.add_image_file(path, s, split=split))
        s.add(Annotation(image_id=images[0].id, category_id=dog.id, x=10, y=10, w=40, h=30))
        s.add(Annotation(image_id=images[2].id, category_id=dog.id, x=50, y=40, w=30, h=30))
        s.add(Annotation(image_id=images[1].id, category_id=cat.id, x=5, y=5, w=20, h=20))
        s.add(Annotation(image_id=images[3].id, category_id=cat.id, x=5, y=5, w=20, h=20, source="proposal"))
    yield st
    st.close()


def test_paging_clamps_and_counts(store: ProjectStore) -> None:
    first = gal.query_images(store, page_size=3)
    assert (first.total, first.n_pages, len(first.items)) == (8, 3, 3)
    assert [it.original_name for it in first.items] == ["0.png", "1.png", "2.png"]
    assert first.items[0].n_boxes == 1 and first.items[0].split == "train"
    last = gal.query_images(store, page=99, page_size=3)
    assert last.page == 2 and [it.original_name for it in last.items] == ["6.png", "7.png"]
    assert last.summary() == "Page 3 of 3 · images 7–8 of 8"


def test_split_filters(store: ProjectStore) -> None:
    assert gal.query_images(store, split="valid").total == 2
    unassigned = gal.query_images(store, split=gal.UNASSIGNED)
    assert [it.original_name for it in unassigned.items] == ["7.png"]
    assert "unassigned" in unassigned.items[0].caption
    with pytest.raises(StudioError, match="Unknown split"):
        gal.query_images(store, split="training")


def _cat_id(store: ProjectStore, name: str) -> int:
    from sqlalchemy import select

    with store.session(readonly=True) as s:
        return s.scalar(select(Category.id).where(Category.name == name))


def test_class_filter_includes_subclasses_and_ignores_proposals(store: ProjectStore) -> None:
    dogs = gal.query_images(store, category_id=_cat_id(store, "dog"))
    assert [it.original_name for it in dogs.items] == ["0.png", "2.png"]
    cats = gal.query_images(store, category_id=_cat_id(store, "cat"))
    assert [it.original_name for it in cats.items] == ["1.png"]  # image 3 has only a proposal
    animals = gal.query_images(store, category_id=_cat_id(store, "animal"), split="train")
    assert animals.total == 3
    assert (
        gal.query_images(store, category_id=_cat_id(store, "dog"), split="valid").summary()
        == "No images match."
    )


def test_render_draws_boxes_in_class_colour(store: ProjectStore) -> None:
    first = gal.query_images(store, page_size=1).items[0]
    frame = gal.render_image(store, first.id)
    assert frame.shape == (80, 100, 3) and frame.dtype == np.uint8
    # the dog box's left edge (x=10, y in 10..40) is drawn in red; the image itself is grey
    edge = frame[25, 10]
    assert edge[0] > 200 and edge[1] < 60 and edge[2] < 60
    assert tuple(frame[60, 90]) == (128, 128, 128)  # far from the box and label: untouched
    small = gal.render_image(store, first.id, max_side=50)
    assert small.shape == (40, 50, 3)


def test_render_without_boxes_and_missing_image(store: ProjectStore) -> None:
    last = gal.query_images(store, split=gal.UNASSIGNED).items[0]
    frame = gal.render_image(store, last.id)
    assert np.all(frame == frame[0, 0])
    with pytest.raises(StudioError, match="does not exist"):
        gal.render_image(store, 10_000)


def test_gallery_view_checks_the_class_and_clamps_the_page(store: ProjectStore) -> None:
    dog = _cat_id(store, "dog")
    view = gal.gallery_view(store, "train", dog, page=5, page_size=1, thumb_side=50)
    assert (view.page, view.page_info) == (1, "Page 2 of 2 · images 2–2 of 2")
    assert len(view.items) == 1 and view.items[0][1] == "2.png · train · 1 box(es)"
    assert max(view.items[0][0].shape[:2]) == 50
    assert view.class_value == dog and view.class_choices[0] == ("All classes", gal.ALL)
    gone = gal.gallery_view(store, gal.ALL, 999)  # a class deleted meanwhile: back to all classes
    assert gone.class_value == gal.ALL and gone.page_info.endswith("of 8")


def test_summary_counts_groups_apart(store: ProjectStore) -> None:
    assert gal.summary_markdown(store) == "**8** images · **3** boxes · **2 classes (+1 group)**"
