"""YOLO reader: ``data.yaml`` (``names`` as list or dict) with images/labels per split.

Both common layouts are found: ``images/train`` + ``labels/train`` (Ultralytics) and ``train/images`` +
``train/labels`` (Roboflow). The split paths in the yaml are tried relative to ``path``, to the yaml's
folder and with Roboflow's ``../`` prefix removed, then the layouts are discovered on disk. A label
file belongs to an image by replacing the last ``images`` folder with ``labels`` and the suffix with
``.txt``. A missing/invalid ``names`` is fatal (class ids would be meaningless); bad lines are skipped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from studio.services.data.importing.formats.common import (
    SPLIT_ALIASES,
    RawBox,
    RawCategory,
    RawDataset,
    RawImage,
    abort,
    inside,
    list_files,
    rel,
    split_images,
)
from studio.services.data.importing.report import ImportReport

YAML_KEYS = ("train", "val", "valid", "test")


def find_yaml(root: Path) -> Path | None:
    """``data*.yaml`` first (like Ultralytics and RF-DETR), else the only yaml in the folder."""
    yamls = sorted(p for p in root.iterdir() if p.suffix.lower() in {".yaml", ".yml"} and p.is_file())
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
        for img in split_images(list_files(img_dir), report, root):
            ds.images.append(_read_image(img, img_dir, split, names, root, report))
        _report_orphan_labels(img_dir, root, report)
    return ds


def _load_yaml(path: Path, root: Path, report: ImportReport) -> dict[str, Any]:
    name = rel(path, root)
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise abort(report, name, f"bad YAML in {name}: {str(e).splitlines()[0]}") from None
    except (UnicodeDecodeError, OSError) as e:
        raise abort(report, name, f"cannot read {name}: {e}") from None
    if not isinstance(cfg, dict):
        raise abort(report, name, f"{name} is not a YOLO dataset file (expected a mapping with 'names')")
    return cfg


def _names(cfg: dict, path: Path, root: Path, report: ImportReport) -> dict[int, str]:
    name = rel(path, root)
    raw = cfg.get("names")
    if raw is None:
        raise abort(report, name, f"{name} has no 'names' (the list of class names)")
    if isinstance(raw, list):
        items = list(enumerate(raw))
    elif isinstance(raw, dict):
        try:
            items = [(int(k), v) for k, v in raw.items()]
        except (TypeError, ValueError):
            raise abort(report, name, f"{name}: 'names' keys must be class ids (integers)") from None
    else:
        raise abort(report, name, f"{name}: 'names' must be a list or a mapping of id to name")
    out: dict[int, str] = {}
    for k, v in items:
        if k < 0 or v is None or isinstance(v, list | dict) or not str(v).strip():
            raise abort(report, name, f"{name}: class {k} has no valid name ({v!r})")
        if str(v).strip() in out.values():
            raise abort(report, name, f"{name}: class name '{v}' appears twice in 'names'")
        out[k] = str(v).strip()
    if not out:
        raise abort(report, name, f"{name}: 'names' is empty")
    nc = cfg.get("nc")
    if nc is not None and nc != len(out):
        report.add(name, f"'nc' is {nc!r} but 'names' lists {len(out)} classes; 'names' is used", "warning")
    return out


def _categories(names: dict[int, str], cfg: dict) -> list[RawCategory]:
    """Classes from ``names``; our own exports add ``supercategories`` (name -> parent) for the tree."""
    sc = cfg.get("supercategories")
    sc = {str(k): str(v) for k, v in sc.items()} if isinstance(sc, dict) else {}
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
        stripped = val
        while stripped.startswith("../"):
            stripped = stripped[3:]
        for cand in (base / val, yaml_path.parent / val, yaml_path.parent / stripped):
            if cand.is_dir() and inside(root, cand):
                found[SPLIT_ALIASES[key]] = cand
                break
        else:
            report.add(
                rel(yaml_path, root),
                f"'{key}: {val}' is not a folder inside the dataset; looking for the usual layouts",
                "warning",
            )
    for key, split in SPLIT_ALIASES.items():
        if split in found or key not in YAML_KEYS:
            continue
        for cand in (root / "images" / key, root / key / "images"):
            if cand.is_dir():
                found[split] = cand
                break
    return sorted(found.items(), key=lambda kv: ("train", "valid", "test").index(kv[0]))


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
    raw = RawImage(path=img, name=rel(img, img_dir), split=split, labeled=lbl.is_file(), where=rel(img, root))
    if not raw.labeled:
        return raw
    where = rel(lbl, root)
    try:
        text = lbl.read_text(encoding="utf-8-sig")  # tolerate a BOM from Windows editors
    except (UnicodeDecodeError, OSError) as e:
        report.add(where, f"cannot read label file ({e}); image imported unlabeled")
        raw.labeled = False
        return raw
    for n, line in enumerate(text.splitlines(), start=1):
        box = _parse_line(line, f"{where}:{n}", names, report)
        if box is not None:
            raw.boxes.append(box)
    return raw


def _parse_line(line: str, where: str, names: dict[int, str], report: ImportReport) -> RawBox | None:
    cols = line.split()
    if not cols:
        return None
    if len(cols) != 5:
        return _skip(report, where, f"expected 5 columns (class cx cy w h), got {len(cols)}")
    try:
        vals = [float(c) for c in cols]
    except ValueError:
        return _skip(report, where, f"not a number in '{line.strip()[:60]}'")
    cls = vals[0]
    if not math.isfinite(cls) or cls != int(cls):
        return _skip(report, where, f"class id '{cols[0]}' is not an integer")
    if int(cls) not in names:
        return _skip(report, where, f"unknown class id {int(cls)} (names has {len(names)} classes)")
    return RawBox(names[int(cls)], vals[1], vals[2], vals[3], vals[4], where, normalized=True)


def _skip(report: ImportReport, where: str, reason: str) -> None:
    report.add(where, reason + "; box skipped")
    report.count("boxes_skipped")
    return None


def _report_orphan_labels(img_dir: Path, root: Path, report: ImportReport) -> None:
    lbl_dir = label_path(img_dir / "x.jpg", root).parent
    if lbl_dir == img_dir or not lbl_dir.is_dir():
        return
    stems = {p.relative_to(img_dir).with_suffix("") for p in list_files(img_dir)}
    for lbl in list_files(lbl_dir):
        if lbl.suffix == ".txt" and lbl.relative_to(lbl_dir).with_suffix("") not in stems:
            report.add(rel(lbl, root), "label file has no matching image; skipped", "warning")
