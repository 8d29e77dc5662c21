"""Pascal VOC import (devkit layout, flat LabelImg folder, zip, one .xml), its quirks, hostile XML,
and the VOC export round trip (issue 14)."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from studio.services.data.importing.importer import ImportAborted, import_dataset
from studio.services.data.voc_export import export_voc, export_voc_zip
from studio.store import Image, ImageProblem, ProjectStore
from tests.support.datagen import assert_same_truth, coco_single, store_truth, voc, voc_xml


@pytest.fixture()
def store(tmp_path: Path):
    st = ProjectStore.create(tmp_path / "proj", "P")
    yield st
    st.close()


def _problems(store: ProjectStore) -> list[tuple[str, str, str]]:
    with store.session(readonly=True) as s:
        rows = s.execute(select(Image.original_name, ImageProblem.kind, ImageProblem.message).join(Image))
        return [tuple(r) for r in rows]


def test_devkit_layout_imports_boxes_and_splits(store: ProjectStore, tmp_path: Path) -> None:
    truth = voc(tmp_path / "ds", {"train": 4, "valid": 2, "test": 2})
    report = import_dataset(store, tmp_path / "ds")
    assert report.format == "voc" and report.problems == [], report.problems
    assert report.counts["images_imported"] == 8
    assert_same_truth(store_truth(store), truth, tol=1e-9)  # splits from ImageSets/Main, val -> valid


def test_flat_labelimg_folder_with_unicode_names(store: ProjectStore, tmp_path: Path) -> None:
    truth = voc(tmp_path / "ds", {"train": 3}, layout="flat", prefix="Ünïcødé 画像 ")
    report = import_dataset(store, tmp_path / "ds")
    assert report.format == "voc" and report.problems == [], report.problems
    assert_same_truth(store_truth(store), truth, tol=1e-9)
    assert "not an image file" not in report.to_markdown()


@pytest.mark.parametrize("wrap", ["", "VOCdevkit/VOC2012/"])
def test_zip_of_voc(store: ProjectStore, tmp_path: Path, wrap: str) -> None:
    truth = voc(tmp_path / "ds", {"train": 2, "valid": 1, "test": 1})
    with zipfile.ZipFile(tmp_path / "voc.zip", "w") as zf:
        for p in sorted((tmp_path / "ds").rglob("*")):
            if p.is_file():
                zf.write(p, wrap + p.relative_to(tmp_path / "ds").as_posix())
    report = import_dataset(store, tmp_path / "voc.zip")
    assert report.format == "voc" and report.counts["images_imported"] == 4
    assert_same_truth(store_truth(store), truth, tol=1e-9)


def test_trainval_only_ids_are_train_and_images_without_xml_are_unlabeled(
    store: ProjectStore, tmp_path: Path
) -> None:
    ds = tmp_path / "ds"
    voc(ds, {"train": 3})
    sets = ds / "ImageSets" / "Main"
    (sets / "trainval.txt").write_text((sets / "train.txt").read_text())
    (sets / "train.txt").unlink()
    (ds / "Annotations" / "train_00002.xml").unlink()
    report = import_dataset(store, ds)
    assert report.counts["images_without_annotation_file"] == 1
    with store.session(readonly=True) as s:
        got = {n: (sp, st) for n, sp, st in s.execute(select(Image.original_name, Image.split, Image.status))}
    assert got["train_00002.jpg"] == ("train", "unlabeled")
    assert got["train_00000.jpg"] == ("train", "labeled")


def test_quirks_difficult_missing_image_size_stale_filename_polygon(
    store: ProjectStore, tmp_path: Path
) -> None:
    ds = tmp_path / "ds"
    truth = voc(ds, {"train": 4})
    ann = ds / "Annotations"
    names = sorted(p.name for p in (ds / "JPEGImages").iterdir())
    # difficult / truncated flags on the first image's first box
    doc = ET.parse(ann / "train_00000.xml")
    obj = doc.getroot().find("object")
    ET.SubElement(obj, "difficult").text = "1"
    ET.SubElement(obj, "truncated").text = "1"
    doc.write(ann / "train_00000.xml")
    # a stale <filename> (.png for a .jpg): found by the xml's own stem
    (ann / "train_00001.xml").write_text(
        (ann / "train_00001.xml").read_text().replace(names[1], "renamed.png"), encoding="utf-8"
    )
    # <size> that does not match the image; a polygon object; a box far outside
    text = (ann / "train_00002.xml").read_text().replace("<width>160</width>", "<width>640</width>")
    text = text.replace(
        "</annotation>",
        "<object><name>circle</name><polygon><x1>1</x1><y1>1</y1></polygon></object>"
        "<object><name>circle</name><bndbox><xmin>500</xmin><ymin>500</ymin><xmax>600</xmax>"
        "<ymax>600</ymax></bndbox></object></annotation>",
    )
    (ann / "train_00002.xml").write_text(text, encoding="utf-8")
    # an annotation whose image is missing
    (ann / "ghost.xml").write_text(
        voc_xml("ghost.jpg", (160, 120), [("circle", (1, 1, 20, 20))]), encoding="utf-8"
    )

    report = import_dataset(store, ds)
    reasons = [(p.file, p.reason) for p in report.problems]
    assert report.counts["boxes_difficult"] == 1 and report.counts["boxes_truncated"] == 1
    assert any("difficult (1)" in r for _, r in reasons)
    assert any(f.startswith("Annotations/ghost.xml") and "image file not found" in r for f, r in reasons)
    assert any("says 640x120 but the image is 160x120" in r for _, r in reasons)
    assert any("has a <polygon>, not a <bndbox>" in r for _, r in reasons)
    assert any("outside the image" in r for _, r in reasons)
    assert_same_truth(store_truth(store), truth, tol=1e-9)  # every real box still in place
    kinds = {(n, k) for n, k, _ in _problems(store)}
    assert ("train_00002.jpg", "box_skipped") in kinds  # "has problems" finds the image
    assert ("train_00002.jpg", "size_mismatch") in kinds
    assert sum(k == "box_skipped" for n, k in kinds if n == "train_00002.jpg") == 1
    assert len([1 for n, k, _ in _problems(store) if k == "box_skipped"]) == 2  # polygon + outside


def test_annotations_folder_alone_names_what_is_missing(store: ProjectStore, tmp_path: Path) -> None:
    voc(tmp_path / "ds", {"train": 2})
    with pytest.raises(ImportAborted, match=r"Pascal VOC annotations without images: point at the folder"):
        import_dataset(store, tmp_path / "ds" / "Annotations")


def test_one_xml_file_imports_its_image(store: ProjectStore, tmp_path: Path) -> None:
    truth = voc(tmp_path / "ds", {"train": 3})
    report = import_dataset(store, tmp_path / "ds" / "Annotations" / "train_00001.xml")
    assert report.format == "voc" and report.counts["images_imported"] == 1
    want = {k: v for k, v in truth.items() if k[1] == "train_00001.jpg"}
    assert_same_truth(store_truth(store), want, tol=1e-9)


def test_folder_with_two_formats_says_which_it_ignored(store: ProjectStore, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    truth = voc(ds, {"train": 2})
    coco_single(ds, n=2, json_name="instances.json")
    report = import_dataset(store, ds)
    assert report.format == "voc"
    ignored = [p.reason for p in report.problems if p.severity == "warning"]
    assert any("also holds COCO (instances.json); ignored: Pascal VOC comes first" in r for r in ignored), (
        ignored
    )
    assert_same_truth(store_truth(store), truth, tol=1e-9)


BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<annotation><filename>{f}</filename><object><name>&lol3;</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
    "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
)
EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
    "<annotation><filename>{f}</filename><object><name>&xxe;</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
    "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
)


@pytest.mark.parametrize("payload", [BOMB, EXTERNAL], ids=["entity-bomb", "external-entity"])
def test_hostile_xml_is_refused_per_file(store: ProjectStore, tmp_path: Path, payload: str) -> None:
    ds = tmp_path / "ds"
    voc(ds, {"train": 2})
    (ds / "Annotations" / "train_00000.xml").write_text(payload.format(f="train_00000.jpg"))
    report = import_dataset(store, ds)
    bad = [p for p in report.problems if p.file == "Annotations/train_00000.xml"]
    assert bad and "declares a DTD or entities" in bad[0].reason
    assert report.counts["annotation_files_skipped"] == 1
    with store.session(readonly=True) as s:
        statuses = dict(s.execute(select(Image.original_name, Image.status)).all())
    assert statuses["train_00000.jpg"] == "unlabeled"  # its image still comes in, to be labeled
    assert "lol" not in repr(store_truth(store)) and len(store_truth(store)) == 2


def test_voc_round_trip_is_lossless(tmp_path: Path) -> None:
    src = tmp_path / "src"
    voc(src, {"train": 3, "valid": 2, "test": 1})
    with ProjectStore.create(tmp_path / "a", "a") as a, ProjectStore.create(tmp_path / "b", "b") as b:
        import_dataset(a, src)
        export_voc(a, tmp_path / "out")
        import_dataset(b, tmp_path / "out")
        assert_same_truth(store_truth(b), store_truth(a), tol=0)
        with a.session(readonly=True) as s1, b.session(readonly=True) as s2:
            q = select(Image.content_hash, Image.split, Image.status)
            assert set(s1.execute(q)) == set(s2.execute(q))
    for xml in sorted((src / "Annotations").glob("*.xml")):  # the very same numbers come back out
        assert _objects(tmp_path / "out" / "Annotations" / xml.name) == _objects(xml)
    for name in ("train", "val", "test"):
        sets = "ImageSets/Main/" + name + ".txt"
        assert sorted((tmp_path / "out" / sets).read_text().split()) == sorted(
            (src / sets).read_text().split()
        )


def test_voc_export_zip_and_unlabeled_images_stay_unlabeled(store: ProjectStore, tmp_path: Path) -> None:
    voc(tmp_path / "ds", {"train": 2})
    (tmp_path / "ds" / "Annotations" / "train_00001.xml").unlink()
    import_dataset(store, tmp_path / "ds")
    out = export_voc_zip(store, tmp_path / "exp" / "p-voc.zip")
    names = set(zipfile.ZipFile(out).namelist())
    assert {
        "Annotations/train_00000.xml",
        "JPEGImages/train_00000.jpg",
        "JPEGImages/train_00001.jpg",
    } <= names
    assert "Annotations/train_00001.xml" not in names
    shutil.unpack_archive(out, tmp_path / "unz")
    with ProjectStore.create(tmp_path / "b", "b") as b:
        import_dataset(b, tmp_path / "unz")
        with b.session(readonly=True) as s:
            assert dict(s.execute(select(Image.original_name, Image.status)).all()) == {
                "train_00000.jpg": "labeled",
                "train_00001.jpg": "unlabeled",
            }


def _objects(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    root = ET.parse(path).getroot()
    return sorted(
        (o.findtext("name"), tuple(o.find("bndbox").findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")))
        for o in root.iter("object")
    )


def test_unknown_xml_gets_a_message_that_names_it(store: ProjectStore, tmp_path: Path) -> None:
    d = tmp_path / "odd"
    d.mkdir()
    (d / "settings.xml").write_text("<settings><a/></settings>")
    with pytest.raises(ImportAborted, match=r"found 1 .xml files that are neither Pascal VOC nor CVAT"):
        import_dataset(store, d)
    with pytest.raises(ImportAborted, match=r"neither a Pascal VOC nor a CVAT annotation file"):
        import_dataset(store, d / "settings.xml")
