"""COCO import (Roboflow layout, single json, zip upload) and loose images, on generated datasets."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from studio.services.data.importing.importer import import_dataset
from studio.store import Annotation, Category, Image, ImportRecord, ProjectStore
from studio.store.models import SPLITS
from tests.support.datagen import assert_same_truth, coco_roboflow, coco_single, loose_images, store_truth


@pytest.fixture()
def store(tmp_path: Path):
    st = ProjectStore.create(tmp_path / "proj", "P")
    yield st
    st.close()


def _tree(store: ProjectStore) -> dict[str, tuple[str | None, int | None]]:
    with store.session(readonly=True) as s:
        cats = list(s.scalars(select(Category)))
        names = {c.id: c.name for c in cats}
        return {c.name: (names.get(c.parent_id), c.source_id) for c in cats}


def test_roboflow_layout_imports_images_boxes_splits_and_hierarchy(
    store: ProjectStore, tmp_path: Path
) -> None:
    truth = coco_roboflow(tmp_path / "ds", {"train": 6, "valid": 3, "test": 2})
    report = import_dataset(store, tmp_path / "ds")
    assert report.format == "coco-roboflow" and report.problems == []
    assert report.counts["images_imported"] == 11
    assert report.counts["boxes_imported"] == sum(len(v) for v in truth.values())
    assert_same_truth(store_truth(store), truth, tol=1e-6)
    assert _tree(store) == {
        "shapes": (None, 0),
        "round": ("shapes", 1),
        "angular": ("shapes", 2),
        "circle": ("round", 3),
        "ellipse": ("round", 4),
        "square": ("angular", 5),
        "triangle": ("angular", 6),
        "star": ("angular", 7),
    }
    with store.session(readonly=True) as s:
        assert set(s.scalars(select(Image.status))) == {"labeled"}
        box = s.scalars(select(Annotation)).first()  # bulk-inserted rows read back through the ORM
        assert isinstance(box.created_at, datetime) and box.version == 1 and box.image.split in SPLITS
        rec = s.scalars(select(ImportRecord)).one()
        assert rec.format == "coco-roboflow" and rec.report["counts"]["images_imported"] == 11


def test_images_are_copied_into_the_project(store: ProjectStore, tmp_path: Path) -> None:
    coco_roboflow(tmp_path / "ds", {"train": 3})
    import_dataset(store, tmp_path / "ds")
    shutil.rmtree(tmp_path / "ds")
    with store.session(readonly=True) as s:
        for im in s.scalars(select(Image)):
            assert store.image_path(im).is_file() and store.image_path(im).is_relative_to(store.path)


@pytest.mark.parametrize(
    "id_map",
    [lambda i: i, lambda i: i + 1, lambda i: 3 + 7 * i],
    ids=["zero-based", "one-based", "sparse"],
)
def test_single_json_category_id_schemes(store: ProjectStore, tmp_path: Path, id_map) -> None:
    truth = coco_single(tmp_path / "ds", n=5, id_map=id_map)
    report = import_dataset(store, tmp_path / "ds")
    assert report.format == "coco" and report.problems == []
    assert_same_truth(store_truth(store), truth, ignore_split=True, tol=1e-6)
    assert _tree(store)["star"] == ("angular", id_map(7))


def test_single_json_with_images_next_to_it_and_direct_json_path(store: ProjectStore, tmp_path: Path) -> None:
    truth = coco_single(tmp_path / "ds", n=4, image_dir=".", json_name="instances_val.json")
    report = import_dataset(store, tmp_path / "ds" / "instances_val.json")
    assert report.counts["images_imported"] == 4
    assert_same_truth(store_truth(store), truth, ignore_split=True, tol=1e-6)
    with store.session(readonly=True) as s:
        assert set(s.scalars(select(Image.split))) == {"valid"}  # guessed from the file name


def test_supercategory_not_listed_becomes_parent_and_placeholders_do_not(
    store: ProjectStore, tmp_path: Path
) -> None:
    coco_single(tmp_path / "ds", n=3)
    doc = json.loads((tmp_path / "ds" / "annotations.json").read_text())
    doc["categories"] = [c for c in doc["categories"] if c["id"] >= 3]  # drop shapes/round/angular
    doc["categories"][0]["supercategory"] = "circle"  # a category that is its own supercategory
    doc["categories"][1]["supercategory"] = "none"
    (tmp_path / "ds" / "annotations.json").write_text(json.dumps(doc))
    import_dataset(store, tmp_path / "ds")
    tree = _tree(store)
    assert tree["circle"] == (None, 3) and tree["ellipse"] == (None, 4)
    assert tree["square"] == ("angular", 5) and tree["angular"] == (None, None)


def test_zip_upload_with_wrapping_folder(store: ProjectStore, tmp_path: Path) -> None:
    truth = coco_roboflow(tmp_path / "wrap" / "my-dataset", {"train": 3, "valid": 2})
    archive = shutil.make_archive(str(tmp_path / "upload"), "zip", root_dir=tmp_path / "wrap")
    report = import_dataset(store, Path(archive))
    assert report.format == "coco-roboflow"
    assert_same_truth(store_truth(store), truth, tol=1e-6)


def test_loose_images_are_unlabeled_and_other_files_reported(store: ProjectStore, tmp_path: Path) -> None:
    names = loose_images(tmp_path / "pics" / "val", n=3)
    (tmp_path / "pics" / "notes.docx").write_bytes(b"PK not an image")
    report = import_dataset(store, tmp_path / "pics")
    assert report.format == "images" and report.counts["images_imported"] == 3
    assert [(p.file, p.reason) for p in report.problems] == [("notes.docx", "not an image file; skipped")]
    with store.session(readonly=True) as s:
        rows = s.execute(select(Image.original_name, Image.status, Image.split)).all()
    assert sorted(rows) == sorted((f"val/{n}", "unlabeled", "valid") for n in names)


def test_progress_is_reported_up_to_done(store: ProjectStore, tmp_path: Path) -> None:
    coco_roboflow(tmp_path / "ds", {"train": 4})
    seen: list[tuple[float, str]] = []
    import_dataset(store, tmp_path / "ds", progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) >= 3


def test_second_import_appends_and_merges_classes_by_name(store: ProjectStore, tmp_path: Path) -> None:
    coco_roboflow(tmp_path / "a", {"train": 3}, seed=1)
    coco_roboflow(tmp_path / "b", {"train": 2}, seed=2)
    import_dataset(store, tmp_path / "a")
    report = import_dataset(store, tmp_path / "b")
    assert report.counts["categories_created"] == 0
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count(Image.id))) == 5
        assert s.scalar(select(func.count(Category.id))) == 8
        assert s.scalar(select(func.count(ImportRecord.id))) == 2


def test_reimport_of_the_same_dataset_is_not_an_abort_and_names_the_users_files(
    store: ProjectStore, tmp_path: Path
) -> None:
    coco_roboflow(tmp_path / "ds", {"train": 2, "valid": 1}, seed=4)
    import_dataset(store, tmp_path / "ds")
    with store.session(readonly=True) as s:
        hashed = set(s.scalars(select(Image.file_name)))
        records = s.scalar(select(func.count(ImportRecord.id)))

    report = import_dataset(store, tmp_path / "ds")  # returns: nothing went wrong
    assert (
        report.ok
        and report.note == "all 3 images are already in this project (same content); nothing was changed"
    )
    markdown = report.to_markdown()
    assert "Nothing new to import" in markdown and "aborted" not in markdown.lower()
    assert report.summary() == report.note
    files = [p.file for p in report.problems]
    assert len(files) == 3 and all(f.startswith(("train/", "valid/")) for f in files)
    assert not any(Path(h).stem in markdown for h in hashed)  # never the internal hash names
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count(ImportRecord.id))) == records  # no empty import recorded


def test_reimport_with_one_new_image_imports_it_and_lists_the_rest_as_present(
    store: ProjectStore, tmp_path: Path
) -> None:
    loose_images(tmp_path / "pics", n=2, seed=5)
    import_dataset(store, tmp_path / "pics")
    shutil.copyfile(tmp_path / "pics" / "loose_00000.jpg", tmp_path / "pics" / "renamed.jpg")
    loose_images(tmp_path / "more", n=3, seed=6)
    shutil.copyfile(tmp_path / "more" / "loose_00002.jpg", tmp_path / "pics" / "new.jpg")
    report = import_dataset(store, tmp_path / "pics")
    assert report.counts["images_imported"] == 1 and report.counts["images_already_in_project"] == 3
    renamed = next(p for p in report.problems if p.file == "renamed.jpg")
    assert renamed.reason == "already in this project (same content as 'loose_00000.jpg'); not imported again"


def test_skipped_coco_box_names_the_image_and_marks_it_as_having_problems(
    store: ProjectStore, tmp_path: Path
) -> None:
    """Issue 14 §6: the problem row leads with the user's image file, and the image gets an
    ``ImageProblem`` row so the gallery's "has problems" filter finds it."""
    from studio.store import ImageProblem

    coco_single(tmp_path / "ds", n=2)
    doc = json.loads((tmp_path / "ds" / "annotations.json").read_text())
    doc["annotations"][0]["category_id"] = 999
    doc["annotations"][1]["bbox"] = [5000, 5000, 10, 10]
    (tmp_path / "ds" / "annotations.json").write_text(json.dumps(doc))
    names = {im["id"]: im["file_name"] for im in doc["images"]}
    report = import_dataset(store, tmp_path / "ds")
    rows = {p.file: p.reason for p in report.problems}
    first = f"'{names[doc['annotations'][0]['image_id']]}' (annotations.json#annotation {doc['annotations'][0]['id']})"
    assert rows[first].startswith("unknown category id 999")
    with store.session(readonly=True) as s:
        flagged = list(s.execute(select(Image.original_name, ImageProblem.kind).join(Image)))
    assert (names[doc["annotations"][0]["image_id"]], "box_skipped") in flagged
    assert (names[doc["annotations"][1]["image_id"]], "box_skipped") in flagged
