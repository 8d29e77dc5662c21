"""Split assignment on a real SQLite project: one image, and the automatic stratified split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from studio.errors import StudioError
from studio.services.label import splits
from studio.store.db import ProjectStore
from studio.store.models import Annotation, Category, Image
from tests.support.label_fixtures import make_project


def test_set_split_and_clear(tmp_path: Path) -> None:
    store, _cls, ids = make_project(tmp_path)
    splits.set_split(store, ids[0], "valid")
    splits.set_split(store, ids[1], "train")
    splits.set_split(store, ids[1], "unassigned")
    with store.session(readonly=True) as s:
        assert s.get_one(Image, ids[0]).split == "valid"
        assert s.get_one(Image, ids[1]).split is None
    with pytest.raises(StudioError, match="Unknown split"):
        splits.set_split(store, ids[0], "holdout")
    with pytest.raises(StudioError, match="does not exist"):
        splits.set_split(store, 999, "train")
    store.close()


def test_stratified_assignment_balances_every_class() -> None:
    # 100 images: class 1 on all, class 2 (rare) on 10, class 3 on 30 (some images have 2 classes)
    labels = {
        i: {1} | ({2} if i % 10 == 0 else set()) | ({3} if i % 10 in (1, 2, 3) else set()) for i in range(100)
    }
    labels.update({100 + i: set() for i in range(20)})  # unlabeled images
    out = splits.stratified_assignment(labels, {"train": 0.7, "valid": 0.2, "test": 0.1}, seed=3)
    assert set(out) == set(labels)
    per_split = Counter(out.values())
    assert per_split == {"train": 84, "valid": 24, "test": 12}
    for cls, n in ((1, 100), (2, 10), (3, 30)):
        got = Counter(out[i] for i, cs in labels.items() if cls in cs)
        for split, ratio in (("train", 0.7), ("valid", 0.2), ("test", 0.1)):
            assert abs(got[split] - ratio * n) <= 1, (cls, got)
    assert splits.stratified_assignment(labels, {"train": 0.7, "valid": 0.2, "test": 0.1}, seed=3) == out
    other = splits.stratified_assignment(labels, {"train": 0.7, "valid": 0.2, "test": 0.1}, seed=4)
    assert other != out


def test_ratio_errors() -> None:
    with pytest.raises(StudioError, match="above zero"):
        splits.stratified_assignment({1: set()}, {"train": 0, "valid": 0})
    with pytest.raises(StudioError, match="negative"):
        splits.stratified_assignment({1: set()}, {"train": -1, "valid": 2})
    with pytest.raises(StudioError, match="Unknown split"):
        splits.stratified_assignment({1: set()}, {"dev": 1})


def test_auto_split_on_store_is_one_transaction(tmp_path: Path) -> None:
    store = ProjectStore.create(tmp_path / "p", "P")
    with store.session() as s:
        a, b = Category(name="a"), Category(name="b")
        s.add_all([a, b])
        s.flush()
        for i in range(40):
            path = tmp_path / f"{i}.png"
            PILImage.new("RGB", (32, 32), (i * 6, 255 - i * 6, 7 * i % 255)).save(path)
            im = store.add_image_file(path, s, split="train" if i < 5 else None)
            s.add(Annotation(image_id=im.id, category_id=(b if i % 4 == 0 else a).id, x=1, y=1, w=5, h=5))
    res = splits.auto_split(store, {"train": 0.5, "valid": 0.25, "test": 0.25}, seed=1)
    assert res.images == {"train": 20, "valid": 10, "test": 10}
    assert res.boxes["b"] == {"train": 5, "valid": 2, "test": 3} or res.boxes["b"] == {
        "train": 5,
        "valid": 3,
        "test": 2,
    }
    assert "| **images** | 20 | 10 | 10 |" in res.to_markdown()
    with store.session(readonly=True) as s:
        assert None not in set(s.scalars(select(Image.split)))
    # only unassigned: nothing left to split
    with pytest.raises(StudioError, match="all already have a split"):
        splits.auto_split(store, {"train": 1}, only_unassigned=True)
    store.close()


def test_auto_split_reports_the_shown_images_split_and_escapes_class_names(tmp_path: Path) -> None:
    store = ProjectStore.create(tmp_path / "p", "P")
    with store.session() as s:
        cat = Category(name="<b>x|y</b>")
        s.add(cat)
        s.flush()
        ids = []
        for i in range(6):
            path = tmp_path / f"{i}.png"
            PILImage.new("RGB", (16, 16), (i * 40, 9, 9)).save(path)
            im = store.add_image_file(path, s)
            s.add(Annotation(image_id=im.id, category_id=cat.id, x=1, y=1, w=5, h=5))
            ids.append(im.id)
    res = splits.auto_split(store, {"train": 1, "valid": 1}, seed=0, image_id=ids[2])
    with store.session(readonly=True) as s:
        assert res.image_split == s.get_one(Image, ids[2]).split in ("train", "valid")
    table = res.to_markdown()
    assert "<b>" not in table and "&lt;b&gt;x\\|y&lt;/b&gt;" in table  # the pipe cannot split the row
    assert splits.auto_split(store, {"train": 1}).image_split is None
    store.close()


def test_group_aware_assignment_never_separates_a_group() -> None:
    labels = {i: {1 + i % 3} | ({4} if i % 17 == 0 else set()) for i in range(120)}
    groups = [set(range(k, k + 4)) for k in range(0, 60, 6)] + [{100, 101}, {101, 102}]  # 2 groups overlap
    ratios = {"train": 0.7, "valid": 0.2, "test": 0.1}
    for seed in range(5):
        out = splits.stratified_assignment(labels, ratios, seed, groups)
        assert set(out) == set(labels)
        for g in groups:
            assert len({out[i] for i in g}) == 1, (seed, g)
        per_split = Counter(out.values())
        assert abs(per_split["train"] - 84) <= 4 and abs(per_split["valid"] - 24) <= 4, per_split


def test_auto_split_keeps_near_duplicates_together(tmp_path: Path) -> None:
    from studio.services.data import duplicates
    from tests.support.duplicate_fixtures import leaky_project

    store, ids = leaky_project(tmp_path)
    for seed in range(3):
        splits.auto_split(store, {"train": 0.5, "valid": 0.5}, seed=seed)
        with store.session(readonly=True) as s:
            split_of = dict(s.execute(select(Image.id, Image.split)).all())
        for key in ("leak", "same", "test"):
            assert len({split_of[i] for i in ids[key]}) == 1, (seed, key)
        assert duplicates.leakage_line(store) == ""
    # only the unassigned: a copy joins the split its group already has
    with store.session() as s:
        s.get_one(Image, ids["leak"][2]).split = None
        s.get_one(Image, ids["leak"][0]).split = "test"
        s.get_one(Image, ids["leak"][1]).split = "test"
    splits.auto_split(store, {"train": 1.0}, only_unassigned=True)
    with store.session(readonly=True) as s:
        assert s.get_one(Image, ids["leak"][2]).split == "test"
    store.close()
