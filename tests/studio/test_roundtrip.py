"""import -> export -> import gives the same images, boxes (within 0.5 px), classes and tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from studio.errors import StudioError
from studio.services.data.dataset_export import export_coco, export_yolo, export_zip
from studio.services.data.importing.importer import import_dataset
from studio.store import Category, Image, ProjectStore
from tests.support.datagen import assert_same_truth, coco_roboflow, store_truth, yolo


def _tree(store: ProjectStore) -> dict[str, str | None]:
    with store.session(readonly=True) as s:
        cats = list(s.scalars(select(Category)))
        names = {c.id: c.name for c in cats}
        return {c.name: names.get(c.parent_id) for c in cats}


def _hashes(store: ProjectStore) -> dict[str, tuple[str | None, str]]:
    with store.session(readonly=True) as s:
        return {h: (sp, st) for h, sp, st in s.execute(select(Image.content_hash, Image.split, Image.status))}


def _project(tmp_path: Path, name: str) -> ProjectStore:
    return ProjectStore.create(tmp_path / name, name)


@pytest.mark.parametrize("fmt", ["coco", "yolo", "yolo-roboflow-layout"])
def test_coco_dataset_round_trip(tmp_path: Path, fmt: str) -> None:
    coco_roboflow(tmp_path / "src", {"train": 4, "valid": 2, "test": 2})
    with _project(tmp_path, "a") as a, _project(tmp_path, "b") as b:
        import_dataset(a, tmp_path / "src")
        if fmt == "coco":
            export_coco(a, tmp_path / "out")
        else:
            export_yolo(a, tmp_path / "out", layout="roboflow" if "roboflow" in fmt else "ultralytics")
        import_dataset(b, tmp_path / "out")
        assert_same_truth(store_truth(b), store_truth(a), tol=0.5)
        assert _hashes(b) == _hashes(a)  # same image bytes, same splits and statuses
        assert _tree(b) == _tree(a)


def test_coco_export_keeps_original_category_ids(tmp_path: Path) -> None:
    coco_roboflow(tmp_path / "src", {"train": 3})
    with _project(tmp_path, "a") as a:
        import_dataset(a, tmp_path / "src")
        export_coco(a, tmp_path / "out")
    src = json.loads((tmp_path / "src" / "train" / "_annotations.coco.json").read_text())
    out = json.loads((tmp_path / "out" / "train" / "_annotations.coco.json").read_text())
    assert sorted(map(json.dumps, out["categories"])) == sorted(map(json.dumps, src["categories"]))
    assert sorted(a["category_id"] for a in out["annotations"]) == sorted(
        a["category_id"] for a in src["annotations"]
    )


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_yolo_dataset_round_trip_with_unlabeled_image(tmp_path: Path, fmt: str) -> None:
    yolo(tmp_path / "src", {"train": 4, "valid": 2})
    sorted((tmp_path / "src" / "labels" / "train").iterdir())[0].unlink()  # one unlabeled image
    with _project(tmp_path, "a") as a, _project(tmp_path, "b") as b:
        import_dataset(a, tmp_path / "src")
        (export_coco if fmt == "coco" else export_yolo)(a, tmp_path / "out")
        import_dataset(b, tmp_path / "out")
        assert_same_truth(store_truth(b), store_truth(a), tol=0.5)
        if fmt == "yolo":  # COCO has no notion of "not labeled yet"
            assert _hashes(b) == _hashes(a)


def test_zip_export_round_trip(tmp_path: Path) -> None:
    coco_roboflow(tmp_path / "src", {"train": 3, "valid": 1})
    with _project(tmp_path, "a") as a, _project(tmp_path, "b") as b:
        import_dataset(a, tmp_path / "src")
        archive = export_zip(a, "yolo", tmp_path / "exports" / "data.zip")
        assert archive.name == "data.zip" and archive.is_file()
        import_dataset(b, archive)
        assert_same_truth(store_truth(b), store_truth(a), tol=0.5)


def test_export_refuses_empty_project_and_unknown_format(tmp_path: Path) -> None:
    with _project(tmp_path, "a") as a:
        with pytest.raises(StudioError, match="no images"):
            export_coco(a, tmp_path / "out")
        with pytest.raises(StudioError, match="Unknown export format"):
            export_zip(a, "voc", tmp_path / "x.zip")
