"""COCO reader: the Roboflow layout (``<split>/_annotations.coco.json``) and plain COCO json files.

Category ids are kept as ``source_id`` (0- or 1-based, sparse, whatever the file says) and resolved to
names here, so two split files that number the same class differently still agree. Structure that
makes the mapping ambiguous (duplicate image or category ids, a file that is not COCO) is fatal;
anything that only affects one image or box is reported and skipped.

Every value is type-checked before it is used or quoted (``studio.text.quote`` shows at most a short
prefix): the file may be hostile (a 2**63 id, a 5000-character file name, a bbox of strings, JSON nested
thousands deep), and each such case gets its own message instead of a crash further down.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from studio.services.data.importing import limits
from studio.services.data.importing.formats.common import (
    RawBox,
    RawCategory,
    RawDataset,
    RawImage,
    abort,
    class_name_problem,
    id_problem,
    inside,
    is_regular_file,
    list_files,
    rel,
    skip_box,
)
from studio.services.data.importing.image_check import is_image_name
from studio.services.data.importing.report import ImportReport
from studio.text import quote

ROBOFLOW_JSON = "_annotations.coco.json"
ROBOFLOW_SPLITS = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}


def roboflow_files(root: Path) -> list[tuple[Path, str]]:
    """(json, split) pairs of a Roboflow-layout dataset, empty when ``root`` is not one."""
    found = []
    for folder, split in ROBOFLOW_SPLITS.items():
        p = root / folder / ROBOFLOW_JSON
        if is_regular_file(p):
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
    if not is_regular_file(path):
        raise abort(report, name, f"{name} is not a regular file (a link, pipe or device); not read")
    if path.stat().st_size > limits.MAX_JSON_BYTES:
        raise abort(
            report, name, f"{name} is over {limits.size_text(limits.MAX_JSON_BYTES)} (limit per file)"
        )
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise abort(
            report, name, f"bad JSON in {name}: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except UnicodeDecodeError:
        raise abort(report, name, f"{name} is not UTF-8 text") from None
    except RecursionError:
        raise abort(report, name, f"bad JSON in {name}: nested too deeply to be a COCO file") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise abort(report, name, f"bad JSON in {name}: {str(e)[:120]}") from None
    except OSError as e:
        raise abort(report, name, f"cannot read {name}: {e.strerror or type(e).__name__}") from None
    _check_structure(data, name, report)
    return data


def _check_structure(data: Any, name: str, report: ImportReport) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise abort(report, name, f"{name} is not a COCO file (no 'images' list)")
    for key in ("annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise abort(report, name, f"{name}: '{key}' must be a list")
    if data.get("annotations") and "categories" not in data:
        raise abort(report, name, f"{name} has annotations but no 'categories' list")
    if len(data.get("categories", [])) > limits.MAX_CLASSES:
        raise abort(
            report,
            name,
            f"{name} lists {len(data['categories']):,} categories (limit {limits.MAX_CLASSES:,})",
        )


def _categories(
    data: dict, path: Path, root: Path, report: ImportReport, seen: dict[str, RawCategory]
) -> dict[int, str]:
    name = rel(path, root)
    by_id: dict[int, str] = {}
    names: set[str] = set()
    for i, c in enumerate(data.get("categories", [])):
        if (
            not isinstance(c, dict)
            or id_problem(c.get("id")) is not None
            or not isinstance(c.get("name"), str)
        ):
            why = id_problem(c.get("id")) if isinstance(c, dict) else None
            raise abort(
                report,
                name,
                f"{name}: category #{i} needs an integer 'id' and a non-empty 'name'"
                + (f" (its id {why})" if why and "range" in why else ""),
            )
        bad = class_name_problem(c["name"])
        if bad is not None:
            raise abort(report, name, f"{name}: the name of category #{i} {bad}")
        cid, cname = c["id"], c["name"].strip()
        if cid in by_id:
            raise abort(
                report, name, f"{name}: duplicate category id {cid} ({quote(by_id[cid])} and {quote(cname)})"
            )
        if cname in names:
            report.add(
                name, f"category name {quote(cname)} is used by two ids; their boxes are merged", "warning"
            )
        by_id[cid] = cname
        names.add(cname)
        sc = c.get("supercategory")
        if cname not in seen:
            parent = sc.strip() if isinstance(sc, str) and class_name_problem(sc) is None else None
            if isinstance(sc, str) and parent is None and sc.strip():
                report.add(
                    name, f"supercategory of {quote(cname)} {class_name_problem(sc)}; ignored", "warning"
                )
            seen[cname] = RawCategory(cname, parent, cid)
    return by_id


def _images(
    data: dict, path: Path, root: Path, split: str | None, report: ImportReport
) -> dict[Any, RawImage]:
    name = rel(path, root)
    out: dict[Any, RawImage | None] = {}
    for i, im in enumerate(data["images"]):
        iid = im.get("id") if isinstance(im, dict) else None
        if not isinstance(iid, int | str) or isinstance(iid, bool):
            _skip_image(report, name, f"image entry #{i} has no valid 'id'")
            continue
        if iid in out:
            raise abort(report, name, f"{name}: duplicate image id {quote(iid)}; boxes cannot be assigned")
        out[iid] = None  # reserved: its boxes are reported with the image, not misassigned
        fname = im.get("file_name")
        bad = _file_name_problem(fname)
        if bad is not None:
            _skip_image(report, name, f"image id {quote(iid)} {bad}")
            continue
        out[iid] = RawImage(
            path=_resolve(path.parent, root, fname),
            name=fname,
            split=split,
            labeled=True,
            where=f"{name}#image {quote(iid, 40)} ({quote(fname, 80)})",
            declared_size=_declared_size(im, name, iid, report),
        )
    return {k: v for k, v in out.items() if v is not None}


def _skip_image(report: ImportReport, where: str, reason: str) -> None:
    report.add(where, reason + "; skipped")
    report.count("images_skipped")


def _file_name_problem(fname: object) -> str | None:
    if not isinstance(fname, str) or not fname.strip():
        return "has no 'file_name'"
    if len(fname) > limits.MAX_FILE_NAME_CHARS:
        return f"has a file name of {len(fname):,} characters (limit {limits.MAX_FILE_NAME_CHARS})"
    if "\x00" in fname:
        return f"has a NUL character in its file name {quote(fname)}"
    return None


def _declared_size(im: dict, name: str, iid: Any, report: ImportReport) -> tuple[float, float] | None:
    w, h = im.get("width"), im.get("height")
    if w is None and h is None:
        return None
    ok = all(_number(v) is not None and _number(v) > 0 for v in (w, h))
    if not ok:
        report.add(
            name,
            f"image id {quote(iid)} has invalid width/height ({quote(w)}, {quote(h)}); the file's size is used",
            "warning",
        )
        return None
    return float(w), float(h)


def _number(v: object) -> float | None:
    """``v`` as a finite float when it is a JSON number (not a bool, not text), else None."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _resolve(json_dir: Path, root: Path, fname: str) -> Path | None:
    """The image named by ``fname``: next to the json, in ``images/``, or None (basename search later).

    A candidate counts when its real folder (links resolved) is inside the dataset; the file itself is
    not followed here, so a symlink or pipe is reported by the image check instead of being opened.
    """
    for cand in (json_dir / fname, json_dir / "images" / fname, root / fname):
        try:
            if os.path.lexists(cand) and not cand.is_dir() and inside(root, cand):
                if inside(_real(str(root)), Path(_real(str(cand.parent))) / cand.name):
                    return cand
        except (OSError, ValueError):  # a name too long for the file system, an odd character
            continue
    return None


