"""Batching: pad images of different sizes into one tensor plus a padding mask.

The backbone's windowed attention needs ``H`` and ``W`` to be multiples of its block size
(``patch_size * num_windows``), so the padded size is rounded up to it. The mask is ``True`` on
padding, the convention of the reference's ``NestedTensor`` (whose attributes this class mirrors:
``tensors``, ``mask``, ``to``, ``decompose``), so a model written against either accepts it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class NestedTensor:
    """A padded image batch ``[B, 3, H, W]`` and its padding mask ``[B, H, W]`` (True = padding)."""

    tensors: Tensor
    mask: Tensor

    def to(self, device: torch.device | str, **kwargs: Any) -> NestedTensor:
        return NestedTensor(self.tensors.to(device, **kwargs), self.mask.to(device, **kwargs))

    def pin_memory(self) -> NestedTensor:
        return NestedTensor(self.tensors.pin_memory(), self.mask.pin_memory())

    def decompose(self) -> tuple[Tensor, Tensor]:
        return self.tensors, self.mask


def _round_up(value: int, multiple: int | None) -> int:
    return value if not multiple else -(-value // multiple) * multiple


def pad_images(images: Sequence[Tensor], block_size: int | None = None) -> NestedTensor:
    """Pad ``[3, h_i, w_i]`` images to a common (block-rounded) size, top-left aligned."""
    if not images:
        raise ValueError("cannot batch zero images")
    height = _round_up(max(int(i.shape[1]) for i in images), block_size)
    width = _round_up(max(int(i.shape[2]) for i in images), block_size)
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    mask = torch.ones((len(images), height, width), dtype=torch.bool, device=images[0].device)
    for slot, image in enumerate(images):
        batch[slot, :, : image.shape[1], : image.shape[2]].copy_(image)
        mask[slot, : image.shape[1], : image.shape[2]] = False
    return NestedTensor(batch, mask)


def collate(samples: Sequence[tuple[Tensor, dict[str, Any]]], block_size: int | None = None):
    """``[(image, target), ...]`` -> ``(NestedTensor, [target, ...])``."""
    images, targets = zip(*samples, strict=True)
    return pad_images(list(images), block_size), list(targets)


def make_collate_fn(block_size: int | None = None):
    """A picklable collate function (``DataLoader`` workers need to pickle it) for a block size."""
    return partial(collate, block_size=block_size)


def resize_batch(batch: NestedTensor, size: int) -> NestedTensor:
    """Rescale a whole batch to ``size x size`` -- multi-scale training's per-batch step.

    Targets need no change: their boxes are normalised to the image size.
    """
    tensors = F.interpolate(batch.tensors, size=(size, size), mode="bilinear", align_corners=False)
    mask = F.interpolate(batch.mask[:, None].float(), size=(size, size), mode="nearest")[:, 0].bool()
    return NestedTensor(tensors, mask)


def scale_for_step(sizes: Sequence[int], step: int) -> int:
    """The per-batch training size of an optimiser step: a pure function of the step, same on every rank."""
    return random.Random(step).choice(list(sizes))
