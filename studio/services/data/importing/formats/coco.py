"""COCO reader: the Roboflow layout (``<split>/_annotations.coco.json``) and plain COCO json files.

Category ids are kept as ``source_id`` (0- or 1-based, sparse, whatever the file says) and resolved to
names here, so two split files that number the same class differently still agree. Structure that
makes the mapping ambiguous (duplicate image or category ids, a file that is not COCO) is fatal;
anything that only affects one image or box is reported and skipped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from studio.services.data.importing.formats.common import (
    RawBox,
    RawCategory,
    RawDataset,
    RawImage,
    abort,
    inside,
    list_files,
    rel,
)
from studio.services.data.importing.image_check import is_image_name
from studio.services.data.importing.report import ImportReport

ROBOFLOW_JSON = "_annotations.coco.json"
ROBOFLOW_SPLITS = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}


def roboflow_files(root: Path) -> list[tuple[Path, str]]:
    """(json, split) pairs of a Roboflow-layout dataset, empty when ``root`` is not one."""
    found = []
    for folder, split in ROBOFLOW_SPLITS.items():
        p = root / folder / ROBOFLOW_JSON
        if p.is_file():
            found.append((p, split))
    return found


def read_coco(root: Path, files: list[tuple[Path, str | None]], report: ImportReport, fmt: str) -> RawDataset:
    """Parse every json in ``files`` (each with the split its images belong to)."""
    ds = RawDataset(format=fmt)
    seen_cats: dict[str, RawCategory] = {}
    index: dict[str, list[Path]] | None = None
    for json_path, split in files:
        data = _load_json(json_path, root, report)
        by_id = _categories(data, json_path, root, report, seen_cats)
        images = _images(data, json_path, root, split, report)
        if any(im.path is None for im in images.values()) and index is None:
            index = _basename_index(root)
        for im in images.values():
            if im.path is None:
                im.path = _find_by_basename(index or {}, im.name)
        _annotations(data, json_path, root, by_id, images, report)
        ds.images.extend(images.values())
    ds.categories = list(seen_cats.values())
    return ds


def _load_json(path: Path, root: Path, report: ImportReport) -> dict[str, Any]:
    name = rel(path, root)
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise abort(
            report, name, f"bad JSON in {name}: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except UnicodeDecodeError:
        raise abort(report, name, f"{name} is not UTF-8 text") from None
    except OSError as e:
        raise abort(report, name, f"cannot read {name}: {e.strerror or e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise abort(report, name, f"{name} is not a COCO file (no 'images' list)")
    for key in ("annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise abort(report, name, f"{name}: '{key}' must be a list")
    if data.get("annotations") and "categories" not in data:
        raise abort(report, name, f"{name} has annotations but no 'categories' list")
    return data


def _is_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _categories(
    data: dict, path: Path, root: Path, report: ImportReport, seen: dict[str, RawCategory]
) -> dict[int, str]:
    name = rel(path, root)
    by_id: dict[int, str] = {}
    for i, c in enumerate(data.get("categories", [])):
        if (
            not isinstance(c, dict)
            or not _is_id(c.get("id"))
            or not isinstance(c.get("name"), str)
            or not c["name"].strip()
        ):
            raise abort(report, name, f"{name}: category #{i} needs an integer 'id' and a non-empty 'name'")
        cid, cname = c["id"], c["name"].strip()
        if cid in by_id:
            raise abort(report, name, f"{name}: duplicate category id {cid} ('{by_id[cid]}' and '{cname}')")
        if cname in by_id.values():
            report.add(name, f"category name '{cname}' is used by two ids; their boxes are merged", "warning")
        by_id[cid] = cname
        sc = c.get("supercategory")
        if cname not in seen:
            seen[cname] = RawCategory(cname, sc if isinstance(sc, str) else None, cid)
    return by_id


def _images(
    data: dict, path: Path, root: Path, split: str | None, report: ImportReport
) -> dict[Any, RawImage]:
    name = rel(path, root)
    out: dict[Any, RawImage] = {}
    for i, im in enumerate(data["images"]):
        if (
            not isinstance(im, dict)
            or not isinstance(im.get("id"), int | str)
            or isinstance(im.get("id"), bool)
        ):
            report.add(name, f"image entry #{i} has no valid 'id'; skipped")
            report.count("images_skipped")
            continue
        iid, fname = im["id"], im.get("file_name")
        if iid in out:
            raise abort(report, name, f"{name}: duplicate image id {iid!r}; boxes cannot be assigned")
        if not isinstance(fname, str) or not fname.strip():
            report.add(name, f"image id {iid!r} has no 'file_name'; skipped")
            report.count("images_skipped")
            out[iid] = None  # keeps the id reserved so its boxes are reported, not misassigned
            continue
        out[iid] = RawImage(
            path=_resolve(path.parent, root, fname),
            name=fname,
            split=split,
            labeled=True,
            where=f"{name}#image {iid}",
            declared_size=_declared_size(im, name, iid, report),
        )
    for iid in [k for k, v in out.items() if v is None]:
        del out[iid]
    return out


def _declared_size(im: dict, name: str, iid: Any, report: ImportReport) -> tuple[float, float] | None:
    w, h = im.get("width"), im.get("height")
    if w is None and h is None:
        return None
    ok = all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in (w, h)
    )
    if not ok:
        report.add(
            name,
            f"image id {iid!r} has invalid width/height ({w!r}, {h!r}); the file's size is used",
            "warning",
        )
        return None
    return float(w), float(h)


def _resolve(json_dir: Path, root: Path, fname: str) -> Path | None:
    """The image named by ``fname``: next to the json, in ``images/``, or None (basename search later)."""
    for cand in (json_dir / fname, json_dir / "images" / fname, root / fname):
        if cand.is_file() and inside(root, cand):
            return cand
    return None


def _basename_index(root: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for p in list_files(root):
        if is_image_name(p):
            index.setdefault(p.name, []).append(p)
    return index


def _find_by_basename(index: dict[str, list[Path]], fname: str) -> Path | None:
    hits = index.get(Path(fname.replace("\\", "/")).name, [])
    return hits[0] if len(hits) == 1 else None


def _annotations(
    data: dict,
    path: Path,
    root: Path,
    by_id: dict[int, str],
    images: dict[Any, RawImage],
    report: ImportReport,
) -> None:
    name = rel(path, root)
    seen_ids: set[Any] = set()
    for i, a in enumerate(data.get("annotations", [])):
        where = f"{name}#annotation {a.get('id', i) if isinstance(a, dict) else i}"
        if not isinstance(a, dict):
            _skip(report, where, "annotation is not an object")
            continue
        aid = a.get("id")
        if aid is not None and not isinstance(aid, list | dict):
            if aid in seen_ids:
                report.add(where, f"duplicate annotation id {aid!r}; both boxes kept", "warning")
            seen_ids.add(aid)
        image = images.get(a.get("image_id")) if not isinstance(a.get("image_id"), list | dict) else None
        if image is None:
            _skip(report, where, f"refers to unknown image id {a.get('image_id')!r}")
            continue
        cid = a.get("category_id")
        if not _is_id(cid) or cid not in by_id:
            _skip(report, where, f"unknown category id {cid!r}")
            continue
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            _skip(report, where, f"'bbox' must be a list of 4 numbers, got {str(bbox)[:60]}")
            continue
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            _skip(report, where, f"'bbox' has non-numbers: {str(bbox)[:60]}")
            continue
        image.boxes.append(RawBox(by_id[cid], x, y, w, h, where))


def _skip(report: ImportReport, where: str, reason: str) -> None:
    report.add(where, reason + "; box skipped")
    report.count("boxes_skipped")
