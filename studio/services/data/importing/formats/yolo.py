"""YOLO reader: ``data.yaml`` (``names`` as list or dict) with images/labels per split.

Both common layouts are found: ``images/train`` + ``labels/train`` (Ultralytics) and ``train/images`` +
``train/labels`` (Roboflow). The split paths in the yaml are tried relative to ``path``, to the yaml's
folder and with Roboflow's ``../`` prefix removed, then the layouts are discovered on disk. A label
file belongs to an image by replacing the last ``images`` folder with ``labels`` and the suffix with
``.txt``. A missing/invalid ``names`` is fatal (class ids would be meaningless); bad lines are skipped.

``yaml.safe_load`` keeps aliases shared, so a 300-byte alias bomb loads cheaply, but turning it into
text (``repr``/``str``) expands it into gigabytes. So every value is type-checked first and only short
quotes of scalars (``studio.text.quote``) ever reach a message.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from studio.services.data.importing import limits
from studio.services.data.importing.formats.common import (
    SPLIT_ALIASES,
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
    split_images,
)
from studio.services.data.importing.image_check import BadImage, read_regular_file
from studio.services.data.importing.report import ImportReport
from studio.text import quote

YAML_KEYS = ("train", "val", "valid", "test")


def find_yaml(root: Path) -> Path | None:
    """``data*.yaml`` first (like Ultralytics and RF-DETR), else the only yaml in the folder."""
    yamls = sorted(p for p in root.iterdir() if p.suffix.lower() in {".yaml", ".yml"} and is_regular_file(p))
    preferred = [p for p in yamls if p.name.lower().startswith("data")]
    if preferred:
        return preferred[0]
    return yamls[0] if len(yamls) == 1 else None


def read_yolo(root: Path, yaml_path: Path, report: ImportReport) -> RawDataset:
    cfg = _load_yaml(yaml_path, root, report)
    names = _names(cfg, yaml_path, root, report)
    ds = RawDataset(format="yolo", categories=_categories(names, cfg))
    split_dirs = _split_dirs(cfg, yaml_path, root, report)
    if not split_dirs:
        raise abort(
            report,
            rel(yaml_path, root),
            "no image folders found for train/val/test (checked data.yaml and the usual layouts)",
        )
    for split, img_dir in split_dirs:
        for img in split_images(list_files(img_dir, report, root), report, root):
            ds.images.append(_read_image(img, img_dir, split, names, root, report))
        _report_orphan_labels(img_dir, root, report)
    return ds


def _load_yaml(path: Path, root: Path, report: ImportReport) -> dict[str, Any]:
    name = rel(path, root)
    try:
        text = read_regular_file(path, limits.MAX_YAML_BYTES).decode("utf-8")
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise abort(report, name, f"bad YAML in {name}: {str(e).splitlines()[0][:200]}") from None
    except RecursionError:
        raise abort(report, name, f"bad YAML in {name}: nested too deeply") from None
    except UnicodeDecodeError:
        raise abort(report, name, f"cannot read {name}: it is not UTF-8 text") from None
    except BadImage as e:  # not a regular file, or too big
        raise abort(report, name, f"cannot read {name}: {e}") from None
    if not isinstance(cfg, dict):
        raise abort(report, name, f"{name} is not a YOLO dataset file (expected a mapping with 'names')")
    return cfg


def _names(cfg: dict, path: Path, root: Path, report: ImportReport) -> dict[int, str]:
    name = rel(path, root)
    items = _name_items(cfg.get("names"), name, report)
    if len(items) > limits.MAX_CLASSES:
        raise abort(
            report, name, f"{name}: 'names' lists {len(items):,} classes (limit {limits.MAX_CLASSES:,})"
        )
    out: dict[int, str] = {}
    taken: set[str] = set()
    for k, v in items:
        if k < 0:
            raise abort(report, name, f"{name}: class id {k} is negative")
        bad = class_name_problem(v)
        if bad is not None:
            raise abort(report, name, f"{name}: class {k} has no valid name (it {bad})")
        text = str(v).strip()
        if text in taken:
            raise abort(report, name, f"{name}: class name {quote(text)} appears twice in 'names'")
        out[k] = text
        taken.add(text)
    if not out:
        raise abort(report, name, f"{name}: 'names' is empty")
    nc = cfg.get("nc")
    if nc is not None and nc != len(out):
        report.add(
            name, f"'nc' is {quote(nc)} but 'names' lists {len(out)} classes; 'names' is used", "warning"
        )
    return out


def _name_items(raw: object, name: str, report: ImportReport) -> list[tuple[int, object]]:
    """``names`` as (id, value) pairs: a list, or a mapping whose keys are integer ids."""
    if raw is None:
        raise abort(report, name, f"{name} has no 'names' (the list of class names)")
    if isinstance(raw, list):
        return list(enumerate(raw))
    if not isinstance(raw, dict):
        raise abort(report, name, f"{name}: 'names' must be a list or a mapping of id to name")
    items = []
    for k, v in raw.items():
        key = int(k) if isinstance(k, str) and k.strip().lstrip("-").isdigit() and len(k) < 20 else k
        if id_problem(key) is not None:
            raise abort(
                report,
                name,
                f"{name}: 'names' keys must be class ids (integers); {quote(k)} {id_problem(key)}",
            )
        items.append((key, v))
    return items


def _categories(names: dict[int, str], cfg: dict) -> list[RawCategory]:
    """Classes from ``names``; our own exports add ``supercategories`` (name -> parent) for the tree.
    Only string pairs that are valid class names are used (anything else is ignored, never formatted)."""
    raw = cfg.get("supercategories")
    sc: dict[str, str] = {}
    if isinstance(raw, dict):
        for k, v in list(raw.items())[: limits.MAX_CLASSES]:
            if (
                isinstance(k, str)
                and isinstance(v, str)
                and not class_name_problem(k)
                and not class_name_problem(v)
            ):
                sc[k.strip()] = v.strip()
    cats = [RawCategory(n, sc.get(n), i) for i, n in sorted(names.items())]
    listed = set(names.values())
    cats += [RawCategory(n, p, None) for n, p in sc.items() if n not in listed]
    return cats


def _split_dirs(cfg: dict, yaml_path: Path, root: Path, report: ImportReport) -> list[tuple[str, Path]]:
    base = yaml_path.parent
    if isinstance(cfg.get("path"), str):
        p = Path(cfg["path"])
        base = p if p.is_absolute() else yaml_path.parent / p
    found: dict[str, Path] = {}
    for key in YAML_KEYS:
        val = cfg.get(key)
        if not isinstance(val, str) or SPLIT_ALIASES[key] in found:
            continue
        stripped = re.sub(r"^(?:\.\./)+", "", val)
        for cand in (base / val, yaml_path.parent / val, yaml_path.parent / stripped):
            if _is_dataset_dir(root, cand):
                found[SPLIT_ALIASES[key]] = cand
                break
        else:
            report.add(
                rel(yaml_path, root),
                f"'{key}: {quote(val)}' is not a folder inside the dataset; looking for the usual layouts",
                "warning",
            )
    for key, split in SPLIT_ALIASES.items():
        if split in found or key not in YAML_KEYS:
            continue
        for cand in (root / "images" / key, root / key / "images"):
            if _is_dataset_dir(root, cand):
                found[split] = cand
                break
    return sorted(found.items(), key=lambda kv: ("train", "valid", "test").index(kv[0]))


def _is_dataset_dir(root: Path, cand: Path) -> bool:
    """A real folder inside the dataset once links are resolved (a linked folder could point anywhere)."""
    try:
        return cand.is_dir() and inside(os.path.realpath(root), Path(os.path.realpath(cand)))
    except (OSError, ValueError):
        return False


def label_path(img: Path, root: Path) -> Path:
    """``.../images/<rel>.jpg`` -> ``.../labels/<rel>.txt``; next to the image when no ``images`` folder.

    Only folders below the dataset root count (a user's own ``~/images/`` must not be rewritten).
    """
    parts = list(img.parts)
    for i in range(len(parts) - 2, len(Path(root).parts) - 1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return img.with_suffix(".txt")


def _read_image(
    img: Path, img_dir: Path, split: str, names: dict[int, str], root: Path, report: ImportReport
) -> RawImage:
    lbl = label_path(img, root)
    raw = RawImage(
        path=img, name=rel(img, img_dir), split=split, labeled=os.path.lexists(lbl), where=rel(img, root)
    )
    if not raw.labeled:
        return raw
    where = rel(lbl, root)
    try:
        text = read_regular_file(lbl, limits.MAX_LABEL_FILE_BYTES).decode("utf-8-sig")  # BOM: Windows editors
    except (UnicodeDecodeError, BadImage) as e:
        why = "it is not UTF-8 text" if isinstance(e, UnicodeDecodeError) else str(e)
        report.add(where, f"cannot read label file ({why}); image imported unlabeled")
        raw.labeled = False
        return raw
    for n, line in enumerate(text.splitlines(), start=1):
        box = _parse_line(line, f"{where}:{n}", names, report, raw)
        if box is not None:
            raw.boxes.append(box)
    return raw


def _parse_line(
    line: str, where: str, names: dict[int, str], report: ImportReport, image: RawImage | None = None
) -> RawBox | None:
    cols = line.split()
    if not cols:
        return None
    if len(cols) != 5:
        return skip_box(report, image, where, f"expected 5 columns (class cx cy w h), got {len(cols)}")
    try:
        vals = [float(c) for c in cols]
    except ValueError:
        return skip_box(report, image, where, f"not a number in {quote(line.strip(), 60)}")
    cls = vals[0]
    if not math.isfinite(cls) or cls != int(cls):
        return skip_box(report, image, where, f"class id {quote(cols[0], 40)} is not an integer")
    if int(cls) not in names:
        return skip_box(report, image, where, f"unknown class id {int(cls)} (names has {len(names)} classes)")
    return RawBox(names[int(cls)], vals[1], vals[2], vals[3], vals[4], where, normalized=True)


def _report_orphan_labels(img_dir: Path, root: Path, report: ImportReport) -> None:
    lbl_dir = label_path(img_dir / "x.jpg", root).parent
    if lbl_dir == img_dir or not lbl_dir.is_dir():
        return
    stems = {p.relative_to(img_dir).with_suffix("") for p in list_files(img_dir)}
    for lbl in list_files(lbl_dir):
        if lbl.suffix == ".txt" and lbl.relative_to(lbl_dir).with_suffix("") not in stems:
            report.add(rel(lbl, root), "label file has no matching image; skipped", "warning")
