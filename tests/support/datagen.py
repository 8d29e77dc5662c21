"""Test datasets on disk, written independently of our exporter (so import tests check the reader
against known truth, not against our own writer).

Every writer returns the truth: ``{(split, file_name): [(class_name, (x, y, w, h)), ...]}`` in absolute
pixels, where ``file_name`` is the image's base name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape

import yaml
from PIL import Image as PILImage
from sqlalchemy import select

from studio.services.projects.synthetic import (
    CATEGORIES,
    LEAF_CLASSES,
    coco_dict,
    generate_scenes,
    make_synthetic_coco,
)
from studio.store import Annotation, Category, Image, ProjectStore

Truth = dict[tuple[str, str], list[tuple[str, tuple[float, float, float, float]]]]
SPLITS = ("train", "valid", "test")


def _scenes(split: str, n: int, seed: int, size: tuple[int, int]):
    offset = {"train": 0, "valid": 1, "test": 2}.get(split, 3)
    return [
        (f"{split}_{i:05d}.jpg", sc) for i, sc in enumerate(generate_scenes(n, seed * 1000 + offset, size))
    ]


def _truth_of(split: str, pairs) -> Truth:
    return {(split, name): [(c, tuple(b)) for c, b in sc.boxes] for name, sc in pairs}


def coco_roboflow(out: Path, counts: dict[str, int] | None = None, seed: int = 0, size=(160, 120)) -> Truth:
    """The Roboflow layout via the app's generator; truth read back from the files it wrote."""
    counts = counts or {"train": 6, "valid": 2, "test": 2}
    make_synthetic_coco(out, counts, seed=seed, size=size)
    names = {c["id"]: c["name"] for c in CATEGORIES}
    truth: Truth = {}
    for split in counts:
        doc = json.loads((out / split / "_annotations.coco.json").read_text())
        files = {im["id"]: im["file_name"] for im in doc["images"]}
        for fid, fname in files.items():
            truth[(split, fname)] = [
                (names[a["category_id"]], tuple(a["bbox"]))
                for a in doc["annotations"]
                if a["image_id"] == fid
            ]
    return truth


def coco_single(
    out: Path,
    n: int = 6,
    seed: int = 1,
    size=(160, 120),
    id_map: Callable[[int], int] = lambda i: i,
    image_dir: str = "images",
    json_name: str = "annotations.json",
) -> Truth:
    """One COCO json + an image folder; ``id_map`` renumbers categories (0-/1-based, sparse)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / image_dir).mkdir(exist_ok=True)
    pairs = _scenes("all", n, seed, size)
    for name, sc in pairs:
        sc.image.save(out / image_dir / name, quality=90)
    doc = coco_dict(pairs, size)
    for c in doc["categories"]:
        c["id"] = id_map(c["id"])
    for a in doc["annotations"]:
        a["category_id"] = id_map(a["category_id"])
    (out / json_name).write_text(json.dumps(doc))
    return _truth_of("all", pairs)


def yolo(
    out: Path,
    counts: dict[str, int] | None = None,
    seed: int = 2,
    size=(160, 120),
    layout: str = "ultralytics",
    names_as: str = "list",
) -> Truth:
    """YOLO with ``data.yaml``: ``images/<split>`` + ``labels/<split>`` or ``<split>/images`` + labels."""
    counts = counts or {"train": 6, "valid": 2, "test": 2}
    truth: Truth = {}
    cfg: dict = {}
    for split, n in counts.items():
        key = "val" if split == "valid" else split
        img_dir, lbl_dir = (
            (out / "images" / key, out / "labels" / key)
            if layout == "ultralytics"
            else (out / split / "images", out / split / "labels")
        )
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        pairs = _scenes(split, n, seed, size)
        for name, sc in pairs:
            sc.image.save(img_dir / name, quality=90)
            lines = [_yolo_line(LEAF_CLASSES.index(c), b, size) for c, b in sc.boxes]
            (lbl_dir / name).with_suffix(".txt").write_text("".join(lines))
        truth.update(_truth_of(split, pairs))
        cfg[key] = str(img_dir.relative_to(out)) if layout == "ultralytics" else f"../{split}/images"
    cfg["nc"] = len(LEAF_CLASSES)
    cfg["names"] = list(LEAF_CLASSES) if names_as == "list" else {i: n for i, n in enumerate(LEAF_CLASSES)}
    (out / "data.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return truth


def _yolo_line(cls: int, box, size) -> str:
    x, y, w, h = box
    W, H = size
    return f"{cls} {(x + w / 2) / W:.6f} {(y + h / 2) / H:.6f} {w / W:.6f} {h / H:.6f}\n"


def loose_images(out: Path, n: int = 4, seed: int = 3, size=(160, 120)) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    pairs = _scenes("loose", n, seed, size)
    for name, sc in pairs:
        sc.image.save(out / name, quality=90)
    return [name for name, _ in pairs]


def store_truth(store: ProjectStore) -> Truth:
    """What a project holds, in the same shape as the writers' truth (split None -> 'all')."""
    with store.session(readonly=True) as s:
        names = {c.id: c.name for c in s.scalars(select(Category))}
        out: Truth = {}
        for im in s.scalars(select(Image)):
            out[(im.split or "all", Path(im.original_name).name)] = []
        files = {im.id: (im.split or "all", Path(im.original_name).name) for im in s.scalars(select(Image))}
        for a in s.scalars(select(Annotation)):
            out[files[a.image_id]].append((names[a.category_id], (a.x, a.y, a.w, a.h)))
    return out


