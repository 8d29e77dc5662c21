"""CVAT for images 1.1 reader: one ``annotations.xml`` with ``<image>`` elements holding ``<box>``es.

Why: CVAT's image export is the other common hand-labeling format. Classes come from ``<meta>``'s
``<labels>`` (in their order) plus any label a box uses; ``subset`` (CVAT 2.x) gives the split; a
``<polygon>`` becomes its bounding box (counted and warned), other shapes are skipped with that
reason; ``occluded`` is counted. Video ``<track>``s are not images: reported, not imported. Images
are looked up next to the xml, in ``images/`` and by base name anywhere in the dataset.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element

from studio.services.data.importing import limits
from studio.services.data.importing.formats.common import (
    SPLIT_ALIASES,
    RawBox,
    RawCategory,
    RawDataset,
    RawImage,
    abort,
    class_name_problem,
    rel,
    skip_box,
)
from studio.services.data.importing.formats.xml_safe import BadXml, number, parse_xml
from studio.services.data.importing.image_check import is_image_name
from studio.services.data.importing.report import ImportReport
from studio.text import quote

NOT_BOXES = ("points", "polyline", "ellipse", "mask", "cuboid", "skeleton")
NO_IMAGES = (
    "this looks like CVAT annotations without images: point at the folder that holds annotations.xml "
    "and the images/ folder"
)


def read_cvat(root: Path, xml: Path, report: ImportReport, files: list[Path]) -> RawDataset:
    where = rel(xml, root)
    try:
        doc = parse_xml(xml, limits.MAX_XML_BYTES)
    except BadXml as e:
        raise abort(report, where, f"{where} {e}") from None
    if doc.tag != "annotations":
        raise abort(report, where, f"{where} is not a CVAT file (root element {quote(doc.tag, 40)})")
    images = [p for p in files if is_image_name(p)]
    if not images:
        raise abort(report, where, NO_IMAGES)
    by_rel = {p.relative_to(root).as_posix(): p for p in images if p.is_relative_to(root)}
    by_name: dict[str, list[Path]] = {}
    for p in images:
        by_name.setdefault(p.name, []).append(p)
    ds = RawDataset(format="cvat")
    cats = {n: RawCategory(n) for n in _labels(doc)}
    base = xml.parent.relative_to(root).as_posix() if xml.parent != root else ""
    for el in doc.iter("image"):
        ds.images.append(_image(el, where, base, by_rel, by_name, cats, report))
    tracks = len(doc.findall("track"))
    if tracks:
        report.add(
            where, f"{tracks} video tracks are not imported (export 'CVAT for images' instead)", "warning"
        )
    ds.categories = list(cats.values())
    if report.counts["polygons_as_boxes"]:
        report.add(
            where,
            f"{report.counts['polygons_as_boxes']} polygons imported as their bounding boxes",
            "warning",
        )
    return ds


def _labels(doc: Element) -> list[str]:
    names = []
    for lab in doc.iterfind("meta//labels/label"):
        name = (lab.findtext("name") or "").strip()
        if name and class_name_problem(name) is None and name not in names:
            names.append(name)
    return names[: limits.MAX_CLASSES]


def _find(name: str, base: str, by_rel: dict[str, Path], by_name: dict[str, list[Path]]) -> Path | None:
    clean = name.replace("\\", "/").lstrip("/")
    for key in (f"{base}/{clean}" if base else clean, f"{base}/images/{clean}".lstrip("/"), clean):
        if key in by_rel:
            return by_rel[key]
    hits = by_name.get(Path(clean).name, [])
    return hits[0] if len(hits) == 1 else None


def _image(
    el: Element,
    where: str,
    base: str,
    by_rel: dict[str, Path],
    by_name: dict[str, list[Path]],
    cats: dict[str, RawCategory],
    report: ImportReport,
) -> RawImage:
    name = (el.get("name") or "")[: limits.MAX_FILE_NAME_CHARS]
    path = _find(name, base, by_rel, by_name) if name and "\x00" not in name else None
    w, h = number(el.get("width")), number(el.get("height"))
    size = (w, h) if w and h and w > 0 and h > 0 else None
    subset = (el.get("subset") or "").strip().lower()
    im = RawImage(
        path, name or "?", SPLIT_ALIASES.get(subset), True, f"{where}#image {quote(name, 80)}", size
    )
    for n, shape in enumerate(el, start=1):
        box = _shape(shape, f"{where}#image {quote(name, 80)} shape {n}", im, cats, report)
        if box is not None:
            im.boxes.append(box)
    return im


def _shape(el: Element, where: str, im: RawImage, cats: dict[str, RawCategory], report: ImportReport):
    if el.tag in NOT_BOXES:
        return skip_box(report, im, where, f"a <{el.tag}> is not a box")
    if el.tag not in {"box", "polygon"}:
        return None  # <tag> (image-level label) and unknown elements carry no box
    label = (el.get("label") or "").strip()
    bad = class_name_problem(label)
    if bad is not None:
        return skip_box(report, im, where, f"label {bad}")
    if el.tag == "box":
        vals = [number(el.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")]
        if any(v is None for v in vals):
            return skip_box(report, im, where, "<box> needs numeric xtl, ytl, xbr and ybr")
        x0, y0, x1, y1 = vals
    else:
        pts = _points(el.get("points") or "")
        if len(pts) < 2:
            return skip_box(report, im, where, "<polygon> needs at least 2 'x,y' points")
        report.count("polygons_as_boxes")
        x0, y0 = min(p[0] for p in pts), min(p[1] for p in pts)
        x1, y1 = max(p[0] for p in pts), max(p[1] for p in pts)
    if el.get("occluded") == "1":
        report.count("boxes_occluded")
    cats.setdefault(label, RawCategory(label))
    return RawBox(label, x0, y0, x1 - x0, y1 - y0, where)


def _points(text: str) -> list[tuple[float, float]]:
    out = []
    for pair in text.split(";")[:100_000]:
        xy = [number(v) for v in pair.split(",")]
        if len(xy) != 2 or None in xy:
            return []
        out.append((xy[0], xy[1]))
    return out
