"""Training augmentation and evaluation preprocessing, as one configurable, seedable object.

A sample travels through :class:`AugmentPipeline` as a PIL image plus a target dict whose
``boxes`` are absolute ``xyxy`` pixels. The training recipe is the reference's default
(torchvision backend, square resize):

1. **Resize**, one of two branches with equal probability (only the first when ``scale_jitter`` is
   off): a direct square resize to a training size, or the DETR "random size crop" -- shortest side
   to 400/500/600, a random square crop of 384..600 px, resized to a training size. Boxes leaving
   the crop are dropped.
2. **Flips** -- horizontal (p = 0.5 by default), vertical (off by default); an optional small
   **rotation** (off by default) whose boxes are the hulls of the rotated boxes, clipped.
3. **Photometric extras** the Augment page exposes, all off by default: colour jitter, grayscale,
   Gaussian blur. They never move boxes.
4. **Normalise** -- ImageNet mean/std on the image; boxes become normalised ``cxcywh``.

Training sizes come from :func:`multi_scale_sizes`: around ``resolution`` in steps of the model's
block size (``patch_size * num_windows``). With the default ``multi_scale="per-batch"`` every
sample is resized to the *largest* size and the trainer rescales whole batches
(:func:`rfdetr_core.data.collate.resize_batch`); ``"per-sample"`` draws a size per sample;
``"off"`` trains at ``resolution``. Evaluation is a plain square resize to ``resolution``.

All randomness comes from a ``torch.Generator``: the same seed gives the same augmentation, which
is what :meth:`AugmentPipeline.preview` relies on to draw a stable preview grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageFilter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor
from torchvision.ops import box_area
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from rfdetr_core.ops.boxes import xyxy_to_cxcywh

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Target = dict[str, Any]


class AugmentConfig(BaseModel):
    """Every augmentation knob; the defaults reproduce the reference's default training recipe."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    horizontal_flip: float = Field(0.5, ge=0.0, le=1.0, description="probability of a left-right flip")
    vertical_flip: float = Field(0.0, ge=0.0, le=1.0, description="probability of an up-down flip")
    multi_scale: Literal["off", "per-batch", "per-sample"] = "per-batch"
    expanded_scales: bool = Field(True, description="11 training sizes around the resolution instead of 8")
    scale_jitter: bool = Field(True, description="half of the samples take the random-size-crop branch")
    crop_pre_sizes: list[int] = Field(default_factory=lambda: [400, 500, 600])
    crop_min_size: int = Field(384, ge=1)
    crop_max_size: int = Field(600, ge=1)
    color_jitter: float = Field(0.0, ge=0.0, le=1.0, description="probability of colour jitter")
    brightness: float = Field(0.2, ge=0.0, le=1.0)
    contrast: float = Field(0.2, ge=0.0, le=1.0)
    saturation: float = Field(0.2, ge=0.0, le=1.0)
    hue: float = Field(0.05, ge=0.0, le=0.5)
    grayscale: float = Field(0.0, ge=0.0, le=1.0, description="probability of dropping colour")
    blur: float = Field(0.0, ge=0.0, le=1.0, description="probability of a Gaussian blur")
    blur_max_radius: float = Field(1.5, gt=0.0)
    rotate: float = Field(0.0, ge=0.0, le=1.0, description="probability of a rotation")
    rotate_degrees: float = Field(10.0, ge=0.0, le=180.0, description="largest rotation angle either way")

    @field_validator("crop_pre_sizes")
    @classmethod
    def _positive_sizes(cls, sizes: list[int]) -> list[int]:
        if not sizes or min(sizes) <= 0:
            raise ValueError("crop_pre_sizes needs at least one positive size")
        return sizes


def multi_scale_sizes(resolution: int, block_size: int, expanded: bool = True) -> list[int]:
    """Square training sizes around ``resolution``, multiples of ``block_size`` and at least two blocks.

    Same recipe as the reference: ``resolution // block_size`` blocks, offset by -3..+4 blocks
    (-5..+5 when ``expanded``). E.g. Nano (384 px, block 32), expanded: 224, 256, ..., 544.
    """
    base = resolution // block_size
    offsets = range(-5, 6) if expanded else range(-3, 5)
    return [(base + o) * block_size for o in offsets if (base + o) * block_size >= 2 * block_size]


