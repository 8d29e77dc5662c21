"""Pascal VOC reader: ``Annotations/*.xml`` + ``JPEGImages/`` (+ ``ImageSets/Main/*.txt``), or a flat
folder of images with same-named ``.xml`` files (LabelImg's default), or one ``.xml``.

Why these rules:
- The image is found from ``<filename>`` first (next to the annotation folder's ``JPEGImages/``, next to
  the xml, anywhere in the dataset by base name) and then from the xml's own stem: many published sets
  have a stale ``<filename>`` (renamed files, ``.png`` written as ``.jpg``).
- Boxes are read as FiftyOne and Roboflow read them: ``x = xmin``, ``w = xmax - xmin`` in pixels, so a
  round trip through either tool (or our own VOC export) gives the same numbers.
- ``<size>`` is only a claim: the writer compares it with the real (EXIF-upright) image and warns.
- ``difficult`` / ``truncated`` / ``occluded`` have no column; they are counted in the report.
- Splits come from ``ImageSets/Main/{train,val,trainval,test}.txt`` (val -> valid; an id only in
  ``trainval`` is train); without them images stay unassigned for the automatic split.
- Every xml is parsed with :func:`parse_xml` (DTDs refused: no entity bomb, no external entity).
"""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element

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
from studio.services.data.importing.formats.xml_safe import BadXml, number, parse_xml, text_of, xml_root_tag
from studio.services.data.importing.image_check import is_image_name
from studio.services.data.importing.report import ImportReport
from studio.text import quote

VOC_ANNOTATIONS = "Annotations"
VOC_IMAGES = "JPEGImages"
SET_FILES = (("test", "test"), ("val", "valid"), ("train", "train"), ("trainval", "train"))
FLAGS = ("difficult", "truncated", "occluded")
NO_IMAGES = (
    "this looks like Pascal VOC annotations without images: point at the folder that holds both "
    "Annotations/ and JPEGImages/"
)


def voc_root(root: Path) -> Path | None:
    """The folder holding ``Annotations/`` (the root itself, or one or two levels down, as in
    ``VOCdevkit/VOC2012/``), or None."""
    for cand in (root, *sorted(root.glob("*/")), *sorted(root.glob("*/*/"))):
        if (cand / VOC_ANNOTATIONS).is_dir() and not cand.is_symlink():
            return cand
    return None


def voc_xml_files(files: list[Path]) -> list[Path]:
    """The ``.xml`` files among ``files`` whose root element is ``<annotation>``."""
    return [p for p in files if p.suffix.lower() == ".xml" and xml_root_tag(p) == "annotation"]


def read_voc(
    root: Path,
    report: ImportReport,
    files: list[Path],
    xmls: list[Path] | None = None,
    only_annotated: bool = False,
) -> RawDataset:
    """VOC from ``root`` (all of its regular ``files`` listed by the caller). Images without an xml
    come in unlabeled, unless ``only_annotated`` (one .xml was chosen: only its image is wanted)."""
    base = voc_root(root)
    if xmls is None:
        xmls = voc_xml_files(files)
    images = [p for p in files if is_image_name(p)]
    if base is not None and (base / VOC_IMAGES).is_dir():  # not SegmentationClass/ masks and the like
        images = [p for p in images if p.is_relative_to(base / VOC_IMAGES)]
    if not images:
        raise abort(report, root.name, NO_IMAGES)
    index = _index(images)
    splits = _splits(base, report, root) if base is not None else {}
    ds = RawDataset(format="voc")
    cats: dict[str, RawCategory] = {}
    used: set[Path] = set()
    for xml in xmls:
        im = _read_xml(xml, root, index, splits, cats, report)
        if im is not None:
            ds.images.append(im)
            if im.path is not None:
                used.add(im.path)
    for p in images:  # images without an annotation file: unlabeled, ready to label
        if p not in used and not only_annotated:
            ds.images.append(RawImage(p, p.name, splits.get(p.stem), False, rel(p, root)))
            report.count("images_without_annotation_file")
    ds.categories = list(cats.values())
    _count_flags(ds, report)
    return ds


def _index(images: list[Path]) -> dict[str, list[Path]]:
    """Base name and stem -> image files (both, so a stale extension in ``<filename>`` still matches)."""
    out: dict[str, list[Path]] = {}
    for p in images:
        out.setdefault(p.name, []).append(p)
        out.setdefault("stem:" + p.stem, []).append(p)
    return out


