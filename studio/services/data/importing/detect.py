"""Which format a dataset folder is in, in one documented order, and what else it holds.

Order (first match wins; the same order is in docs and in every "ignored" message):

1. COCO, Roboflow layout: ``train|valid|test/_annotations.coco.json``
2. COCO: ``_annotations.coco.json`` at the root
3. YOLO: a ``data*.yaml`` at the root
4. Pascal VOC layout: an ``Annotations/`` folder (at the root or up to two levels down)
5. CVAT for images 1.1: an ``.xml`` at the root whose root element is ``<annotations>``
6. COCO: ``.json`` files at the root or in ``annotations/``
7. LabelMe: ``.json`` files holding ``shapes``
8. Pascal VOC, flat: ``.xml`` files holding ``<annotation>`` next to their images
9. YOLO label files without a ``data.yaml`` (refused: the class names are unknown)
10. images without labels

Why an explicit list instead of "try each reader": a folder that holds two formats (a Roboflow export
with a VOC copy, LabelImg xmls next to a COCO json) must import the same one every time, and the user
must be told which one was used and which was ignored. Nothing found gets a message that names what
*was* found (annotations without images, label files without classes, videos).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from studio.services.data.importing.formats import voc
from studio.services.data.importing.formats.coco import ROBOFLOW_JSON, read_coco, roboflow_files
from studio.services.data.importing.formats.common import (
    RawDataset,
    abort,
    is_regular_file,
    list_files,
    rel,
    split_from_name,
)
from studio.services.data.importing.formats.cvat import read_cvat
from studio.services.data.importing.formats.labelme import is_labelme, read_labelme
from studio.services.data.importing.formats.loose import read_loose
from studio.services.data.importing.formats.xml_safe import xml_root_tag
from studio.services.data.importing.formats.yolo import find_yaml, read_yolo
from studio.services.data.importing.image_check import is_image_name
from studio.services.data.importing.report import ImportReport

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
YOLO_NO_YAML = "YOLO label files found but no data.yaml with the class 'names'"


@dataclass
class Candidate:
    name: str  # "Pascal VOC"
    what: str  # what was seen: "Annotations/ with 12 .xml files"
    read: Callable[[], RawDataset]


def read_folder(root: Path, report: ImportReport) -> RawDataset:
    """Read ``root`` in the first matching format; warn about every other format found in it."""
    files = list_files(root)
    found = _candidates(root, report, files)
    if not found:
        raise abort(report, root.name, _nothing_found(root, files))
    chosen, rest = found[0], found[1:]
    for other in rest:
        report.add(
            rel(root, root.parent),
            f"also holds {other.name} ({other.what}); ignored: {chosen.name} comes first in the "
            f"detection order. Point the import at a folder with only the {other.name} files to import those",
            "warning",
        )
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        report.add(
            rel(videos[0], root),
            f"{len(videos)} video file(s) not imported: import each video file on its own to extract frames",
            "warning",
        )
    return chosen.read()


def _candidates(root: Path, report: ImportReport, files: list[Path]) -> list[Candidate]:
    out = _coco_yolo_candidates(root, report)
    base = voc.voc_root(root)
    if base is not None:
        n = sum(1 for p in files if p.suffix.lower() == ".xml" and p.parent == base / voc.VOC_ANNOTATIONS)
        out.append(
            Candidate(
                "Pascal VOC",
                f"{rel(base / voc.VOC_ANNOTATIONS, root)}/ with {n} .xml files",
                lambda: voc.read_voc(root, report, list_files(root, report, root)),
            )
        )
    out += _cvat_coco_labelme_candidates(root, report, files)
    inside_voc = base / voc.VOC_ANNOTATIONS if base is not None else None
    flat = voc.voc_xml_files([p for p in files if inside_voc is None or not p.is_relative_to(inside_voc)])
    if flat:
        out.append(
            Candidate(
                "Pascal VOC",
                f"{len(flat)} .xml files next to images",
                lambda: voc.read_voc(root, report, list_files(root, report, root), flat),
            )
        )
    if _looks_like_yolo(root) and not any(c.name == "YOLO" for c in out):
        out.append(
            Candidate(
                "YOLO",
                "labels/ with .txt files but no data.yaml",
                lambda: _refuse(report, root, YOLO_NO_YAML),
            )
        )
    if any(is_image_name(p) for p in files) and not out:
        out.append(Candidate("images", "", lambda: read_loose(root, report, files=list_files(root, report))))
    return out


def _cvat_coco_labelme_candidates(root: Path, report: ImportReport, files: list[Path]) -> list[Candidate]:
    out = []
    cvat = [
        p
        for p in files
        if p.parent == root and p.suffix.lower() == ".xml" and xml_root_tag(p) == "annotations"
    ]
    if cvat:
        out.append(
            Candidate(
                "CVAT for images",
                cvat[0].name,
                lambda: read_cvat(root, cvat[0], report, list_files(root, report, root)),
            )
        )
    jsons = [p for p in files if p.suffix.lower() == ".json"]
    labelme = [p for p in jsons if is_labelme(p)]
    coco = [
        p
        for p in jsons
        if p.parent in (root, root / "annotations") and p not in labelme and p.name != ROBOFLOW_JSON
    ]
    if coco:
        out.append(
            Candidate(
                "COCO",
                ", ".join(rel(p, root) for p in coco[:3]),
                lambda: read_coco(root, [(j, split_from_name(j.stem)) for j in coco], report, "coco"),
            )
        )
    if labelme:
        out.append(
            Candidate(
                "LabelMe",
                f"{len(labelme)} .json files with shapes",
                lambda: read_labelme(root, report, labelme, list_files(root, report, root)),
            )
        )
    return out


def _coco_yolo_candidates(root: Path, report: ImportReport) -> list[Candidate]:
    out = []
    rf = roboflow_files(root)
    if rf:
        out.append(
            Candidate(
                "COCO (Roboflow layout)",
                ", ".join(rel(p, root) for p, _ in rf),
                lambda: read_coco(root, rf, report, "coco-roboflow"),
            )
        )
    if is_regular_file(root / ROBOFLOW_JSON):
        out.append(
            Candidate(
                "COCO", ROBOFLOW_JSON, lambda: read_coco(root, [(root / ROBOFLOW_JSON, None)], report, "coco")
            )
        )
    yaml_path = find_yaml(root)
    if yaml_path is not None:
        out.append(Candidate("YOLO", yaml_path.name, lambda: read_yolo(root, yaml_path, report)))
    return out


def _refuse(report: ImportReport, root: Path, message: str) -> RawDataset:
    raise abort(report, root.name, message)


def _looks_like_yolo(root: Path) -> bool:
    candidates = [root / "labels", *(p / "labels" for p in root.iterdir() if p.is_dir())]
    return any(c.is_dir() and not c.is_symlink() and any(c.rglob("*.txt")) for c in candidates)


def _nothing_found(root: Path, files: list[Path]) -> str:
    """The message for a folder with nothing importable: name what is there."""
    by_suffix = [p.suffix.lower() for p in files]
    videos = sum(s in VIDEO_SUFFIXES for s in by_suffix)
    if videos:
        return (
            f"found {videos} video file(s) but no images: import a video file on its own (not its folder) "
            "to extract frames"
        )
    if by_suffix.count(".xml"):
        return f"found {by_suffix.count('.xml')} .xml files that are neither Pascal VOC nor CVAT annotations"
    if by_suffix.count(".json"):
        return f"found {by_suffix.count('.json')} .json files that are neither COCO nor LabelMe annotations"
    return "no images or annotations found"