def assert_same_truth(got: Truth, want: Truth, tol: float = 0.5, ignore_split: bool = False) -> None:
    """Same images, and per image the same multiset of (class, box) within ``tol`` pixels."""
    if ignore_split:
        got = {("", k[1]): v for k, v in got.items()}
        want = {("", k[1]): v for k, v in want.items()}
    assert sorted(got) == sorted(want)
    for key, want_boxes in want.items():
        got_boxes = sorted(got[key])
        want_boxes = sorted(want_boxes)
        assert [c for c, _ in got_boxes] == [c for c, _ in want_boxes], key
        for (_, g), (_, w) in zip(got_boxes, want_boxes, strict=True):
            assert max(abs(a - b) for a, b in zip(g, w, strict=True)) <= tol, (key, g, w)


# -- Pascal VOC, LabelMe, CVAT (issue 14): written by hand, like the tools write them ---------------------

VOC_SPLIT_FILES = {"train": "train", "valid": "val", "test": "test"}


def _int_box(box) -> tuple[int, int, int, int]:
    """A scene box as the integer corners VOC tools write (xmin, ymin, xmax, ymax)."""
    x, y, w, h = box
    return round(x), round(y), round(x + w), round(y + h)


def voc_xml(
    file_name: str,
    size: tuple[int, int],
    objects: list[tuple[str, tuple[float, float, float, float]]],
    **flags,
) -> str:
    """One LabelImg-style annotation; ``objects`` are (name, (xmin, ymin, xmax, ymax)); ``flags`` maps an
    object index to extra child elements (e.g. ``{0: {"difficult": 1}}`` as ``flags={...}``)."""
    extra = flags.get("flags", {})
    objs = []
    for i, (name, (x0, y0, x1, y1)) in enumerate(objects):
        more = "".join(f"<{k}>{v}</{k}>" for k, v in extra.get(i, {}).items())
        objs.append(
            f"<object><name>{escape(name)}</name><pose>Unspecified</pose>{more}"
            f"<bndbox><xmin>{x0:g}</xmin><ymin>{y0:g}</ymin><xmax>{x1:g}</xmax><ymax>{y1:g}</ymax></bndbox></object>"
        )
    return (
        f"<annotation><folder>JPEGImages</folder><filename>{escape(file_name)}</filename>"
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{''.join(objs)}</annotation>"
    )


def voc(
    out: Path,
    counts: dict[str, int] | None = None,
    seed: int = 4,
    size=(160, 120),
    layout: str = "devkit",
    prefix: str = "",
) -> Truth:
    """Pascal VOC: ``devkit`` (Annotations/, JPEGImages/, ImageSets/Main/) or ``flat`` (image + .xml
    side by side, no split lists: truth split 'all'). Boxes are integer corners, as VOC tools write."""
    counts = counts or {"train": 4, "valid": 2, "test": 2}
    truth: Truth = {}
    img_dir, ann_dir = (out / "JPEGImages", out / "Annotations") if layout == "devkit" else (out, out)
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    for split, n in counts.items():
        pairs = [(prefix + name, sc) for name, sc in _scenes(split, n, seed, size)]
        ids = []
        for name, sc in pairs:
            sc.image.save(img_dir / name, quality=90)
            objects = [(c, _int_box(b)) for c, b in sc.boxes]
            (ann_dir / name).with_suffix(".xml").write_text(voc_xml(name, size, objects), encoding="utf-8")
            key = split if layout == "devkit" else "all"
            truth[(key, name)] = [(c, (x0, y0, x1 - x0, y1 - y0)) for c, (x0, y0, x1, y1) in objects]
            ids.append(Path(name).stem)
        if layout == "devkit":
            sets = out / "ImageSets" / "Main"
            sets.mkdir(parents=True, exist_ok=True)
            (sets / f"{VOC_SPLIT_FILES[split]}.txt").write_text(
                "".join(i + "\n" for i in ids), encoding="utf-8"
            )
    return truth