def training_sizes(config: AugmentConfig, resolution: int, block_size: int) -> list[int]:
    """Sizes the dataset itself draws from (see the module docstring for the three modes)."""
    if config.multi_scale == "off":
        return [resolution]
    sizes = multi_scale_sizes(resolution, block_size, config.expanded_scales)
    return sizes if config.multi_scale == "per-sample" else [max(sizes)]


# -- geometric primitives on (PIL image, target with xyxy pixel boxes) -------------------------------
def _resize(image: Image.Image, target: Target, height: int, width: int) -> tuple[Image.Image, Target]:
    old_w, old_h = image.size
    image = TF.resize(image, [height, width], interpolation=InterpolationMode.BILINEAR, antialias=True)
    target = dict(target)
    sx, sy = width / old_w, height / old_h
    target["boxes"] = target["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
    if "area" in target:
        target["area"] = target["area"] * (sx * sy)
    target["size"] = torch.as_tensor([height, width])
    return image, target


def _resize_shortest_side(image: Image.Image, target: Target, size: int) -> tuple[Image.Image, Target]:
    width, height = image.size
    if min(width, height) == size:
        return image, target
    if width < height:
        return _resize(image, target, int(round(size * height / width)), size)
    return _resize(image, target, size, int(round(size * width / height)))


def _keep_instances(target: Target, keep: Tensor) -> Target:
    """Filter every per-instance field of a target by a boolean mask."""
    count = len(target["boxes"])
    return {
        key: value[keep]
        if torch.is_tensor(value)
        and value.ndim >= 1
        and len(value) == count
        and key not in ("orig_size", "size", "image_id")
        else value
        for key, value in target.items()
    }


def _clip_and_keep(target: Target, boxes: Tensor, width: int, height: int) -> Target:
    """Clip new boxes to the image, drop those left without area, and refresh ``area`` to the box area."""
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype)
    boxes = torch.minimum(boxes.clamp(min=0), scale).float()
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    target = _keep_instances(dict(target, boxes=boxes), keep)
    if "area" in target:
        target["area"] = box_area(target["boxes"])
    return target


def _crop(image: Image.Image, target: Target, top: int, left: int, height: int, width: int):
    """Crop, clip boxes to the window and drop those that no longer cover any pixel."""
    image = image.crop((left, top, left + width, top + height))
    shifted = target["boxes"] - torch.tensor([left, top, left, top], dtype=torch.float32)
    target = _clip_and_keep(target, shifted, width, height)
    target["size"] = torch.as_tensor([height, width])
    return image, target


def _flip(image: Image.Image, target: Target, horizontal: bool) -> tuple[Image.Image, Target]:
    width, height = image.size
    boxes = target["boxes"].clone()
    if horizontal:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    else:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        boxes[:, [1, 3]] = height - target["boxes"][:, [3, 1]]
    return image, dict(target, boxes=boxes)


def _rotate(image: Image.Image, target: Target, degrees: float) -> tuple[Image.Image, Target]:
    """Rotate counter-clockwise about the centre, keeping the size; boxes become their rotated hulls.

    The hull of a rotated box is exactly the extent of a rotated solid rectangle, and a loose fit for
    a rounder object -- which is why rotation is an opt-in extra with small default angles.
    """
    width, height = image.size
    fill = tuple(int(255 * m) for m in IMAGENET_MEAN)  # pads with the colour normalisation maps to 0
    image = image.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    theta = torch.tensor(np.deg2rad(degrees), dtype=torch.float64)
    cos, sin = torch.cos(theta), torch.sin(theta)
    boxes = target["boxes"].double()
    xs = boxes[:, [0, 2, 2, 0]] - width / 2
    ys = boxes[:, [1, 1, 3, 3]] - height / 2
    rx, ry = width / 2 + xs * cos + ys * sin, height / 2 - xs * sin + ys * cos
    hull = torch.stack((rx.min(1).values, ry.min(1).values, rx.max(1).values, ry.max(1).values), dim=1)
    return image, _clip_and_keep(target, hull, width, height)


