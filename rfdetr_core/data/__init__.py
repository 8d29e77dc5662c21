"""Datasets, augmentation and batching for RF-DETR training and evaluation.

``build_dataset(dataset_dir, split, resolution, augment_config)`` is the entry point: it detects
whether the folder is a COCO (Roboflow) or YOLO dataset, takes the class list from the train split,
and returns a ``torch`` dataset whose samples are ``(normalised image tensor, target dict)``.
``validate_dataset`` opens every split up front so a broken dataset fails before training.
"""

from __future__ import annotations

from pathlib import Path

from rfdetr_core.data.aug_config import augment_config_from_train_kwargs, train_kwargs_from_augment_config
from rfdetr_core.data.classes import (
    ClassMap,
    detect_num_classes,
    load_class_map,
    load_class_names,
)
from rfdetr_core.data.coco import CocoDetectionDataset
from rfdetr_core.data.collate import NestedTensor, collate, make_collate_fn, resize_batch
from rfdetr_core.data.errors import DatasetError
from rfdetr_core.data.layout import (
    COCO_ANNOTATION_FILE,
    coco_split_dir,
    detect_format,
    find_yolo_data_file,
    normalise_split,
    read_yolo_data_file,
    yolo_split_dirs,
)
from rfdetr_core.data.transforms import AugmentConfig, AugmentPipeline, multi_scale_sizes
from rfdetr_core.data.yolo import YoloDetectionDataset

DetectionDataset = CocoDetectionDataset | YoloDetectionDataset

__all__ = [
    "AugmentConfig",
    "AugmentPipeline",
    "ClassMap",
    "CocoDetectionDataset",
    "DatasetError",
    "DetectionDataset",
    "NestedTensor",
    "YoloDetectionDataset",
    "augment_config_from_train_kwargs",
    "build_dataset",
    "collate",
    "detect_format",
    "detect_num_classes",
    "load_class_map",
    "load_class_names",
    "make_collate_fn",
    "open_split",
    "multi_scale_sizes",
    "resize_batch",
    "train_kwargs_from_augment_config",
    "validate_dataset",
]


def open_split(dataset_dir: str | Path, split: str, transforms=None) -> DetectionDataset:
    """Open one split without choosing transforms (``transforms=None`` yields PIL images + pixel boxes)."""
    root = Path(dataset_dir)
    name = normalise_split(split)
    shown = {"train": "train", "val": "valid", "test": "test"}[name]  # the folder name people see
    class_map = load_class_map(root)
    if detect_format(root) == "coco":
        split_dir = coco_split_dir(root, name)
        if not (split_dir / COCO_ANNOTATION_FILE).is_file():
            raise DatasetError(f"The {shown} split is missing: expected {split_dir / COCO_ANNOTATION_FILE}.")
        return CocoDetectionDataset(split_dir, class_map, transforms)
    data_file = find_yolo_data_file(root)
    assert data_file is not None
    dirs = yolo_split_dirs(root, read_yolo_data_file(data_file), name)
    if dirs is None:
        raise DatasetError(
            f"The {shown} split of the YOLO dataset {root} is missing: declare it in {data_file.name} "
            f"or provide {shown}/images and {shown}/labels."
        )
    return YoloDetectionDataset(dirs.images, dirs.labels, class_map, transforms)


def build_dataset(
    dataset_dir: str | Path,
    split: str,
    resolution: int,
    augment_config: AugmentConfig | None = None,
    *,
    block_size: int = 32,
) -> DetectionDataset:
    """A ready-to-train split: augmentation for ``train``, a square resize for ``valid``/``test``.

    ``block_size`` is the model's ``patch_size * num_windows`` (32 for Nano/Small/Medium/Large,
    56 for Base); it sets the multi-scale training sizes.
    """
    train = normalise_split(split) == "train"
    pipeline = AugmentPipeline(augment_config, resolution, block_size, train=train)
    return open_split(dataset_dir, split, pipeline)


def validate_dataset(dataset_dir: str | Path, splits: tuple[str, ...] = ("train", "val")) -> ClassMap:
    """Open (and so check) the given splits; raise :class:`DatasetError` with a clear message if any is bad."""
    class_map = load_class_map(dataset_dir)
    for split in splits:
        dataset = open_split(dataset_dir, split)
        if len(dataset) == 0:
            raise DatasetError(f"The {split} split of {dataset_dir} contains no images.")
    return class_map
