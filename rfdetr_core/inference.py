"""Inference plumbing around the network: inputs in, ``supervision.Detections`` out.

Split out of the façade so each step can be tested and timed on its own:
``load_image`` (any accepted input → float CHW + source array), ``preprocess`` (bilinear resize
without antialiasing — what the model saw in training — and ImageNet normalisation, batched),
``postprocess`` (top-k over sigmoid scores across all query/class pairs, cxcywh → xyxy in
original pixels) and ``to_detections`` (class names, COCO sparse ids, metadata).
"""

from __future__ import annotations

import io
import operator
import urllib.request
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn

from rfdetr_core.coco_classes import COCO_CLASS_NAMES, COCO_CLASSES
from rfdetr_core.ops.boxes import cxcywh_to_xyxy

ImageInput = Any  # str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor


@dataclass
class ModelContext:
    """What ``RFDETR.model`` holds: the network, where it runs and what it was trained on.

    Attribute names follow the reference's context object so code that reaches into
    ``rfdetr_model.model.model`` (e.g. to swap in trained weights) keeps working.
    """

    model: nn.Module
    device: torch.device
    resolution: int
    args: SimpleNamespace
    class_names: list[str] | None = None
    num_select: int = 300
    inference_model: nn.Module | None = field(default=None, repr=False)

    def postprocess(self, outputs: dict[str, torch.Tensor], target_sizes: torch.Tensor) -> list[dict]:
        return postprocess(outputs, target_sizes, self.num_select)


@dataclass
class LoadedImage:
    """One input image as the model pipeline needs it.

    ``pixels`` is float CHW in the value range given by ``scale`` (1/255 for 8-bit sources, whose
    division is deferred to after the resize, where there are fewer pixels to divide).
    """

    pixels: torch.Tensor
    scale: float
    source: np.ndarray | None


def load_image(img: ImageInput, *, num_channels: int, keep_source: bool) -> LoadedImage:
    """Accept a path/URL, PIL image, numpy array (HWC) or tensor (CHW in [0, 1]).

    Raises:
        ValueError: tensor/array values outside [0, 1] (for non-8-bit data) or a channel count
            that does not match the model.
    """
    if isinstance(img, str) and img.startswith(("http://", "https://")):
        with urllib.request.urlopen(img, timeout=30) as resp:
            img = io.BytesIO(resp.read())
    if not isinstance(img, (Image.Image, np.ndarray, torch.Tensor)):
        img = Image.open(img)
    if isinstance(img, Image.Image):
        img = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    if isinstance(img, np.ndarray):
        return _from_array(img, num_channels=num_channels, keep_source=keep_source)
    return _from_tensor(img, num_channels=num_channels, keep_source=keep_source)


def _from_array(arr: np.ndarray, *, num_channels: int, keep_source: bool) -> LoadedImage:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"NumPy images must be (H, W) or (H, W, C) arrays, got shape {arr.shape}.")
    source = None
    if keep_source:
        source = arr if arr.dtype == np.uint8 else (arr * 255).clip(0, 255).astype(np.uint8)
    chw = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    if arr.dtype == np.uint8:
        _check_channels(chw, num_channels)
        return LoadedImage(chw.float(), 1.0 / 255.0, source)
    return LoadedImage(_checked_unit_range(chw, num_channels), 1.0, source)


