"""The class list of a dataset and the mapping from its category ids to model label indices.

The model has one output per class, indexed ``0..N-1``. COCO category ids are arbitrary (sparse,
1-based, or a Roboflow export's synthetic root category ``0``), so they are remapped to contiguous
indices. Getting this wrong never crashes -- it silently trains class *k* as class *k+1* -- so the
rules here follow the reference (``rfdetr`` 1.11) exactly:

* categories are ordered by ``id``;
* a category that is another category's ``supercategory`` (a grouping node such as Roboflow's root)
  is **not trained** unless an annotation uses it directly; a top-level class whose supercategory is
  its own name is not its own parent;
* label index = position in that filtered, ordered list, derived **once from the train split** and
  reused for ``valid``/``test`` so the three splits can never disagree;
* YOLO ids are already contiguous: ``names`` (a list, or a mapping with keys ``0..N-1``) is the list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rfdetr_core.data.errors import DatasetError
from rfdetr_core.data.layout import (
    COCO_ANNOTATION_FILE,
    coco_split_dir,
    detect_format,
    find_yolo_data_file,
    read_yolo_data_file,
)

# Values a COCO export uses to say "no parent".
PLACEHOLDER_SUPERCATEGORIES: frozenset[str | None] = frozenset({"", "none", "null", None})


@dataclass(frozen=True)
class ClassMap:
    """Class names in label order, with the source category id of every label."""

    names: tuple[str, ...]
    category_ids: tuple[int, ...]
    cat2label: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.category_ids):
            raise ValueError("names and category_ids must have the same length")
        object.__setattr__(self, "cat2label", {cid: i for i, cid in enumerate(self.category_ids)})

    @property
    def label2cat(self) -> dict[int, int]:
        """Label index -> source category id (what a COCO results file must contain)."""
        return dict(enumerate(self.category_ids))

    def __len__(self) -> int:
        return len(self.names)


def _category_id(category: dict[str, Any]) -> int | None:
    try:
        return int(category["id"])
    except (KeyError, TypeError, ValueError):
        return None


def _category_name(category: dict[str, Any], source: str) -> str:
    if "name" not in category:
        raise DatasetError(f"{source}: category {category.get('id', '?')} has no 'name'.")
    return str(category["name"])


def trainable_categories(
    categories: Sequence[dict[str, Any]], annotated_ids: Iterable[int] = (), source: str = "annotations"
) -> list[dict[str, Any]]:
    """Categories that get a model output, ordered by id (see the module docstring for the rules)."""
    ordered = sorted(categories, key=lambda c: (_category_id(c) is None, _category_id(c) or 0))
    parents = {
        c.get("supercategory", "none")
        for c in ordered
        if c.get("supercategory", "none") not in PLACEHOLDER_SUPERCATEGORIES
        and c.get("supercategory", "none") != c.get("name")
    }
    if not parents:
        return ordered
    annotated = {int(i) for i in annotated_ids}
    kept = [
        c for c in ordered if not (_category_name(c, source) in parents and _category_id(c) not in annotated)
    ]
    return kept or ordered  # every category a parent: keep them all rather than train nothing


def coco_class_map(annotations: dict[str, Any], source: str = "annotations") -> ClassMap:
    """Class map of one parsed COCO annotation file."""
    categories = annotations.get("categories")
    if not isinstance(categories, list) or not categories:
        raise DatasetError(f"{source} has no 'categories' list; a COCO file must declare its classes.")
    for category in categories:
        if not isinstance(category, dict) or _category_id(category) is None:
            raise DatasetError(f"{source}: every category needs an integer 'id', got {category!r}.")
    annotated = set()
    for ann in annotations.get("annotations", []) or []:
        try:
            annotated.add(int(ann["category_id"]))
        except (KeyError, TypeError, ValueError):
            continue  # reported with its position by the dataset loader
    kept = trainable_categories(categories, annotated, source)
    ids = [int(c["id"]) for c in kept]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{source}: category ids must be unique, got {sorted(ids)}.")
    return ClassMap(tuple(_category_name(c, source) for c in kept), tuple(ids))


def read_coco_file(path: Path) -> dict[str, Any]:
    """Parse a COCO annotation file with a message that names it when it is broken."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"Annotation file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"Could not parse the annotation file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path} must contain a JSON object with images, annotations and categories.")
    return data


def yolo_class_names(data: dict[str, Any], source: str = "data.yaml") -> list[str]:
    """``names`` of a YOLO data file, as a list indexed by class id."""
    names = data.get("names")
    if isinstance(names, list):
        if not names:
            raise DatasetError(f"{source}: 'names' is empty; list at least one class.")
        return [str(n) for n in names]
    if isinstance(names, dict):
        by_id: dict[int, str] = {}
        for key, value in names.items():
            text = str(key)
            if not (text.isascii() and text.isdigit()) or int(text) in by_id:
                raise DatasetError(f"{source}: 'names' keys must be the integers 0..N-1, got {list(names)}.")
            by_id[int(text)] = str(value)
        if sorted(by_id) != list(range(len(by_id))) or not by_id:
            raise DatasetError(
                f"{source}: 'names' keys must be the integers 0..N-1 without gaps, got {sorted(by_id)}."
            )
        return [by_id[i] for i in range(len(by_id))]
    raise DatasetError(f"{source} has no 'names' list of class names.")


def load_class_map(dataset_dir: str | Path) -> ClassMap:
    """Class map of a dataset folder, COCO or YOLO (auto-detected), from its train split."""
    root = Path(dataset_dir)
    if detect_format(root) == "coco":
        path = coco_split_dir(root, "train") / COCO_ANNOTATION_FILE
        return coco_class_map(read_coco_file(path), str(path))
    data_file = find_yolo_data_file(root)
    assert data_file is not None  # detect_format said YOLO
    names = yolo_class_names(read_yolo_data_file(data_file), str(data_file))
    return ClassMap(tuple(names), tuple(range(len(names))))


def load_class_names(dataset_dir: str | Path) -> list[str]:
    """Class names in label order -- what the reference's ``RFDETR._load_classes`` returns."""
    return list(load_class_map(dataset_dir).names)


def detect_num_classes(dataset_dir: str | Path) -> int:
    """Number of model outputs the dataset needs (same basis as the labels, so they cannot disagree)."""
    return len(load_class_map(dataset_dir))
