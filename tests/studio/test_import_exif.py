"""Phone photos with an EXIF orientation: stored upright once at import, boxes read in the displayed
frame for COCO, YOLO and VOC, and a box that only fits the unrotated pixels reported as such (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image as PILImage
from sqlalchemy import select

from studio.services.data.importing.importer import import_dataset
from studio.services.projects.synthetic import LEAF_CLASSES, generate_scenes
from studio.store import Image, ImageProblem, ProjectStore
from tests.support.datagen import assert_same_truth, exif_jpeg, store_truth, voc_xml

SAME_SIZE = (
    PILImage.Transpose.FLIP_LEFT_RIGHT,
    PILImage.Transpose.FLIP_TOP_BOTTOM,
    PILImage.Transpose.ROTATE_180,
)
SIZE = (160, 120)  # displayed frame: landscape, so a 90-degree orientation swaps the sides


def _write(out: Path, fmt: str, orientation: int) -> tuple[PILImage.Image, list]:
    """One image shown as ``scene.image`` with the scene's boxes, in ``fmt``; boxes integer-cornered so
    the three formats carry the very same numbers."""
    scene = next(iter(generate_scenes(1, seed=40 + orientation, size=SIZE)))
    boxes = [
        (c, (round(x), round(y), round(x + w) - round(x), round(y + h) - round(y)))
        for c, (x, y, w, h) in scene.boxes
    ]
    img_dir = {"coco": out / "images", "yolo": out / "images" / "train", "voc": out / "JPEGImages"}[fmt]
    img_dir.mkdir(parents=True)
    scene.image.paste((255, 0, 255), (0, 0, 16, 16))  # a magenta marker in the displayed top-left corner
    exif_jpeg(img_dir / "phone.jpg", scene.image, orientation)
    if fmt == "coco":
        _coco(out, boxes, SIZE)
    elif fmt == "yolo":
        (out / "labels" / "train").mkdir(parents=True)
        W, H = SIZE
        lines = [
            f"{LEAF_CLASSES.index(c)} {(x + w / 2) / W:.8f} {(y + h / 2) / H:.8f} {w / W:.8f} {h / H:.8f}\n"
            for c, (x, y, w, h) in boxes
        ]
        (out / "labels" / "train" / "phone.txt").write_text("".join(lines))
        (out / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "names": list(LEAF_CLASSES)}))
    else:
        (out / "Annotations").mkdir()
        objs = [(c, (x, y, x + w, y + h)) for c, (x, y, w, h) in boxes]
        (out / "Annotations" / "phone.xml").write_text(voc_xml("phone.jpg", SIZE, objs))
    return scene.image, boxes


def _is_marker(patch: np.ndarray) -> bool:
    r, g, b = patch.reshape(-1, 3).mean(axis=0)
    return r > 200 and b > 200 and g < 60


def _coco(out: Path, boxes: list, size: tuple[int, int]) -> None:
    cats = sorted({c for c, _ in boxes})
    doc = {
        "images": [{"id": 1, "file_name": "phone.jpg", "width": size[0], "height": size[1]}],
        "categories": [{"id": i, "name": c} for i, c in enumerate(cats)],
        "annotations": [
            {"id": k, "image_id": 1, "category_id": cats.index(c), "bbox": list(b)}
            for k, (c, b) in enumerate(boxes)
        ],
    }
    (out / "annotations.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_is_stored_upright_with_boxes_on_the_objects(
    tmp_path: Path, orientation: int
) -> None:
    for fmt in ("coco", "yolo", "voc"):
        shown, boxes = _write(tmp_path / fmt, fmt, orientation)
        with ProjectStore.create(tmp_path / f"p-{fmt}", fmt) as store:
            report = import_dataset(store, tmp_path / fmt)
            assert report.problems == [], (fmt, report.problems)
            assert report.counts["images_rotated_by_exif"] == (orientation != 1)
            with store.session(readonly=True) as s:
                im = s.scalars(select(Image)).one()
                stored = PILImage.open(store.image_path(im))
                assert (im.width, im.height) == SIZE == stored.size
            assert stored.getexif().get(0x0112, 1) == 1  # nothing left for a viewer to rotate again
            got = np.asarray(stored.convert("RGB"), float)
            assert _is_marker(got[2:14, 2:14]), (
                fmt
            )  # the marker is top-left, as shown: not mirrored, not turned
            assert not any(_is_marker(c) for c in (got[2:14, -14:-2], got[-14:-2, 2:14], got[-14:-2, -14:-2]))
            want = {("train" if fmt == "yolo" else "all", "phone.jpg"): boxes}
            assert_same_truth(store_truth(store), want, tol=1.0)


def test_box_that_only_fits_the_raw_frame_is_reported_with_that_reason(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    portrait = PILImage.new("RGB", (120, 160), (90, 120, 30))  # displayed 120x160, stored 160x120
    exif_jpeg(ds / "images" / "phone.jpg", portrait, 6)
    # the tool drew on the stored (unrotated) pixels and wrote their size
    doc = {
        "images": [{"id": 1, "file_name": "phone.jpg", "width": 160, "height": 120}],
        "categories": [{"id": 0, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 0, "bbox": [125, 10, 30, 20]},
            {"id": 2, "image_id": 1, "category_id": 0, "bbox": [10, 10, 30, 20]},
        ],
    }
    (ds / "annotations.json").write_text(json.dumps(doc))
    with ProjectStore.create(tmp_path / "p", "p") as store:
        report = import_dataset(store, ds)
        reasons = [p.reason for p in report.problems]
        assert report.counts["boxes_skipped"] == 1 and report.counts["boxes_imported"] == 1
        assert any(
            "fits only the image as stored before its EXIF rotation (orientation 6, 160x120)" in r
            for r in reasons
        ), reasons
        assert any(
            "says 160x120 but the image is 120x160" in r and "before the EXIF rotation" in r for r in reasons
        )
        with store.session(readonly=True) as s:
            assert {k for (k,) in s.execute(select(ImageProblem.kind))} == {"box_skipped", "size_mismatch"}


def test_same_phone_photo_twice_is_already_present(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    ds.mkdir()
    exif_jpeg(ds / "a.jpg", next(iter(generate_scenes(1, seed=3, size=SIZE))).image, 6)
    with ProjectStore.create(tmp_path / "p", "p") as store:
        import_dataset(store, ds)
        again = import_dataset(store, ds)
        assert again.note and "already in this project" in again.note