def _splits(base: Path, report: ImportReport, root: Path) -> dict[str, str]:
    """Image id (file stem) -> split from ``ImageSets/Main``; the first list naming an id wins."""
    out: dict[str, str] = {}
    for name, split in SET_FILES:
        path = base / "ImageSets" / "Main" / f"{name}.txt"
        if not path.is_file() or path.is_symlink():
            continue
        try:
            text = path.read_bytes()[: limits.MAX_LABEL_FILE_BYTES].decode("utf-8", errors="replace")
        except OSError:
            report.add(rel(path, root), "cannot read the split list; ignored", "warning")
            continue
        for line in text.splitlines():
            cols = line.split()
            if cols:
                out.setdefault(cols[0], split)
    return out


def _find_image(xml: Path, fname: str | None, index: dict[str, list[Path]]) -> Path | None:
    near = [xml.parent.parent / VOC_IMAGES, xml.parent]
    if fname:
        base = Path(fname.replace("\\", "/")).name
        for folder in near:
            hit = [p for p in index.get(base, []) if p.parent == folder]
            if hit:
                return hit[0]
        if len(index.get(base, [])) == 1:
            return index[base][0]
    for stem in dict.fromkeys([Path(fname.replace("\\", "/")).stem if fname else None, xml.stem]):
        hits = index.get(f"stem:{stem}", []) if stem else []
        close = [p for p in hits if p.parent in near]
        if close or len(hits) == 1:
            return (close or hits)[0]
    return None


def _read_xml(
    xml: Path,
    root: Path,
    index: dict[str, list[Path]],
    splits: dict[str, str],
    cats: dict[str, RawCategory],
    report: ImportReport,
) -> RawImage | None:
    where = rel(xml, root)
    try:
        doc = parse_xml(xml)
    except BadXml as e:
        report.add(where, f"annotation file {e}; skipped")
        report.count("annotation_files_skipped")
        return None
    if doc.tag != "annotation":
        report.add(where, f"not a Pascal VOC file (root element {quote(doc.tag, 40)}); skipped")
        report.count("annotation_files_skipped")
        return None
    fname = text_of(doc, "filename")
    path = _find_image(xml, fname, index)
    name = path.name if path is not None else (fname or xml.stem)
    shown = f"{where} ({quote(name, 80)})" if path is None or path.stem != xml.stem else where
    im = RawImage(
        path, name, splits.get(path.stem if path else xml.stem), True, shown, _size(doc, where, report)
    )
    for n, obj in enumerate(doc.iter("object"), start=1):
        box = _box(obj, f"{where}#object {n}", cats, report, im)
        if box is not None:
            im.boxes.append(box)
    return im


def _size(doc: Element, where: str, report: ImportReport) -> tuple[float, float] | None:
    size = doc.find("size")
    if size is None:
        return None
    w, h = number(text_of(size, "width")), number(text_of(size, "height"))
    if w is None or h is None or w <= 0 or h <= 0:
        if (w, h) != (0, 0):  # 0x0 is what some exporters write when they do not know
            report.add(
                where, "<size> is missing or not positive numbers; the image's own size is used", "warning"
            )
        return None
    return w, h


def _box(
    obj: Element, where: str, cats: dict[str, RawCategory], report: ImportReport, im: RawImage
) -> RawBox | None:
    label = text_of(obj, "name")
    bad = class_name_problem(label) if label is not None else "is missing"
    if bad is not None:
        return skip_box(report, im, where, f"object <name> {bad}")
    bb = obj.find("bndbox")
    if bb is None:
        why = "has a <polygon>, not a <bndbox>" if obj.find("polygon") is not None else "has no <bndbox>"
        return skip_box(report, im, where, f"object {quote(label, 60)} {why}")
    vals = [number(text_of(bb, k)) for k in ("xmin", "ymin", "xmax", "ymax")]
    if any(v is None for v in vals):
        return skip_box(report, im, where, "<bndbox> needs numeric xmin, ymin, xmax and ymax")
    x0, y0, x1, y1 = vals
    cats.setdefault(label, RawCategory(label))
    for flag in FLAGS:
        if text_of(obj, flag) in {"1", "true", "True"}:
            report.count(f"boxes_{flag}")
    return RawBox(label, x0, y0, x1 - x0, y1 - y0, f"{where} of {quote(im.name, 80)}")


def _count_flags(ds: RawDataset, report: ImportReport) -> None:
    flagged = [f for f in FLAGS if report.counts[f"boxes_{f}"]]
    if flagged:
        report.add(
            "Pascal VOC",
            "boxes marked "
            + ", ".join(f"{f} ({report.counts['boxes_' + f]})" for f in flagged)
            + " are imported as ordinary boxes (the flags are counted, not stored)",
            "warning",
        )
