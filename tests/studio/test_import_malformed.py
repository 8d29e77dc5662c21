"""A corpus of malformed inputs, one test each.

Fatal problems must raise ``ImportAborted`` with a clear message and leave the project byte-for-byte
as it was (same rows, same image files, no stray copies). Per-item problems must be skipped (or fixed)
and listed in the report with the file and the reason, while the rest of the dataset is imported.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from PIL import Image as PILImage

from studio.services.data.importing.importer import ImportAborted, import_dataset
from studio.services.data.importing.report import LIMITS_LINE, ImportReport
from studio.store import ProjectStore
from tests.support.datagen import coco_roboflow, coco_single, loose_images, yolo


@pytest.fixture()
def store(tmp_path: Path):
    """A project that already holds one import, so "unchanged" is a real check."""
    st = ProjectStore.create(tmp_path / "proj", "P", busy_timeout_ms=300)
    coco_roboflow(tmp_path / "base", {"train": 2}, seed=9)
    import_dataset(st, tmp_path / "base")
    yield st
    st.close()


def _snapshot(store: ProjectStore) -> tuple[list[str], list[str]]:
    with sqlite3.connect(store.db_path) as conn:
        rows = list(conn.iterdump())
    files = sorted(
        str(p.relative_to(store.path)) for p in store.path.rglob("*") if "project.db" not in p.name
    )
    return rows, files


def _fatal(store: ProjectStore, source: Path, match: str) -> ImportAborted:
    before = _snapshot(store)
    with pytest.raises(ImportAborted, match=match) as info:
        import_dataset(store, source)
    assert _snapshot(store) == before
    assert info.value.report is not None and info.value.report.fatal
    assert "Import aborted" in info.value.report.to_markdown()
    return info.value


def _ok(store: ProjectStore, source: Path, reason: str, severity: str = "error") -> ImportReport:
    report = import_dataset(store, source)
    hits = [p for p in report.problems if reason in p.reason and p.severity == severity]
    assert hits, [(p.file, p.reason, p.severity) for p in report.problems]
    assert report.counts["images_imported"] >= 1
    return report


def _coco(tmp: Path, mutate: Callable[[dict], None], n: int = 3) -> Path:
    coco_single(tmp / "ds", n=n)
    path = tmp / "ds" / "annotations.json"
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    return tmp / "ds"


def _yolo_label(tmp: Path, text: str) -> Path:
    yolo(tmp / "ds", {"train": 2})
    (tmp / "ds" / "labels" / "train" / "train_00000.txt").write_text(text)
    return tmp / "ds"


def _zip(tmp: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    path = tmp / "upload.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


# -- fatal: the whole import is refused ---------------------------------------------------------------


def test_bad_json(store, tmp_path):
    ds = _coco(tmp_path, lambda d: None)
    (ds / "annotations.json").write_text('{"images": [')
    e = _fatal(store, ds, "bad JSON in annotations.json")
    assert "line 1" in str(e)


def test_json_that_is_not_coco(store, tmp_path):
    ds = _coco(tmp_path, lambda d: None)
    (ds / "annotations.json").write_text("[1, 2, 3]")
    _fatal(store, ds, "not a COCO file")


def test_json_not_utf8(store, tmp_path):
    ds = _coco(tmp_path, lambda d: None)
    (ds / "annotations.json").write_bytes(b'{"images": ["\xff\xfe"]}')
    _fatal(store, ds, "annotations.json")


def test_duplicate_image_ids(store, tmp_path):
    _fatal(
        store,
        _coco(tmp_path, lambda d: d["images"][1].update(id=d["images"][0]["id"])),
        "duplicate image id 1",
    )


def test_duplicate_category_ids(store, tmp_path):
    _fatal(store, _coco(tmp_path, lambda d: d["categories"][4].update(id=3)), "duplicate category id 3")


def test_category_without_name(store, tmp_path):
    _fatal(
        store, _coco(tmp_path, lambda d: d["categories"][2].pop("name")), "category #2 needs an integer 'id'"
    )


def test_annotations_without_categories(store, tmp_path):
    _fatal(store, _coco(tmp_path, lambda d: d.pop("categories")), "no 'categories' list")


def test_yolo_missing_names(store, tmp_path):
    yolo(tmp_path / "ds", {"train": 2})
    (tmp_path / "ds" / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "nc": 5}))
    _fatal(store, tmp_path / "ds", "has no 'names'")


def test_yolo_bad_yaml(store, tmp_path):
    yolo(tmp_path / "ds", {"train": 2})
    (tmp_path / "ds" / "data.yaml").write_text("names: [a, b\ntrain: : :")
    _fatal(store, tmp_path / "ds", "bad YAML in data.yaml")


def test_yolo_names_wrong_type(store, tmp_path):
    yolo(tmp_path / "ds", {"train": 2})
    (tmp_path / "ds" / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "names": "circle"}))
    _fatal(store, tmp_path / "ds", "'names' must be a list or a mapping")


def test_yolo_duplicate_class_names(store, tmp_path):
    yolo(tmp_path / "ds", {"train": 2})
    (tmp_path / "ds" / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train", "names": ["a", "b", "a"]})
    )
    _fatal(store, tmp_path / "ds", "class name 'a' appears twice")


def test_yolo_labels_without_yaml(store, tmp_path):
    yolo(tmp_path / "ds", {"train": 2})
    (tmp_path / "ds" / "data.yaml").unlink()
    _fatal(store, tmp_path / "ds", "no data.yaml")


def test_zip_entry_escaping_target(store, tmp_path):
    _fatal(
        store,
        _zip(tmp_path, [("ok/a.txt", b"x"), ("../../evil.jpg", b"x")]),
        "points outside the target folder",
    )
    assert not (tmp_path / "evil.jpg").exists()


def test_zip_entry_with_absolute_path(store, tmp_path):
    _fatal(store, _zip(tmp_path, [("/tmp/evil.jpg", b"x")]), "points outside the target folder")


def test_zip_with_symlink(store, tmp_path):
    link = zipfile.ZipInfo("data/link.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    _fatal(store, _zip(tmp_path, [(link, b"/etc/passwd")]), "symbolic link")


def test_zip_bomb(store, tmp_path):
    _fatal(store, _zip(tmp_path, [("data/zeros.jpg", bytes(40 * 1024**2))]), "decompression bomb")


def test_zip_lying_about_its_size(store, tmp_path):
    path = _zip(tmp_path, [("data/a.jpg", bytes(8 * 1024**2))])
    data = bytearray(path.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local and central headers
        at = data.index(sig) + offset
        data[at : at + 4] = struct.pack("<I", 1000)  # claims 1000 bytes, holds 8 MiB
    path.write_bytes(bytes(data))
    _fatal(store, path, "zip is corrupt")


def test_not_a_zip(store, tmp_path):
    (tmp_path / "upload.zip").write_bytes(b"this is not a zip archive")
    _fatal(store, tmp_path / "upload.zip", "not a valid zip file")


def test_source_does_not_exist(store, tmp_path):
    _fatal(store, tmp_path / "nowhere", "does not exist")


def test_empty_folder(store, tmp_path):
    (tmp_path / "empty").mkdir()
    _fatal(store, tmp_path / "empty", "no images or annotations found")


def test_unsupported_file_type(store, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _fatal(store, tmp_path / "notes.txt", "is not a folder, .zip")


def test_every_image_unusable(store, tmp_path):
    ds = _coco(tmp_path, lambda d: None)
    for p in (ds / "images").iterdir():
        p.write_bytes(b"")
    _fatal(store, ds, "none of the 3 images could be imported")


def test_project_busy_aborts_after_copying_and_leaves_no_files(store, tmp_path):
    coco_roboflow(tmp_path / "ds", {"train": 3}, seed=5)
    blocker = sqlite3.connect(store.db_path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # e.g. another process holding the write lock
    try:
        _fatal(store, tmp_path / "ds", "the project is busy")
    finally:
        blocker.rollback()
        blocker.close()


# -- per item: skipped or fixed, listed in the report -------------------------------------------------


def test_missing_image_file(store, tmp_path):
    ds = _coco(tmp_path, lambda d: None)
    (ds / "images" / "all_00001.jpg").unlink()
    r = _ok(store, ds, "image file not found; image skipped")
    assert r.counts["images_imported"] == 2


def test_corrupt_image(store, tmp_path):
    ds = _coco(tmp_path, lambda d: None)
    (ds / "images" / "all_00001.jpg").write_bytes(b"\x00garbage" * 100)
    _ok(store, ds, "not an image or corrupt image")


def test_zero_byte_image(store, tmp_path):
    ds = _coco(tmp_path, lambda d: None)
    (ds / "images" / "all_00001.jpg").write_bytes(b"")
    _ok(store, ds, "empty file (0 bytes)")


def test_truncated_jpeg(store, tmp_path):
    ds = _coco(tmp_path, lambda d: None)
    p = ds / "images" / "all_00001.jpg"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    _ok(store, ds, "truncated JPEG")


def test_corrupt_png_crc(store, tmp_path):
    loose_images(tmp_path / "pics", n=1)
    png = tmp_path / "pics" / "bad.png"
    PILImage.effect_noise((32, 32), 40).save(png)
    data = bytearray(png.read_bytes())
    data[60] ^= 0xFF  # flip a byte inside the IDAT data: the chunk CRC no longer matches
    png.write_bytes(bytes(data))
    r = _ok(store, tmp_path / "pics", "corrupt image (broken PNG file")
    assert r.problems[0].file == "bad.png"


def _huge_png(path: Path, width: int, height: int) -> None:
    """A tiny file whose header claims a huge image (what a decompression bomb looks like)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_image_decompression_bomb(store, tmp_path):
    loose_images(tmp_path / "pics", n=1)
    _huge_png(tmp_path / "pics" / "bomb.png", 50_000, 50_000)
    r = _ok(store, tmp_path / "pics", "image too large")
    assert r.problems[0].file == "bomb.png"