def labelme(out: Path, n: int = 4, seed: int = 5, size=(160, 120), polygons: bool = False) -> Truth:
    """LabelMe: ``<stem>.json`` next to each image; rectangles as two corners (the second corner first
    on odd boxes, as a drag up-left gives), or polygons tracing the box outline."""
    out.mkdir(parents=True, exist_ok=True)
    pairs = _scenes("lm", n, seed, size)
    for name, sc in pairs:
        sc.image.save(out / name, quality=90)
        shapes = []
        for i, (c, (x, y, w, h)) in enumerate(sc.boxes):
            if polygons:
                pts, kind = [[x, y], [x + w, y], [x + w, y + h], [x, y + h]], "polygon"
            else:
                pts = [[x, y], [x + w, y + h]] if i % 2 == 0 else [[x + w, y + h], [x, y]]
                kind = "rectangle"
            shapes.append({"label": c, "points": pts, "group_id": None, "shape_type": kind, "flags": {}})
        doc = {
            "version": "5.4.1",
            "flags": {},
            "shapes": shapes,
            "imagePath": name,
            "imageData": None,
            "imageHeight": size[1],
            "imageWidth": size[0],
        }
        (out / name).with_suffix(".json").write_text(json.dumps(doc), encoding="utf-8")
    return _truth_of("all", pairs)


def cvat(out: Path, counts: dict[str, int] | None = None, seed: int = 6, size=(160, 120)) -> Truth:
    """CVAT for images 1.1: ``annotations.xml`` + ``images/``; ``subset`` gives the split; every third
    box is ``occluded``."""
    counts = counts or {"train": 3, "valid": 2}
    (out / "images").mkdir(parents=True, exist_ok=True)
    labels = "".join(f"<label><name>{escape(c)}</name><attributes/></label>" for c in LEAF_CLASSES)
    parts = [
        f"<?xml version='1.0' encoding='utf-8'?><annotations><version>1.1</version><meta><task>"
        f"<name>t</name><labels>{labels}</labels></task></meta>"
    ]
    truth: Truth = {}
    k = 0
    for split, n in counts.items():
        pairs = _scenes(split, n, seed, size)
        for name, sc in pairs:
            sc.image.save(out / "images" / name, quality=90)
            boxes = []
            for c, (x, y, w, h) in sc.boxes:
                k += 1
                boxes.append(
                    f'<box label="{escape(c)}" occluded="{int(k % 3 == 0)}" source="manual" '
                    f'xtl="{x:.2f}" ytl="{y:.2f}" xbr="{x + w:.2f}" ybr="{y + h:.2f}" z_order="0"/>'
                )
            parts.append(
                f'<image id="{k}" name="{escape(name)}" subset="{split.capitalize()}" '
                f'width="{size[0]}" height="{size[1]}">{"".join(boxes)}</image>'
            )
        truth.update(_truth_of(split, pairs))
    parts.append("</annotations>")
    (out / "annotations.xml").write_text("".join(parts), encoding="utf-8")
    return truth


# -- EXIF orientation (issue 14) --------------------------------------------------------------------------

# what a viewer does to the stored pixels for each orientation, and its inverse (to make the stored pixels)
EXIF_SHOW = {
    2: PILImage.Transpose.FLIP_LEFT_RIGHT,
    3: PILImage.Transpose.ROTATE_180,
    4: PILImage.Transpose.FLIP_TOP_BOTTOM,
    5: PILImage.Transpose.TRANSPOSE,
    6: PILImage.Transpose.ROTATE_270,
    7: PILImage.Transpose.TRANSVERSE,
    8: PILImage.Transpose.ROTATE_90,
}
EXIF_UNDO = {**EXIF_SHOW, 6: PILImage.Transpose.ROTATE_90, 8: PILImage.Transpose.ROTATE_270}


def exif_jpeg(path: Path, upright: PILImage.Image, orientation: int) -> None:
    """Save ``upright`` as a phone would: the pixels as the sensor gave them plus the EXIF orientation
    that makes a viewer show ``upright``."""
    raw = upright.transpose(EXIF_UNDO[orientation]) if orientation != 1 else upright
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    raw.save(path, "JPEG", quality=95, exif=exif.tobytes())
