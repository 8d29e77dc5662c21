"""YOLO import: both folder layouts, names as list or dict, yaml path or folder, zip, label statuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from studio.services.data.importing.importer import import_dataset
from studio.services.projects.synthetic import LEAF_CLASSES
from studio.store import Category, Image, ProjectStore
from tests.support.datagen import assert_same_truth, store_truth, yolo

# YOLO stores 6 decimals of a 160 px image: at most ~0.0001 px of rounding per coordinate.
TOL = 0.01


@pytest.fixture()
def store(tmp_path: Path):
    st = ProjectStore.create(tmp_path / "proj", "P")
    yield st
    st.close()


@pytest.mark.parametrize("layout", ["ultralytics", "roboflow"])
@pytest.mark.parametrize("names_as", ["list", "dict"])
def test_layouts_and_names(store: ProjectStore, tmp_path: Path, layout: str, names_as: str) -> None:
    truth = yolo(tmp_path / "ds", {"train": 4, "valid": 2, "test": 1}, layout=layout, names_as=names_as)
    report = import_dataset(store, tmp_path / "ds")
    assert report.format == "yolo" and report.problems == []
    assert_same_truth(store_truth(store), truth, tol=TOL)
    with store.session(readonly=True) as s:
        cats = {c.name: c.source_id for c in s.scalars(select(Category))}
    assert cats == {n: i for i, n in enumerate(LEAF_CLASSES)}


def test_yaml_path_given_directly_and_string_keys(store: ProjectStore, tmp_path: Path) -> None:
    truth = yolo(tmp_path / "ds", {"train": 3, "valid": 1})
    cfg = yaml.safe_load((tmp_path / "ds" / "data.yaml").read_text())
    cfg["names"] = {str(i): n for i, n in enumerate(LEAF_CLASSES)}
    (tmp_path / "ds" / "dataset.yml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "ds" / "data.yaml").unlink()
    report = import_dataset(store, tmp_path / "ds" / "dataset.yml")
    assert report.problems == []
    assert_same_truth(store_truth(store), truth, tol=TOL)


def test_split_folders_found_when_yaml_has_no_paths(store: ProjectStore, tmp_path: Path) -> None:
    truth = yolo(tmp_path / "ds", {"train": 2, "valid": 2}, layout="roboflow")
    (tmp_path / "ds" / "data.yaml").write_text(yaml.safe_dump({"names": list(LEAF_CLASSES)}))
    import_dataset(store, tmp_path / "ds")
    assert_same_truth(store_truth(store), truth, tol=TOL)


def test_zip_upload(store: ProjectStore, tmp_path: Path) -> None:
    truth = yolo(tmp_path / "ds", {"train": 3, "valid": 1})
    archive = shutil.make_archive(str(tmp_path / "upload"), "zip", root_dir=tmp_path / "ds")
    import_dataset(store, Path(archive))
    assert_same_truth(store_truth(store), truth, tol=TOL)


def test_missing_label_file_means_unlabeled_and_empty_file_means_no_objects(
    store: ProjectStore, tmp_path: Path
) -> None:
    yolo(tmp_path / "ds", {"train": 3})
    labels = sorted((tmp_path / "ds" / "labels" / "train").iterdir())
    labels[0].unlink()
    labels[1].write_text("")
    import_dataset(store, tmp_path / "ds")
    with store.session(readonly=True) as s:
        status = dict(s.execute(select(Image.original_name, Image.status)).all())
    assert status == {
        "train_00000.jpg": "unlabeled",
        "train_00001.jpg": "labeled",
        "train_00002.jpg": "labeled",
    }
    truth = store_truth(store)
    assert truth[("train", "train_00000.jpg")] == [] and truth[("train", "train_00001.jpg")] == []
    assert truth[("train", "train_00002.jpg")] != []