@lru_cache(maxsize=4096)
def _real(path: str) -> str:
    return os.path.realpath(path)


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
        aid = a.get("id", i) if isinstance(a, dict) else i
        where = f"{name}#annotation {quote(aid, 40)}"
        if not isinstance(a, dict):
            _skip(report, where, "annotation is not an object")
            continue
        if isinstance(aid, int | str) and "id" in a:
            if aid in seen_ids:
                report.add(where, f"duplicate annotation id {quote(aid)}; both boxes kept", "warning")
            seen_ids.add(aid)
        box = _box(a, where, by_id, images, report)
        if box is not None:
            images[a["image_id"]].boxes.append(box)


def _box(
    a: dict, where: str, by_id: dict[int, str], images: dict[Any, RawImage], report: ImportReport
) -> RawBox | None:
    iid = a.get("image_id")
    image = images.get(iid) if isinstance(iid, int | str) and not isinstance(iid, bool) else None
    if image is None:
        return _skip(report, where, f"refers to unknown image id {quote(iid)}")
    where = f"{quote(image.name, 80)} ({where})"  # the user's image file first, then where in the json
    cid = a.get("category_id")
    if id_problem(cid) is not None or cid not in by_id:
        return skip_box(report, image, where, f"unknown category id {quote(cid)}")
    bbox = a.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        return skip_box(report, image, where, f"'bbox' must be a list of 4 numbers, got {quote(bbox)}")
    for v in bbox:
        kind = _not_a_number(v)
        if kind is not None:
            return skip_box(report, image, where, f"'bbox' has non-numbers ({quote(v)} is {kind})")
    x, y, w, h = (float(v) for v in bbox)
    return RawBox(by_id[cid], x, y, w, h, where)


def _not_a_number(v: object) -> str | None:
    """Why a bbox value is refused; NaN and infinity pass on to ``fix_box``, which says so."""
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, str):
        return "text"
    if isinstance(v, float) or (isinstance(v, int) and abs(v) < 1e300):
        return None
    return "too large" if isinstance(v, int) else "not a number"


def _skip(report: ImportReport, where: str, reason: str) -> None:
    report.add(where, reason + "; box skipped")
    report.count("boxes_skipped")