# -- random helpers -------------------------------------------------------------------------------
def _rand(gen: torch.Generator | None) -> float:
    return float(torch.rand((), generator=gen))


def _randint(gen: torch.Generator | None, low: int, high_inclusive: int) -> int:
    return int(torch.randint(low, high_inclusive + 1, (), generator=gen)) if high_inclusive > low else low


def _choice(gen: torch.Generator | None, values: list[int]) -> int:
    return values[_randint(gen, 0, len(values) - 1)]


# -- tensors --------------------------------------------------------------------------------------
def to_model_input(image: Image.Image) -> Tensor:
    """PIL RGB image -> normalised float32 ``[3, H, W]`` tensor (ImageNet mean/std)."""
    tensor = TF.to_dtype(TF.pil_to_tensor(image), torch.float32, scale=True)
    return TF.normalize(tensor, list(IMAGENET_MEAN), list(IMAGENET_STD))


def to_uint8_image(tensor: Tensor) -> np.ndarray:
    """Undo :func:`to_model_input`: normalised ``[3, H, W]`` -> ``H x W x 3`` uint8 (for showing batches)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = ((tensor.detach().cpu().float() * std + mean) * 255).round().clamp(0, 255)
    return pixels.to(torch.uint8).permute(1, 2, 0).numpy()


def normalise_target(target: Target, height: int, width: int) -> Target:
    """Pixel ``xyxy`` boxes -> ``cxcywh`` divided by the image size, the format the loss expects."""
    cxcywh = xyxy_to_cxcywh(target["boxes"])
    return dict(target, boxes=cxcywh / torch.tensor([width, height, width, height], dtype=torch.float32))


@dataclass
class AugmentedSample:
    """What :meth:`AugmentPipeline.preview` returns: what a person sees and what the model gets."""

    image: np.ndarray  # H x W x 3 uint8, after augmentation
    boxes: np.ndarray  # N x 4 float32 xyxy pixels in ``image``
    labels: np.ndarray  # N int64
    tensor: Tensor  # 3 x H x W normalised training input
    target: Target  # training target: cxcywh boxes normalised to [0, 1]


class AugmentPipeline:
    """Training augmentation (``train=True``) or evaluation preprocessing, callable on ``(image, target)``."""

    def __init__(
        self,
        config: AugmentConfig | None = None,
        resolution: int = 384,
        block_size: int = 32,
        train: bool = True,
    ) -> None:
        if resolution % block_size:
            raise ValueError(f"resolution {resolution} must be a multiple of the block size {block_size}")
        self.config = config if config is not None else AugmentConfig()
        self.resolution = resolution
        self.block_size = block_size
        self.train = train
        self.sizes = training_sizes(self.config, resolution, block_size) if train else [resolution]

    @property
    def draws_random(self) -> bool:
        """Whether a training sample draws any random number.

        An augmentation-free pipeline draws none, like the reference's: its samplers take each epoch's
        order from the global torch RNG, so one draw per sample would shift every later epoch's order
        (issue 20). A knob missing here is harmless: with no generator, draws come from the global RNG.
        """
        cfg = self.config
        chances = (
            cfg.horizontal_flip,
            cfg.vertical_flip,
            cfg.rotate,
            cfg.color_jitter,
            cfg.grayscale,
            cfg.blur,
        )
        return self.train and (len(self.sizes) > 1 or cfg.scale_jitter or any(chances))

    def _random_size_crop(self, image: Image.Image, target: Target, gen: torch.Generator, size: int):
        cfg = self.config
        image, target = _resize_shortest_side(image, target, _choice(gen, cfg.crop_pre_sizes))
        width, height = image.size
        max_crop = min(cfg.crop_max_size, height, width)
        crop = _randint(gen, min(cfg.crop_min_size, max_crop), max_crop)
        crop_h, crop_w = min(crop, height), min(crop, width)
        top, left = _randint(gen, 0, height - crop_h), _randint(gen, 0, width - crop_w)
        image, target = _crop(image, target, top, left, crop_h, crop_w)
        return _resize(image, target, size, size)

    def _photometric(self, image: Image.Image, gen: torch.Generator) -> Image.Image:
        cfg = self.config
        if cfg.color_jitter and _rand(gen) < cfg.color_jitter:
            image = TF.adjust_brightness(image, 1 + (2 * _rand(gen) - 1) * cfg.brightness)
            image = TF.adjust_contrast(image, 1 + (2 * _rand(gen) - 1) * cfg.contrast)
            image = TF.adjust_saturation(image, 1 + (2 * _rand(gen) - 1) * cfg.saturation)
            image = TF.adjust_hue(image, (2 * _rand(gen) - 1) * cfg.hue)
        if cfg.grayscale and _rand(gen) < cfg.grayscale:
            image = TF.rgb_to_grayscale(image, num_output_channels=3)
        if cfg.blur and _rand(gen) < cfg.blur:
            image = image.filter(
                ImageFilter.GaussianBlur(radius=0.1 + _rand(gen) * (cfg.blur_max_radius - 0.1))
            )
        return image

    def augment(self, image: Image.Image, target: Target, generator: torch.Generator | None = None):
        """Geometric + photometric steps only: returns the PIL image and a target with pixel boxes."""
        if not self.train:
            return _resize(image, target, self.resolution, self.resolution)
        gen = generator if generator is not None or not self.draws_random else _generator_from_global_rng()
        cfg = self.config
        size = _choice(gen, self.sizes)
        if cfg.scale_jitter and _rand(gen) >= 0.5:
            image, target = self._random_size_crop(image, target, gen, size)
        else:
            image, target = _resize(image, target, size, size)
        if cfg.horizontal_flip and _rand(gen) < cfg.horizontal_flip:
            image, target = _flip(image, target, horizontal=True)
        if cfg.vertical_flip and _rand(gen) < cfg.vertical_flip:
            image, target = _flip(image, target, horizontal=False)
        if cfg.rotate and _rand(gen) < cfg.rotate:
            image, target = _rotate(image, target, (2 * _rand(gen) - 1) * cfg.rotate_degrees)
        return self._photometric(image, gen), target

    def __call__(self, image: Image.Image, target: Target, generator: torch.Generator | None = None):
        """Full pipeline: ``(normalised [3, H, W] tensor, target with normalised cxcywh boxes)``."""
        image, target = self.augment(image, target, generator)
        width, height = image.size
        return to_model_input(image), normalise_target(target, height, width)

    def preview(
        self, image: Image.Image | np.ndarray, boxes: Any, seed: int, labels: Any = None
    ) -> AugmentedSample:
        """Augment one image with a fixed seed: the uint8 image and pixel boxes to draw, plus the tensors."""
        pil = Image.fromarray(np.asarray(image, dtype=np.uint8)) if isinstance(image, np.ndarray) else image
        pil = pil.convert("RGB")
        box_tensor = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        label_tensor = torch.as_tensor(
            np.zeros(len(box_tensor), dtype=np.int64)
            if labels is None
            else np.asarray(labels, dtype=np.int64)
        )
        target = {"boxes": box_tensor, "labels": label_tensor}
        out_image, out_target = self.augment(pil, target, torch.Generator().manual_seed(int(seed)))
        width, height = out_image.size
        return AugmentedSample(
            image=np.asarray(out_image, dtype=np.uint8).copy(),
            boxes=out_target["boxes"].numpy().astype(np.float32),
            labels=out_target["labels"].numpy(),
            tensor=to_model_input(out_image),
            target=normalise_target(out_target, height, width),
        )


def _generator_from_global_rng() -> torch.Generator:
    """A generator seeded from torch's global RNG, so ``seed_everything`` and worker seeding still apply."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())))