def test_non_image_file_in_yolo_images(store, tmp_path):
    yolo(tmp_path / "ds", {"train": 2})
    (tmp_path / "ds" / "images" / "train" / "readme.pdf").write_bytes(b"%PDF-1.4")
    _ok(store, tmp_path / "ds", "not an image file; skipped")


def test_box_slightly_outside_is_clipped(store, tmp_path):
    def mutate(d):
        a = d["annotations"][0]
        im = next(i for i in d["images"] if i["id"] == a["image_id"])
        a["bbox"] = [im["width"] - 20, 10, 23, 10]  # 3 px past the right edge

    r = _ok(store, _coco(tmp_path, mutate), "box clipped to the image by 3.0 px", "warning")
    assert r.counts["boxes_clipped"] == 1 and r.counts["boxes_skipped"] == 0


def test_box_mostly_outside_is_skipped(store, tmp_path):
    _ok(
        store,
        _coco(tmp_path, lambda d: d["annotations"][0].update(bbox=[150, 10, 40, 10])),
        "lies mostly outside",
    )


def test_box_completely_outside_is_skipped(store, tmp_path):
    _ok(
        store,
        _coco(tmp_path, lambda d: d["annotations"][0].update(bbox=[500, 500, 10, 10])),
        "outside the image or degenerate",
    )


