"""Export a project's ground truth as Pascal VOC (``Annotations/``, ``JPEGImages/``,
``ImageSets/Main/{train,val,test}.txt``), or a zip of it.

Why VOC as well as COCO/YOLO: it is what LabelImg, CVAT and many older training scripts read. Boxes
are written the way our importer (and FiftyOne, Roboflow) read them, ``xmin = x``, ``xmax = x + w``,
as plain numbers (integers stay integers, other values keep up to 3 decimals), so VOC -> studio ->
VOC gives back the same numbers. VOC has no class tree and no "labeled but empty" marker beyond the
file itself: a labeled image without boxes gets an xml with no ``<object>``, an unlabeled image gets
no xml (so its status survives a re-import). Images without a split are listed in ``train.txt``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

from studio.services.data.dataset_export import _by_split, _load
from studio.store import Annotation, Image, ProjectStore

SET_NAMES = {"train": "train", "valid": "val", "test": "test"}


def export_voc(store: ProjectStore, out_dir: Path) -> Path:
    """Write the VOC layout under ``out_dir``; returns ``out_dir``."""
    cats, images, boxes = _load(store)
    names = {c.id: c.name for c in cats}
    out_dir = Path(out_dir)
    ann_dir, img_dir, sets_dir = (
        out_dir / "Annotations",
        out_dir / "JPEGImages",
        out_dir / "ImageSets" / "Main",
    )
    for d in (ann_dir, img_dir, sets_dir):
        d.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()  # stems: one JPEGImages/Annotations folder for all splits
    for split, split_images in _by_split(images).items():
        ids = []
        for im in split_images:
            name = _voc_name(im, taken)
            shutil.copyfile(store.image_path(im), img_dir / name)
            ids.append(Path(name).stem)
            if im.status != "unlabeled" or boxes.get(im.id):
                xml = voc_annotation(name, im, boxes.get(im.id, []), names)
                (ann_dir / f"{Path(name).stem}.xml").write_text(xml, encoding="utf-8")
        if split_images:
            (sets_dir / f"{SET_NAMES[split]}.txt").write_text(
                "".join(i + "\n" for i in ids), encoding="utf-8"
            )
    return out_dir


def _voc_name(im: Image, taken: set[str]) -> str:
    """The user's base name with the stored file's real suffix; the *stem* is the VOC image id, so it
    must be unique across the whole export (``a.jpg`` and ``a.png`` would share ``a.xml``)."""
    name = Path(im.original_name.replace("\\", "/")).name or Path(im.file_name).name
    stem, suffix = Path(name).stem, Path(im.file_name).suffix
    if stem in taken:
        stem = f"{stem}_{im.id}"
    taken.add(stem)
    return f"{stem}{suffix}"


def _num(v: float) -> str:
    r = round(float(v), 3)
    return str(int(r)) if r == int(r) else f"{r:g}"


def voc_annotation(file_name: str, im: Image, boxes: list[Annotation], names: dict[int, str]) -> str:
    """One image's ``<annotation>`` (LabelImg's element order)."""
    objects = "".join(
        "<object>"
        f"<name>{escape(names[a.category_id])}</name><pose>Unspecified</pose>"
        "<truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{_num(a.x)}</xmin><ymin>{_num(a.y)}</ymin>"
        f"<xmax>{_num(a.x + a.w)}</xmax><ymax>{_num(a.y + a.h)}</ymax></bndbox>"
        "</object>"
        for a in boxes
    )
    return (
        "<annotation><folder>JPEGImages</folder>"
        f"<filename>{escape(file_name)}</filename>"
        f"<size><width>{im.width}</width><height>{im.height}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{objects}</annotation>\n"
    )


def export_voc_zip(store: ProjectStore, out_path: Path) -> Path:
    """Export as VOC and pack it into the zip ``out_path`` (same contract as ``export_zip``)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="studio-export-") as tmp:
        export_voc(store, Path(tmp))
        archive = shutil.make_archive(str(out_path.with_suffix("")), "zip", root_dir=tmp)
    return Path(archive)


__all__ = ["export_voc", "export_voc_zip", "voc_annotation"]
