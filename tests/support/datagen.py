"""Test datasets on disk, written independently of our exporter (so import tests check the reader
against known truth, not against our own writer).

Every writer returns the truth: ``{(split, file_name): [(class_name, (x, y, w, h)), ...]}`` in absolute
pixels, where ``file_name`` is the image's base name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml
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