def test_box_with_nan(store, tmp_path):
    ds = _coco(tmp_path, lambda d: d["annotations"][0].update(bbox=[1, 2, 3, 4]))
    text = (ds / "annotations.json").read_text().replace("[1, 2, 3, 4]", "[NaN, 2, 3, 4]", 1)
    (ds / "annotations.json").write_text(text)
    _ok(store, ds, "NaN or infinite")


def test_box_with_negative_size(store, tmp_path):
    _ok(
        store,
        _coco(tmp_path, lambda d: d["annotations"][0].update(bbox=[10, 10, -5, 8])),
        "non-positive size",
    )


def test_unknown_category_id(store, tmp_path):
    r = _ok(
        store, _coco(tmp_path, lambda d: d["annotations"][0].update(category_id=42)), "unknown category id 42"
    )
    assert r.counts["boxes_skipped"] == 1


def test_annotation_for_unknown_image(store, tmp_path):
    _ok(
        store,
        _coco(tmp_path, lambda d: d["annotations"][0].update(image_id=999)),
        "refers to unknown image id 999",
    )


def test_bbox_wrong_length(store, tmp_path):
    _ok(
        store,
        _coco(tmp_path, lambda d: d["annotations"][0].update(bbox=[1, 2, 3])),
        "'bbox' must be a list of 4",
    )


def test_bbox_not_numbers(store, tmp_path):
    _ok(
        store,
        _coco(tmp_path, lambda d: d["annotations"][0].update(bbox=[1, "a", 3, 4])),
        "'bbox' has non-numbers",
    )


def test_declared_size_mismatch(store, tmp_path):
    _ok(
        store, _coco(tmp_path, lambda d: d["images"][0].update(width=999)), "the real size is used", "warning"
    )


def test_negative_declared_size(store, tmp_path):
    _ok(store, _coco(tmp_path, lambda d: d["images"][0].update(height=-5)), "invalid width/height", "warning")


def test_duplicate_annotation_ids(store, tmp_path):
    _ok(
        store,
        _coco(tmp_path, lambda d: d["annotations"][1].update(id=d["annotations"][0]["id"])),
        "duplicate annotation id",
        "warning",
    )


