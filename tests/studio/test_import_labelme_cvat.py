"""LabelMe JSON and CVAT for images 1.1 import, with their quirks, and a re-import through VOC export
(issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from studio.services.data.importing.importer import ImportAborted, import_dataset
from studio.services.data.voc_export import export_voc
from studio.store import Image, ImageProblem, ProjectStore
from tests.support.datagen import assert_same_truth, cvat, labelme, store_truth


@pytest.fixture()
def store(tmp_path: Path):
    st = ProjectStore.create(tmp_path / "proj", "P")
    yield st
    st.close()


def test_labelme_rectangles_in_any_corner_order(store: ProjectStore, tmp_path: Path) -> None:
    truth = labelme(tmp_path / "ds", n=4)
    report = import_dataset(store, tmp_path / "ds")
    assert report.format == "labelme" and report.problems == [], report.problems
    assert_same_truth(store_truth(store), truth, tol=1e-9)


def test_labelme_polygons_become_boxes_with_a_counted_warning(store: ProjectStore, tmp_path: Path) -> None:
    truth = labelme(tmp_path / "ds", n=3, polygons=True)
    report = import_dataset(store, tmp_path / "ds")
    n = sum(len(v) for v in truth.values())
    assert report.counts["polygons_as_boxes"] == n
    assert any(f"{n} polygons were imported as their bounding boxes" in p.reason for p in report.problems)
    assert_same_truth(store_truth(store), truth, tol=1e-9)


def test_labelme_quirks_other_shapes_missing_image_bad_json(store: ProjectStore, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    truth = labelme(ds, n=3)
    doc = json.loads((ds / "lm_00000.json").read_text())
    doc["shapes"] += [
        {"label": "circle", "points": [[5, 5], [9, 9]], "shape_type": "circle"},
        {"label": "", "points": [[1, 1], [9, 9]], "shape_type": "rectangle"},
        {"label": "circle", "points": [[1, "x"], [9, 9]], "shape_type": "rectangle"},
    ]
    doc["imagePath"] = "..\\lm_00000.jpg"  # a Windows path written by LabelMe on another machine
    (ds / "lm_00000.json").write_text(json.dumps(doc))
    (ds / "lm_00001.jpg").unlink()
    (ds / "broken.json").write_text('{"shapes": [')
    report = import_dataset(store, ds)
    reasons = [p.reason for p in report.problems]
    assert any("a 'circle' shape is not a box" in r for r in reasons)
    assert any("shape label is empty" in r for r in reasons)
    assert any("points must be [x, y] number pairs" in r for r in reasons)
    assert any("image file not found" in r for r in reasons)
    assert any("cannot read LabelMe file" in r for r in reasons)
    del truth[("all", "lm_00001.jpg")]
    assert_same_truth(store_truth(store), truth, tol=1e-9)
    with store.session(readonly=True) as s:
        kinds = list(s.execute(select(Image.original_name, ImageProblem.kind).join(Image)))
    assert sum(1 for n, k in kinds if n == "lm_00000.jpg" and k == "box_skipped") == 3


def test_labelme_json_without_images_says_so(store: ProjectStore, tmp_path: Path) -> None:
    labelme(tmp_path / "ds", n=2)
    for p in (tmp_path / "ds").glob("*.jpg"):
        p.unlink()
    with pytest.raises(ImportAborted, match="LabelMe annotations without images"):
        import_dataset(store, tmp_path / "ds")


def test_one_labelme_json(store: ProjectStore, tmp_path: Path) -> None:
    truth = labelme(tmp_path / "ds", n=3)
    report = import_dataset(store, tmp_path / "ds" / "lm_00002.json")
    assert report.format == "labelme" and report.counts["images_imported"] == 1
    assert_same_truth(
        store_truth(store), {k: v for k, v in truth.items() if k[1] == "lm_00002.jpg"}, tol=1e-9
    )


def test_cvat_boxes_splits_and_occluded(store: ProjectStore, tmp_path: Path) -> None:
    truth = cvat(tmp_path / "ds", {"train": 3, "valid": 2})
    report = import_dataset(store, tmp_path / "ds")
    assert report.format == "cvat" and report.problems == [], report.problems
    total = sum(len(v) for v in truth.values())
    assert report.counts["boxes_occluded"] == total // 3
    assert_same_truth(store_truth(store), truth, tol=0.006)  # the file has 2 decimals
    with store.session(readonly=True) as s:
        assert {sp for (sp,) in s.execute(select(Image.split))} == {"train", "valid"}


def test_cvat_quirks_polygon_points_track_missing_image_and_dtd(store: ProjectStore, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    cvat(ds, {"train": 2})
    text = (ds / "annotations.xml").read_text()
    first = text.index("</image>")
    text = (
        text[:first]
        + '<polygon label="circle" occluded="0" points="10,10;30,12;20,40"/>'
        + '<points label="circle" occluded="0" points="5,5"/>'
        + text[first:]
    )
    text = text.replace(
        "</annotations>",
        '<image id="99" name="missing.jpg" width="160" height="120"><box label="circle" xtl="1" ytl="1" '
        'xbr="9" ybr="9" occluded="0"/></image><track id="0" label="circle"/></annotations>',
    )
    (ds / "annotations.xml").write_text(text)
    report = import_dataset(store, ds)
    reasons = [p.reason for p in report.problems]
    assert report.counts["polygons_as_boxes"] == 1
    assert any("a <points> is not a box" in r for r in reasons)
    assert any("image file not found" in r for r in reasons)
    assert any("1 video tracks are not imported" in r for r in reasons)
    got = store_truth(store)
    assert ("circle", (10.0, 10.0, 20.0, 30.0)) in got[("train", "train_00000.jpg")]

    (ds / "annotations.xml").write_text(
        '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotations/>'
    )
    with pytest.raises(ImportAborted, match="declares a DTD or entities"):
        import_dataset(store, ds / "annotations.xml")


def test_labelme_and_cvat_round_trip_through_voc(tmp_path: Path) -> None:
    labelme(tmp_path / "lm", n=3)
    cvat(tmp_path / "cv", {"train": 2, "test": 1})
    with ProjectStore.create(tmp_path / "a", "a") as a, ProjectStore.create(tmp_path / "b", "b") as b:
        import_dataset(a, tmp_path / "lm")
        import_dataset(a, tmp_path / "cv")
        export_voc(a, tmp_path / "out")
        import_dataset(b, tmp_path / "out")
        want = {("train" if k[0] == "all" else k[0], k[1]): v for k, v in store_truth(a).items()}
        assert_same_truth(store_truth(b), want, tol=0.0005)  # VOC keeps 3 decimals
