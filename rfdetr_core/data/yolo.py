"""A split of a YOLO dataset: an image folder, a label folder with one ``.txt`` per image, ``data.yaml``.

Each label line is ``class cx cy w h`` (normalised to the image) or ``class x1 y1 x2 y2 x3 y3 ...``
(a polygon; its bounding box is used). Images without a label file are background images. Samples
come out in the same target format as :class:`rfdetr_core.data.coco.CocoDetectionDataset`, so the
same boxes annotated in either format train identically; ``image_id`` is the sample's position in
the (sorted) image list and ``area`` is the box area.

All label files are parsed when the split is opened, so a malformed line is reported with its file
and line number before training starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.ops import box_area

from rfdetr_core.data.classes import ClassMap
from rfdetr_core.data.errors import DatasetError
from rfdetr_core.data.layout import list_images
from rfdetr_core.ops.boxes import cxcywh_to_xyxy_np

Transform = Callable[[Image.Image, dict[str, Any]], tuple[Any, dict[str, Any]]]


@dataclass(frozen=True)
class YoloSample:
    """One image with its labels in pixel ``xyxy`` (not yet clipped)."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray  # [N, 4] float32
    labels: np.ndarray  # [N] int64


def _parse_line(values: list[str], where: str, num_classes: int) -> tuple[int, np.ndarray]:
    """Class id and normalised ``xyxy`` box of one label line."""
    if len(values) < 5 or (len(values) > 5 and (len(values) - 1) % 2):
        raise DatasetError(
            f"{where}: expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...', got {len(values)} fields."
        )
    try:
        class_id = int(values[0])
    except ValueError:
        raise DatasetError(f"{where}: class id {values[0]!r} is not an integer.") from None
    if not 0 <= class_id < num_classes:
        raise DatasetError(
            f"{where}: class id {class_id} is outside 0..{num_classes - 1} (data.yaml 'names')."
        )
    try:
        coords = [float(v) for v in values[1:]]
    except ValueError:
        raise DatasetError(f"{where}: coordinates must be numbers, got {' '.join(values[1:])!r}.") from None
    if len(coords) == 4:
        w, h = coords[2:]
        if w < 0 or h < 0:
            raise DatasetError(f"{where}: negative box width or height.")
        # Same arithmetic order as the reference, so both give bit-identical pixels.
        box = cxcywh_to_xyxy_np(np.array(coords)).astype(np.float32)
    else:
        points = np.array(coords, dtype=np.float32).reshape(-1, 2)
        box = np.array([*points.min(axis=0), *points.max(axis=0)], dtype=np.float32)
    return class_id, box


def read_yolo_sample(image_path: Path, labels_dir: Path, num_classes: int) -> YoloSample:
    """Read an image's size (header only) and parse its label file."""
    try:
        with Image.open(image_path) as image:
            width, height = image.size
    except OSError as exc:
        raise DatasetError(f"Could not open image {image_path}: {exc}") from exc
    label_path = labels_dir / f"{image_path.stem}.txt"
    boxes, labels = [], []
    if label_path.is_file():
        for number, line in enumerate(label_path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            class_id, box = _parse_line(line.split(), f"{label_path} line {number}", num_classes)
            boxes.append(box * np.array([width, height, width, height], dtype=np.float32))
            labels.append(class_id)
    return YoloSample(
        image_path,
        width,
        height,
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.array(labels, dtype=np.int64),
    )


class YoloDetectionDataset(Dataset):
    """One split of a YOLO dataset."""

    def __init__(
        self,
        images_dir: str | Path,
        labels_dir: str | Path,
        class_map: ClassMap,
        transforms: Transform | None = None,
    ) -> None:
        self.images_dir, self.labels_dir = Path(images_dir), Path(labels_dir)
        if not self.images_dir.is_dir():
            raise DatasetError(f"YOLO image folder {self.images_dir} does not exist.")
        self.class_map = class_map
        self.transforms = transforms
        paths = list_images(self.images_dir)
        self.samples = [read_yolo_sample(p, self.labels_dir, len(class_map)) for p in paths]

    @property
    def class_names(self) -> list[str]:
        return list(self.class_map.names)

    def __len__(self) -> int:
        return len(self.samples)

    def image_path(self, index: int) -> Path:
        return self.samples[index].path

    def load_image(self, index: int) -> Image.Image:
        with Image.open(self.samples[index].path) as image:
            return image.convert("RGB")

    def raw_target(self, index: int) -> dict[str, Any]:
        """Target in pixel ``xyxy``, clipped to the image, degenerate boxes dropped."""
        sample = self.samples[index]
        boxes = torch.from_numpy(sample.boxes.copy())
        boxes[:, 0::2].clamp_(min=0, max=sample.width)
        boxes[:, 1::2].clamp_(min=0, max=sample.height)
        keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
        boxes = boxes[keep]
        return {
            "boxes": boxes,
            "labels": torch.from_numpy(sample.labels.copy())[keep],
            "image_id": torch.as_tensor([index]),
            "area": box_area(boxes),
            "iscrowd": torch.zeros(len(boxes), dtype=torch.int64),
            "orig_size": torch.as_tensor([sample.height, sample.width]),
            "size": torch.as_tensor([sample.height, sample.width]),
        }

    def evaluation_target(self, index: int) -> dict[str, Any]:
        """Ground truth of a sample for COCO evaluation (YOLO has no crowd regions)."""
        return self.raw_target(index)

    def __getitem__(self, index: int):
        image = self.load_image(index)
        target = self.raw_target(index)
        if self.transforms is not None:
            return self.transforms(image, target)
        return image, target