def test_image_path_escaping_dataset(store, tmp_path):
    (tmp_path / "secret.jpg").write_bytes(b"not for import")
    r = _ok(
        store,
        _coco(tmp_path, lambda d: d["images"][0].update(file_name="../../secret.jpg")),
        "image file not found",
    )
    assert r.counts["images_imported"] == 2


def test_duplicate_image_content(store, tmp_path):
    ds = _coco(tmp_path, lambda d: None)
    shutil.copyfile(ds / "images" / "all_00000.jpg", ds / "images" / "all_00001.jpg")
    _ok(store, ds, "duplicate of")


def test_yolo_wrong_column_count(store, tmp_path):
    _ok(
        store,
        _yolo_label(tmp_path, "0 0.5 0.5 0.2\n1 0.5 0.5 0.2 0.2\n"),
        "expected 5 columns (class cx cy w h), got 4",
    )


def test_yolo_not_a_number(store, tmp_path):
    _ok(store, _yolo_label(tmp_path, "0 0.5 abc 0.2 0.2\n"), "not a number")


def test_yolo_unknown_class_id(store, tmp_path):
    _ok(store, _yolo_label(tmp_path, "7 0.5 0.5 0.2 0.2\n"), "unknown class id 7 (names has 5 classes)")


def test_yolo_fractional_class_id(store, tmp_path):
    _ok(store, _yolo_label(tmp_path, "1.5 0.5 0.5 0.2 0.2\n"), "is not an integer")


def test_yolo_nc_mismatch(store, tmp_path):
    yolo(tmp_path / "ds", {"train": 2})
    cfg = yaml.safe_load((tmp_path / "ds" / "data.yaml").read_text())
    cfg["nc"] = 9
    (tmp_path / "ds" / "data.yaml").write_text(yaml.safe_dump(cfg))
    _ok(store, tmp_path / "ds", "'nc' is 9 but 'names' lists 5 classes", "warning")


def test_yolo_label_without_image(store, tmp_path):
    ds = _yolo_label(tmp_path, "0 0.5 0.5 0.2 0.2\n")
    (ds / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    _ok(store, ds, "label file has no matching image", "warning")


# -- limits on untrusted sizes (issue 13) -------------------------------------------------------------


def test_stored_report_keeps_the_first_problems_counts_the_rest_and_names_the_limits(store, tmp_path):
    from sqlalchemy import select

    from studio.services.data.importing import limits
    from studio.store import ImportRecord

    def mutate(d):
        a = d["annotations"][0]
        d["annotations"] += [dict(a, id=10_000 + k, image_id=999) for k in range(3000)]

    r = _ok(store, _coco(tmp_path, mutate), "refers to unknown image id 999")
    assert len(r.problems) == limits.MAX_PROBLEMS_KEPT and r.problems_total == 3000
    assert "3000 problems" in r.summary()
    assert f"Only the first {limits.MAX_PROBLEMS_KEPT:,} problems are kept" in r.to_markdown()
    assert LIMITS_LINE in r.to_markdown() and "10,000 boxes per image" in LIMITS_LINE
    with store.session(readonly=True) as s:
        stored = s.scalars(select(ImportRecord.report).order_by(ImportRecord.id.desc())).first()
    assert stored["problems_total"] == 3000 and stored["problems_not_kept"] == {"error": 2000}
    assert stored["limits"]["problems_kept"] == limits.MAX_PROBLEMS_KEPT
    assert stored["limits"]["boxes_per_image"] == limits.MAX_BOXES_PER_IMAGE
    assert len(json.dumps(stored)) < 400_000


def test_yaml_alias_bomb_is_never_expanded(store, tmp_path):
    yolo(tmp_path / "ds", {"train": 2})
    bomb = "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
        for p, k in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
    )
    cfg = yaml.safe_load((tmp_path / "ds" / "data.yaml").read_text())
    body = yaml.safe_dump({k: v for k, v in cfg.items() if k != "nc"})
    (tmp_path / "ds" / "data.yaml").write_text(bomb + body + "nc: *i\n")  # 9**9 'lol's if expanded
    before = store.db_path.stat().st_size
    r = _ok(store, tmp_path / "ds", "'nc' is a list of 9 item(s) but 'names' lists 5 classes", "warning")
    assert max(len(p.reason) for p in r.problems) < 200
    assert store.db_path.stat().st_size - before < 1_000_000
    (tmp_path / "ds" / "data.yaml").write_text(bomb + "train: images/train\nnames: [*i]\n")
    e = _fatal(store, tmp_path / "ds", "class 0 has no valid name")
    assert len(str(e)) < 300