def _from_tensor(t: torch.Tensor, *, num_channels: int, keep_source: bool) -> LoadedImage:
    pixels = _checked_unit_range(t, num_channels)
    source = None
    if keep_source:
        source = (pixels.detach().permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    return LoadedImage(pixels, 1.0, source)


def _checked_unit_range(t: torch.Tensor, num_channels: int) -> torch.Tensor:
    if t.dtype != torch.float32:  # float64 arrays, half tensors, integer tensors: compute in float32
        t = t.float()
    if (t > 1).any():
        raise ValueError(
            "Image has pixel values above 1. Please ensure the image is normalized (scaled to [0, 1])."
        )
    if (t < 0).any():
        raise ValueError(
            "Image has pixel values below 0. Please ensure the image is normalized (scaled to [0, 1])."
        )
    _check_channels(t, num_channels)
    return t


def _check_channels(t: torch.Tensor, num_channels: int) -> None:
    if t.dim() != 3 or t.shape[0] != num_channels:
        raise ValueError(
            "Invalid tensor image shape. Tensor inputs to `predict()` must be in (C, H, W) format "
            f"with C matching the model configuration ({num_channels} channels). "
            f"Received tensor with shape {tuple(t.shape)}."
        )


def validate_shape(shape: object, block_size: int, patch_size: int, num_windows: int) -> tuple[int, int]:
    """Check a user ``(height, width)``: two positive ints, both multiples of ``block_size``."""
    try:
        height, width = shape  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(
            f"shape must be a sequence of two positive integers (height, width), got {shape!r}."
        ) from None
    dims = []
    for name, dim in (("height", height), ("width", width)):
        if isinstance(dim, bool):
            raise ValueError(f"shape {name} must be an integer, got bool (shape={shape!r}).")
        try:
            dims.append(operator.index(dim))
        except TypeError:
            raise ValueError(
                f"shape {name} must be an integer, got {type(dim).__name__} (shape={shape!r})."
            ) from None
    if min(dims) <= 0:
        raise ValueError(f"shape must contain positive integers for height and width, got {shape!r}.")
    if dims[0] % block_size or dims[1] % block_size:
        raise ValueError(
            f"shape must have both dimensions divisible by {block_size} "
            f"(patch_size={patch_size} * num_windows={num_windows}), got {shape!r}."
        )
    return dims[0], dims[1]


def resolve_patch_size(patch_size: object, model_patch_size: int) -> int:
    """``predict(patch_size=...)`` only validates: it must equal the model's architectural value."""
    if patch_size is None:
        return model_patch_size
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size <= 0:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
    if patch_size != model_patch_size:
        raise ValueError(
            f"predict(patch_size={patch_size}) does not match the instantiated model's patch_size="
            f"{model_patch_size}. Patch size is an architectural parameter; omit patch_size to use the "
            f"model's configured value."
        )
    return patch_size


def preprocess(
    images: list[LoadedImage],
    size: tuple[int, int],
    means: list[float],
    stds: list[float],
    device: torch.device,
) -> torch.Tensor:
    """Resize each image (bilinear, no antialias) and normalise the batch.

    Resizing is linear, so the 1/255 scale and the mean/std normalisation are folded into one
    multiply-add on the small resized tensor instead of two passes over the full-size image.
    """
    mean = torch.tensor(means, device=device).view(-1, 1, 1)
    std = torch.tensor(stds, device=device).view(-1, 1, 1)
    out = torch.empty((len(images), len(means), *size), device=device)
    for i, img in enumerate(images):
        resized = TF.resize(img.pixels.to(device), list(size), antialias=False)
        torch.addcmul(-mean / std, resized, img.scale / std, out=out[i])
    return out


def postprocess(outputs: dict[str, torch.Tensor], target_sizes: torch.Tensor, num_select: int) -> list[dict]:
    """Best ``num_select`` (query, class) pairs per image, boxes in original pixels (clamped).

    Ties are broken by the lower flat index (stable sort) so results are reproducible and
    identical to the reference and the ONNX decoders.
    """
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
    num_classes = logits.shape[2]
    prob = logits.float().sigmoid().flatten(1)
    k = min(num_select, prob.shape[1])
    order = torch.sort(prob, dim=1, descending=True, stable=True).indices[:, :k]
    scores = prob.gather(1, order)
    query = torch.div(order, num_classes, rounding_mode="floor")
    labels = order % num_classes
    xyxy = cxcywh_to_xyxy(boxes.float()).gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
    img_h, img_w = target_sizes.unbind(1)
    scale = torch.stack([img_w, img_h, img_w, img_h], dim=1).to(xyxy.dtype)[:, None, :]
    xyxy = (xyxy * scale).clamp_min(0.0).clamp(max=scale)
    return [{"scores": s, "labels": lab, "boxes": b} for s, lab, b in zip(scores, labels, xyxy, strict=True)]


def class_name_table(class_names: list[str], num_classes: int) -> tuple[dict[int, str], bool]:
    """Map class ids to names. COCO-pretrained heads (more logit slots than names, COCO's names)
    emit sparse COCO category ids, so those are looked up by id instead of by position."""
    coco = num_classes > len(class_names) and class_names == COCO_CLASS_NAMES
    if coco:
        return dict(COCO_CLASSES), True
    return dict(enumerate(class_names)), False


def to_detections(
    result: dict[str, torch.Tensor],
    *,
    threshold: float,
    source_shape: tuple[int, int],
    names: dict[int, str],
    num_classes: int,
    coco_ids: bool,
    source: np.ndarray | None,
):
    """One image's post-processed tensors → ``supervision.Detections`` with names and metadata."""
    import supervision as sv

    keep = result["scores"] > threshold
    class_id = result["labels"][keep].cpu().numpy()
    det = sv.Detections(
        xyxy=result["boxes"][keep].float().cpu().numpy(),
        confidence=result["scores"][keep].float().cpu().numpy(),
        class_id=class_id,
    )
    background = None if coco_ids else num_classes  # the no-object slot of fine-tuned heads
    det.data["class_name"] = np.array(
        ["__background__" if cid == background else names.get(int(cid), "") for cid in class_id], dtype=object
    )
    det.data["source_shape"] = np.tile(np.array(source_shape, dtype=np.int64), (len(det), 1))
    if source is not None:
        det.metadata["source_image"] = source
    return det
