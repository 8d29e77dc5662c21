"""LabelMe reader: one ``.json`` per image (``shapes``, ``imagePath``, ``imageWidth``/``imageHeight``).

Why: LabelMe is what many teams label with by hand. A ``rectangle`` is two corner points (in any
order); a ``polygon`` becomes its bounding box, which loses the outline, so each one is counted and
reported as a warning; circles, lines and points are not boxes and are skipped with that reason. The
image is ``imagePath`` relative to the json, else a same-stem image next to it (LabelMe's own
default). The embedded base64 ``imageData`` is not used: a json without its image file is reported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from studio.services.data.importing import limits
from studio.services.data.importing.formats.common import (
    RawBox,
    RawCategory,
    RawDataset,
    RawImage,
    abort,
    class_name_problem,
    rel,
    skip_box,
)
from studio.services.data.importing.formats.xml_safe import peek
from studio.services.data.importing.image_check import BadImage, is_image_name, read_regular_file
from studio.services.data.importing.report import ImportReport
from studio.text import quote

NO_IMAGES = (
    "this looks like LabelMe annotations without images: point at the folder that holds the .json "
    "files and their images"
)


def is_labelme(path: Path) -> bool:
    """A LabelMe file starts with ``version``/``flags``/``shapes``; a COCO file has ``images``."""
    head = peek(path)
    return '"shapes"' in head and '"images"' not in head


def read_labelme(
    root: Path, report: ImportReport, jsons: list[Path], files: list[Path], only_annotated: bool = False
) -> RawDataset:
    """LabelMe files ``jsons``; the other images among ``files`` come in unlabeled unless
    ``only_annotated`` (one .json was chosen, so only its image is wanted)."""
    images = {p: p for p in files if is_image_name(p)}
    if not images:
        raise abort(report, root.name, NO_IMAGES)
    ds = RawDataset(format="labelme")
    cats: dict[str, RawCategory] = {}
    used: set[Path] = set()
    for path in jsons:
        im = _read_one(path, root, images, cats, report)
        if im is not None:
            ds.images.append(im)
            used.add(im.path)
    for p in images:
        if p not in used and not only_annotated:
            ds.images.append(RawImage(p, p.name, None, False, rel(p, root)))
            report.count("images_without_annotation_file")
    ds.categories = list(cats.values())
    if report.counts["polygons_as_boxes"]:
        report.add(
            "LabelMe",
            f"{report.counts['polygons_as_boxes']} polygons were imported as their bounding boxes "
            "(the outline is not kept)",
            "warning",
        )
    return ds


def _load(path: Path, where: str, report: ImportReport) -> dict | None:
    try:
        doc = json.loads(read_regular_file(path, limits.MAX_LABEL_FILE_BYTES).decode("utf-8-sig"))
    except (BadImage, UnicodeDecodeError, ValueError, RecursionError) as e:
        why = str(e)[:160] if isinstance(e, BadImage | json.JSONDecodeError) else "not UTF-8 JSON"
        report.add(where, f"cannot read LabelMe file ({why}); skipped")
        report.count("annotation_files_skipped")
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        report.add(where, "not a LabelMe file (no 'shapes' list); skipped")
        report.count("annotation_files_skipped")
        return None
    return doc


def _image_of(path: Path, doc: dict, images: dict[Path, Path]) -> Path | None:
    ip = doc.get("imagePath")
    if isinstance(ip, str) and 0 < len(ip) <= limits.MAX_FILE_NAME_CHARS and "\x00" not in ip:
        cand = Path(str(path.parent / ip.replace("\\", "/")))
        norm = Path(*[q for q in cand.parts if q != "."])
        if norm in images:
            return norm
        same = path.parent / Path(ip.replace("\\", "/")).name
        if same in images:
            return same
    stems = [p for p in images if p.parent == path.parent and p.stem == path.stem]
    return stems[0] if stems else None


def _read_one(
    path: Path, root: Path, images: dict[Path, Path], cats: dict[str, RawCategory], report: ImportReport
) -> RawImage | None:
    where = rel(path, root)
    doc = _load(path, where, report)
    if doc is None:
        return None
    img = _image_of(path, doc, images)
    ip = doc.get("imagePath") if isinstance(doc.get("imagePath"), str) else path.stem
    name = img.name if img is not None else Path(ip.replace("\\", "/")).name
    w, h = doc.get("imageWidth"), doc.get("imageHeight")
    size = (float(w), float(h)) if all(_num(v) and v > 0 for v in (w, h)) else None
    im = RawImage(img, name, None, True, where if img else f"{where} ({quote(name, 80)})", size)
    for n, shape in enumerate(doc["shapes"][: limits.MAX_BOXES_PER_IMAGE + 1], start=1):
        box = _shape(shape, f"{where}#shape {n}", im, cats, report)
        if box is not None:
            im.boxes.append(box)
    return im


def _num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _shape(shape: object, where: str, im: RawImage, cats: dict[str, RawCategory], report: ImportReport):
    if not isinstance(shape, dict):
        return skip_box(report, im, where, "shape is not an object")
    label = shape.get("label")
    bad = class_name_problem(label)
    if bad is not None:
        return skip_box(report, im, where, f"shape label {bad}")
    kind = shape.get("shape_type") or "polygon"  # old LabelMe files have no shape_type: polygons
    pts = shape.get("points")
    if kind not in {"rectangle", "polygon"}:
        return skip_box(report, im, where, f"a {quote(kind, 30)} shape is not a box")
    if not isinstance(pts, list) or len(pts) < 2 or len(pts) > 100_000:
        return skip_box(report, im, where, f"{kind} needs at least 2 points")
    if not all(isinstance(p, list) and len(p) == 2 and _num(p[0]) and _num(p[1]) for p in pts):
        return skip_box(report, im, where, f"{kind} points must be [x, y] number pairs")
    xs, ys = [float(p[0]) for p in pts], [float(p[1]) for p in pts]
    if kind == "polygon":
        report.count("polygons_as_boxes")
    label = str(label).strip()
    cats.setdefault(label, RawCategory(label))
    x0, y0 = min(xs), min(ys)
    return RawBox(label, x0, y0, max(xs) - x0, max(ys) - y0, f"{where} of {quote(im.name, 80)}")
