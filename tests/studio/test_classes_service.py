"""Classes service on a real SQLite project: tree, leaf rule, counts, warnings and edits."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from studio.errors import StudioError
from studio.services.data import classes as svc
from studio.store.db import ProjectStore
from studio.store.models import Annotation, Category


def _image(store: ProjectStore, s, tmp: Path, i: int, split: str | None):
    path = tmp / f"img{i}.png"
    PILImage.new("RGB", (64, 48), (i * 20 % 256, 100, 150)).save(path)
    return store.add_image_file(path, s, split=split, status="labeled")


@pytest.fixture()
def store(tmp_path: Path) -> ProjectStore:
    """vehicle > (car, truck), animal > (cat); plus a flat 'sign'. Boxes: car 3 train + 1 valid,
    truck 1 train, cat 0, sign 2 train (one image) — and one box directly on the parent 'vehicle'."""
    st = ProjectStore.create(tmp_path / "p", "P")
    with st.session() as s:
        vehicle = Category(name="vehicle")
        animal = Category(name="animal")
        s.add_all([vehicle, animal])
        s.flush()
        car, truck = Category(name="car", parent_id=vehicle.id), Category(name="truck", parent_id=vehicle.id)
        cat, sign = Category(name="cat", parent_id=animal.id), Category(name="sign")
        s.add_all([car, truck, cat, sign])
        s.flush()
        im = [_image(st, s, tmp_path, i, split) for i, split in enumerate(["train", "train", "valid", None])]
        boxes = [
            (car, im[0]),
            (car, im[0]),
            (car, im[1]),
            (car, im[2]),
            (truck, im[1]),
            (sign, im[3]),
            (sign, im[3]),
            (vehicle, im[1]),
        ]
        for c, image in boxes:
            s.add(Annotation(image_id=image.id, category_id=c.id, x=1, y=2, w=10, h=8))
        s.add(Annotation(image_id=im[0].id, category_id=cat.id, x=1, y=1, w=5, h=5, source="proposal"))
    yield st
    st.close()


def _ids(store: ProjectStore) -> dict[str, int]:
    with store.session(readonly=True) as s:
        return {c.name: c.id for c in s.scalars(select(Category))}


def test_leaf_rule_and_tree(store: ProjectStore) -> None:
    assert [c.name for c in svc.trainable_classes(store)] == ["car", "truck", "cat", "sign"]
    roots = svc.class_tree(store)
    assert [r.name for r in roots] == ["vehicle", "animal", "sign"]
    vehicle = roots[0]
    assert not vehicle.trained and vehicle.n_boxes == 1
    assert [(c.name, c.trained, c.n_boxes) for c in vehicle.children] == [
        ("car", True, 4),
        ("truck", True, 1),
    ]
    tree = svc.tree_html(roots)
    # car and truck are nested inside vehicle's list item
    vehicle_item = tree[
        tree.index(f'data-class-id="{vehicle.id}"') : tree.index(f'data-class-id="{roots[1].id}"')
    ]
    assert "<strong>car</strong>" in vehicle_item and "<strong>truck</strong>" in vehicle_item
    assert "vehicle <em>(group — not trained)</em>" in vehicle_item


def test_flat_dataset_trains_everything(tmp_path: Path) -> None:
    with ProjectStore.create(tmp_path / "flat", "F") as st:
        for name in ["b", "a"]:
            svc.add_class(st, name)
        assert [c.name for c in svc.trainable_classes(st)] == ["b", "a"]


def test_counts_per_split_ignore_proposals(store: ProjectStore) -> None:
    counts = {c.name: c for c in svc.class_counts(store)}
    assert counts["car"].boxes == {"train": 3, "valid": 1, "test": 0, "unassigned": 0}
    assert counts["car"].images == {"train": 2, "valid": 1, "test": 0, "unassigned": 0}
    assert counts["sign"].boxes["unassigned"] == 2 and counts["sign"].images["unassigned"] == 1
    assert counts["cat"].total_boxes == 0  # the proposal is not a label
    assert counts["truck"].parent == "vehicle" and not counts["vehicle"].trained


def test_warnings(store: ProjectStore) -> None:
    kinds = {(w.kind, w.category_id) for w in svc.class_warnings(store, rare_threshold=3)}
    ids = _ids(store)
    assert ("empty", ids["cat"]) in kinds
    assert ("rare", ids["truck"]) in kinds and ("rare", ids["car"]) not in kinds
    assert ("no_valid", ids["truck"]) in kinds and ("no_valid", ids["car"]) not in kinds
    assert ("parent_boxes", ids["vehicle"]) in kinds
    assert ("empty", ids["animal"]) not in kinds  # a group without boxes is fine


def test_no_classes_warning(tmp_path: Path) -> None:
    with ProjectStore.create(tmp_path / "e", "E") as st:
        assert [w.kind for w in svc.class_warnings(st)] == ["no_classes"]


def test_add_and_rename_validate_names(store: ProjectStore) -> None:
    ids = _ids(store)
    new_id = svc.add_class(store, "  bus ", parent_id=ids["vehicle"])
    assert "bus" in [c.name for c in svc.trainable_classes(store)]
    with pytest.raises(StudioError, match="already exists"):
        svc.add_class(store, "CAR")
    with pytest.raises(StudioError, match="empty"):
        svc.rename_class(store, new_id, "   ")
    svc.rename_class(store, new_id, "coach")
    assert _ids(store)["coach"] == new_id
    # adding a child to 'sign' makes it a parent: it is no longer trained
    svc.add_class(store, "stop sign", parent_id=ids["sign"])
    assert "sign" not in [c.name for c in svc.trainable_classes(store)]


def test_merge_moves_boxes_and_children(store: ProjectStore) -> None:
    ids = _ids(store)
    moved = svc.merge_classes(store, [ids["truck"], ids["sign"]], ids["car"])
    assert moved == 3
    counts = {c.name: c for c in svc.class_counts(store)}
    assert "truck" not in counts and counts["car"].total_boxes == 7
    with pytest.raises(StudioError, match="sub-class"):
        svc.merge_classes(store, [ids["vehicle"]], ids["car"])
    # merging a parent into another class re-attaches its children
    svc.merge_classes(store, [ids["animal"]], ids["vehicle"])
    tree = svc.class_tree(store)
    assert [c.name for c in tree[0].children] == ["car", "cat"]


def test_delete_removes_boxes_and_lifts_children(store: ProjectStore) -> None:
    ids = _ids(store)
    assert svc.delete_class(store, ids["vehicle"]) == 1
    roots = [r.name for r in svc.class_tree(store)]
    assert roots == ["animal", "car", "truck", "sign"]
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Annotation).where(Annotation.source == "gt")) == 7
    with pytest.raises(StudioError, match="does not exist"):
        svc.delete_class(store, ids["vehicle"])


def test_chart_and_table(store: ProjectStore) -> None:
    counts = svc.class_counts(store)
    fig = svc.class_chart(counts)
    train_boxes = next(t for t in fig.data if t.name == "train" and t.xaxis == "x")
    # the empty group 'animal' is left out of the chart; 'vehicle' holds a box, so it stays
    assert list(train_boxes.x) == ["vehicle (parent)", "car", "truck", "cat", "sign"]
    assert list(train_boxes.y) == [1, 3, 1, 0, 0]
    assert {t.name for t in fig.data} == {"train", "valid", "test", "unassigned"}
    headers, rows = svc.counts_table(counts)
    assert headers[0] == "Class" and rows[2][:3] == ["car", "vehicle", "yes"]


def test_overview_escapes_file_derived_names_and_says_warnings_in_words(tmp_path: Path) -> None:
    with ProjectStore.create(tmp_path / "x", "X") as st:
        assert svc.warnings_markdown(svc.class_warnings(st)).startswith("- **Warning:** The project has no")
        svc.add_class(st, "<img src=x onerror=alert(1)>")
        svc.add_class(st, "*bold*_x_")
        view = svc.class_overview(st)
    for text in (view.trained_md, view.warnings_md, view.tree_html):
        assert "<img" not in text  # markup of a class name never reaches the page as markup
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in view.trained_md
    assert "\\*bold\\*\\_x\\_" in view.trained_md and "\\*bold\\*\\_x\\_" in view.warnings_md
    assert view.warnings_md.count("- **Warning:**") == 2  # both classes are empty
    assert not any(ord(ch) > 0x2600 for ch in view.warnings_md + svc.warnings_markdown([]))  # no emoji
    assert svc.warnings_markdown([]) == "No class warnings."
    assert [name for name, _ in view.choices] == ["<img src=x onerror=alert(1)>", "*bold*_x_"]


def test_overview_matches_the_separate_queries(store: ProjectStore) -> None:
    view = svc.class_overview(store)
    assert view.trained_md.startswith("**The model will train on 4 class(es):**")
    assert (view.table_headers, view.table_rows) == svc.counts_table(svc.class_counts(store))
    assert view.choices == svc.class_choices(store)
    assert view.tree_html == svc.tree_html(svc.class_tree(store))
