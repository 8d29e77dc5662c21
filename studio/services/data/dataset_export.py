"""Export a project's ground truth to COCO (Roboflow layout) or YOLO, or a zip of either.

Lossless by design: COCO keeps each class's original id (``source_id``) and its supercategory, so a
re-import rebuilds the same tree; YOLO has no hierarchy, so ``data.yaml`` carries an extra
``supercategories`` mapping that our importer reads back (other tools ignore unknown keys). Labeled
images with no boxes get an empty label file (YOLO) / no annotations (COCO); unlabeled images get no
label file, so their status survives the round trip. Images without a split go to ``train``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import yaml
from sqlalchemy import select

from studio.errors import StudioError
from studio.store import Annotation, Category, Image, ProjectStore

EXPORT_SPLITS = ("train", "valid", "test")


def _load(store: ProjectStore) -> tuple[list[Category], list[Image], dict[int, list[Annotation]]]:
    with store.session(readonly=True) as s:
        cats = list(s.scalars(select(Category).order_by(Category.id)))
        images = list(s.scalars(select(Image).order_by(Image.id)))
        boxes: dict[int, list[Annotation]] = defaultdict(list)
        for a in s.scalars(select(Annotation).where(Annotation.source == "gt").order_by(Annotation.id)):
            boxes[a.image_id].append(a)
    if not images:
        raise StudioError("The project has no images to export.")
    return cats, images, boxes


def _coco_ids(cats: list[Category]) -> dict[int, int]:
    """Category id -> exported id: the original id when it is free, else the next unused number."""
    out, used = {}, set()
    for c in cats:
        if c.source_id is not None and c.source_id not in used:
            out[c.id] = c.source_id
            used.add(c.source_id)
    nxt = max(used, default=-1) + 1
    for c in cats:
        if c.id not in out:
            out[c.id] = nxt
            nxt += 1
    return out


def _by_split(images: list[Image]) -> dict[str, list[Image]]:
    groups: dict[str, list[Image]] = {s: [] for s in EXPORT_SPLITS}
    for im in images:
        groups[im.split or "train"].append(im)
    return groups


def _unique_name(im: Image, taken: set[str]) -> str:
    """The image's original base name, made unique within its split folder."""
    name = Path(im.original_name.replace("\\", "/")).name or Path(im.file_name).name
    stem, suffix = Path(name).stem, Path(im.file_name).suffix
    name = f"{stem}{suffix}"
    if name in taken:
        name = f"{stem}_{im.id}{suffix}"
    taken.add(name)
    return name


def export_coco(store: ProjectStore, out_dir: Path) -> Path:
    """Write ``out_dir/<split>/_annotations.coco.json`` + images (only splits that have images)."""
    cats, images, boxes = _load(store)
    ids = _coco_ids(cats)
    by_id = {c.id: c for c in cats}
    categories = [
        {"id": ids[c.id], "name": c.name, "supercategory": by_id[c.parent_id].name if c.parent_id else "none"}
        for c in sorted(cats, key=lambda c: ids[c.id])
    ]
    out_dir = Path(out_dir)
    for split, split_images in _by_split(images).items():
        if not split_images:
            continue
        folder = out_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        coco_images, coco_anns = [], []
        for im in split_images:
            name = _unique_name(im, taken)
            shutil.copyfile(store.image_path(im), folder / name)
            coco_images.append({"id": im.id, "file_name": name, "width": im.width, "height": im.height})
            for a in boxes.get(im.id, []):
                coco_anns.append(
                    {
                        "id": a.id,
                        "image_id": im.id,
                        "category_id": ids[a.category_id],
                        "bbox": [a.x, a.y, a.w, a.h],
                        "area": a.w * a.h,
                        "iscrowd": 0,
                    }
                )
        doc = {
            "info": {"description": f"exported from RF-DETR Studio project {store.path.name}"},
            "images": coco_images,
            "annotations": coco_anns,
            "categories": categories,
        }
        (folder / "_annotations.coco.json").write_text(json.dumps(doc))
    return out_dir


def _yolo_classes(cats: list[Category], boxes: dict[int, list[Annotation]]) -> list[Category]:
    """Leaf classes plus any parent that carries boxes itself (so no box is lost)."""
    parents = {c.parent_id for c in cats if c.parent_id is not None}
    used = {a.category_id for anns in boxes.values() for a in anns}
    return [c for c in cats if c.id not in parents or c.id in used]


def export_yolo(store: ProjectStore, out_dir: Path, layout: str = "ultralytics") -> Path:
    """Write a YOLO dataset: ``images/<split>`` + ``labels/<split>`` (or ``<split>/images`` with
    ``layout='roboflow'``) and ``data.yaml`` with ``names`` as an id -> name mapping."""
    if layout not in {"ultralytics", "roboflow"}:
        raise StudioError(f"Unknown YOLO layout '{layout}'.")
    cats, images, boxes = _load(store)
    classes = _yolo_classes(cats, boxes)
    index = {c.id: i for i, c in enumerate(classes)}
    by_id = {c.id: c for c in cats}
    out_dir = Path(out_dir)
    cfg: dict = {}
    for split, split_images in _by_split(images).items():
        if not split_images:
            continue
        img_dir, lbl_dir = (
            (out_dir / "images" / split, out_dir / "labels" / split)
            if layout == "ultralytics"
            else (out_dir / split / "images", out_dir / split / "labels")
        )
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        for im in split_images:
            name = _unique_name(im, taken)
            shutil.copyfile(store.image_path(im), img_dir / name)
            if im.status != "unlabeled" or boxes.get(im.id):
                lines = [_yolo_line(a, index[a.category_id], im) for a in boxes.get(im.id, [])]
                (lbl_dir / name).with_suffix(".txt").write_text("".join(lines))
        cfg["val" if split == "valid" else split] = str(img_dir.relative_to(out_dir))
    cfg["nc"] = len(classes)
    cfg["names"] = {i: c.name for i, c in enumerate(classes)}
    cfg["supercategories"] = {c.name: by_id[c.parent_id].name for c in cats if c.parent_id}
    (out_dir / "data.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return out_dir


def _yolo_line(a: Annotation, cls: int, im: Image) -> str:
    cx, cy = (a.x + a.w / 2) / im.width, (a.y + a.h / 2) / im.height
    return f"{cls} {cx:.6f} {cy:.6f} {a.w / im.width:.6f} {a.h / im.height:.6f}\n"


def export_zip(store: ProjectStore, fmt: str, out_path: Path) -> Path:
    """Export in ``fmt`` ('coco' or 'yolo') and pack the result into the zip ``out_path``."""
    writers = {"coco": export_coco, "yolo": export_yolo}
    if fmt not in writers:
        raise StudioError(f"Unknown export format '{fmt}' (choose coco or yolo).")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="studio-export-") as tmp:
        writers[fmt](store, Path(tmp))
        archive = shutil.make_archive(str(out_path.with_suffix("")), "zip", root_dir=tmp)
    return Path(archive)


__all__ = ["export_coco", "export_yolo", "export_zip"]
