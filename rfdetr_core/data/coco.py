"""A split of a COCO (Roboflow layout) dataset: ``<split>/_annotations.coco.json`` + its images.

Samples come out as ``(image, target)`` where the target holds, like the reference's:

``boxes``      ``[N, 4]`` float32 -- ``xyxy`` pixels before the transforms, normalised ``cxcywh`` after
``labels``     ``[N]`` int64 -- contiguous label indices (see :mod:`rfdetr_core.data.classes`)
``image_id``   ``[1]`` int64 -- the COCO image id
``area``       ``[N]`` float32 -- the annotation's ``area``, scaled with the image
``iscrowd``    ``[N]`` int64 -- always 0: crowd regions are not trained on
``orig_size``  ``[2]`` int64 -- ``(h, w)`` of the file
``size``       ``[2]`` int64 -- ``(h, w)`` after the transforms

The annotation file is checked completely when the split is opened, so a typo in it is reported
with the annotation's position before any training starts, not by a crashed loader worker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.ops import box_convert

from rfdetr_core.data.classes import ClassMap, coco_class_map, read_coco_file
from rfdetr_core.data.errors import DatasetError

Transform = Callable[[Image.Image, dict[str, Any]], tuple[Any, dict[str, Any]]]


def _check_annotation(
    ann: Any, position: int, images: dict[int, dict], class_map: ClassMap, source: str
) -> None:
    where = f"{source}: annotation #{position} (id {ann.get('id', '?') if isinstance(ann, dict) else '?'})"
    if not isinstance(ann, dict):
        raise DatasetError(f"{where} is not an object.")
    for key in ("image_id", "category_id", "bbox"):
        if key not in ann:
            raise DatasetError(f"{where} has no '{key}'.")
    if ann["image_id"] not in images:
        raise DatasetError(f"{where} refers to image id {ann['image_id']}, which is not in 'images'.")
    if ann.get("iscrowd", 0) == 0 and ann["category_id"] not in class_map.cat2label:
        raise DatasetError(
            f"{where} uses category id {ann['category_id']}, which is not a trainable category of the "
            f"train split (known ids: {sorted(class_map.cat2label)})."
        )
    bbox = ann["bbox"]
    if (
        not isinstance(bbox, list | tuple)
        or len(bbox) != 4
        or not all(isinstance(v, int | float) for v in bbox)
    ):
        raise DatasetError(f"{where} has bbox {bbox!r}; expected [x, y, width, height] numbers.")
    if bbox[2] < 0 or bbox[3] < 0:
        raise DatasetError(f"{where} has a negative box width or height: {bbox}.")


class CocoDetectionDataset(Dataset):
    """One split of a COCO dataset; labels follow ``class_map`` (normally the train split's)."""

    def __init__(
        self,
        split_dir: str | Path,
        class_map: ClassMap | None = None,
        transforms: Transform | None = None,
        annotation_file: str | Path | None = None,
    ) -> None:
        self.root = Path(split_dir)
        path = Path(annotation_file) if annotation_file else self.root / "_annotations.coco.json"
        self.annotation_path = path
        data = read_coco_file(path)
        self.class_map = class_map if class_map is not None else coco_class_map(data, str(path))
        self.transforms = transforms
        images = data.get("images")
        if not isinstance(images, list):
            raise DatasetError(f"{path} has no 'images' list.")
        self.images: dict[int, dict[str, Any]] = {}
        for position, info in enumerate(images):
            if not isinstance(info, dict) or "id" not in info or "file_name" not in info:
                raise DatasetError(f"{path}: image #{position} needs an 'id' and a 'file_name'.")
            if info["id"] in self.images:
                raise DatasetError(f"{path}: image id {info['id']} appears twice.")
            self.images[info["id"]] = info
        self.annotations: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in self.images}
        for position, ann in enumerate(data.get("annotations") or []):
            _check_annotation(ann, position, self.images, self.class_map, str(path))
            self.annotations[ann["image_id"]].append(ann)
        # torchvision's CocoDetection (which the reference extends) indexes images by sorted id.
        self.ids = sorted(self.images)
        missing = [
            self.images[i]["file_name"]
            for i in self.ids
            if not (self.root / self.images[i]["file_name"]).is_file()
        ]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise DatasetError(
                f"{len(missing)} image file(s) listed in {path} are missing from {self.root}: {shown}."
            )

    @property
    def class_names(self) -> list[str]:
        return list(self.class_map.names)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self.root / self.images[self.ids[index]]["file_name"]

    def load_image(self, index: int) -> Image.Image:
        """The RGB image of a sample, exactly as stored (no EXIF rotation, like the reference)."""
        with Image.open(self.image_path(index)) as image:
            return image.convert("RGB")

    def raw_target(self, index: int, width: int, height: int, include_crowd: bool = False) -> dict[str, Any]:
        """Target of a sample in pixel ``xyxy`` (clipped to the image); crowd regions only on request."""
        image_id = self.ids[index]
        anns = [a for a in self.annotations[image_id] if include_crowd or not a.get("iscrowd", 0)]
        boxes = torch.as_tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes = box_convert(boxes, "xywh", "xyxy")
        boxes[:, 0::2].clamp_(min=0, max=width)
        boxes[:, 1::2].clamp_(min=0, max=height)
        labels = torch.as_tensor(
            [self.class_map.cat2label.get(a["category_id"], -1) for a in anns], dtype=torch.int64
        )
        keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
        area = torch.as_tensor(
            [float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns], dtype=torch.float32
        )
        iscrowd = torch.as_tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64)
        return {
            "boxes": boxes[keep],
            "labels": labels[keep],
            "image_id": torch.as_tensor([image_id]),
            "area": area[keep],
            "iscrowd": iscrowd[keep],
            "orig_size": torch.as_tensor([height, width]),
            "size": torch.as_tensor([height, width]),
        }

    def evaluation_target(self, index: int) -> dict[str, Any]:
        """Ground truth of a sample for COCO evaluation: pixel ``xyxy`` boxes including crowd regions."""
        info = self.images[self.ids[index]]
        width, height = info.get("width"), info.get("height")
        if not width or not height:
            width, height = self.load_image(index).size
        return self.raw_target(index, int(width), int(height), include_crowd=True)

    def __getitem__(self, index: int):
        image = self.load_image(index)
        target = self.raw_target(index, *image.size)
        if self.transforms is not None:
            return self.transforms(image, target)
        return image, target
