"""What an exporter needs to know about a model, gathered in one place.

Every export format needs the same handful of facts besides the network itself: the input resolution, the
patch/window geometry that constrains valid shapes, the normalisation the network expects and the class
names. Collecting them into an :class:`ExportSource` keeps the format modules independent of how the
``RFDETR`` facade happens to store them, so the facade and the exporters can change separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

IMAGENET_MEANS = (0.485, 0.456, 0.406)
IMAGENET_STDS = (0.229, 0.224, 0.225)


@dataclass
class ExportSource:
    """A network plus the metadata that must travel with any artefact made from it.

    Attributes:
        model: The detector; ``model(x)`` on a normalised ``[B,3,H,W]`` tensor returns a mapping with
            ``pred_logits`` ``[B,Q,C]`` and ``pred_boxes`` ``[B,Q,4]`` (cxcywh, normalised).
        resolution: Default square input side in pixels.
        patch_size: Backbone patch size; valid shapes are multiples of ``patch_size * num_windows``.
        num_windows: Windowed-attention windows per side.
        class_names: Names of the classes, index ``i`` = logit column ``i`` (or the id mapping below).
        means: Per-channel mean subtracted after scaling pixels to [0, 1].
        stds: Per-channel std divided after subtracting the mean.
        variant: Variant name such as ``"rfdetr-nano"``; ``None`` for custom architectures.
        args: Training/model arguments stored in ``weights.pt`` bundles (namespace or dict).
        class_ids: Optional COCO category id of each logit column (sparse COCO mapping), else ``None``.
        backbone: Optional callable module used by ``backbone_only`` exports.
    """

    model: nn.Module
    resolution: int
    patch_size: int
    num_windows: int
    class_names: list[str]
    means: Sequence[float] = IMAGENET_MEANS
    stds: Sequence[float] = IMAGENET_STDS
    variant: str | None = None
    args: Any = None
    class_ids: list[int] | None = None
    backbone: nn.Module | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def block_size(self) -> int:
        """Both input sides must be a multiple of this for the windowed backbone."""
        return self.patch_size * self.num_windows

    def validate_shape(self, shape: Sequence[int] | None) -> tuple[int, int]:
        """Return ``(height, width)`` to export at, or raise a message that says which sizes are valid."""
        if shape is None:
            shape = (self.resolution, self.resolution)
        if len(shape) != 2:
            raise ValueError(f"shape must be (height, width), got {tuple(shape)!r}")
        height, width = (int(s) for s in shape)
        block = self.block_size
        for name, value in (("height", height), ("width", width)):
            if value <= 0 or value % block:
                lower = max(block, value // block * block)
                raise ValueError(
                    f"Export {name} {value} is not a positive multiple of patch_size*num_windows = "
                    f"{self.patch_size}*{self.num_windows} = {block}; try {lower} or {lower + block}."
                )
        return height, width


def _first(obj: Any, paths: Sequence[str], default: Any = None) -> Any:
    """Return the first attribute path (dotted) that resolves on *obj* to a non-None value."""
    for path in paths:
        value: Any = obj
        for part in path.split("."):
            value = getattr(value, part, None)
            if value is None:
                break
        if value is not None:
            return value
    return default


def _coco_sparse_ids(names: list[str], num_logits: int) -> list[int] | None:
    """COCO-pretrained heads index logits by sparse COCO category id; return the id of each name."""
    from rfdetr_core.inference import class_name_table

    table, coco = class_name_table(list(names), num_logits)
    if not coco:
        return None
    by_name = {name: cid for cid, name in table.items()}
    return [int(by_name[n]) for n in names]


def source_from_rfdetr(rf: Any) -> ExportSource:
    """Build an :class:`ExportSource` from an ``RFDETR`` facade object.

    Reads attributes defensively so the exporters do not break when the facade is refactored; anything
    essential that cannot be found raises a message naming the missing fact.
    """
    if isinstance(rf, ExportSource):
        return rf
    config = _first(rf, ["model_config", "config"])
    model = _first(rf, ["model.model", "network", "net", "model"])
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"Cannot find the torch network on {type(rf).__name__} (looked for .model.model/.model)"
        )
    resolution = _first(
        rf, ["resolution", "model.resolution", "model_config.resolution", "config.resolution"]
    )
    patch_size = _first(config, ["patch_size"], 16)
    num_windows = _first(config, ["num_windows"], 1)
    if resolution is None:
        raise ValueError("Cannot determine the model's input resolution for export")
    names = list(_first(rf, ["class_names"], []) or [])
    means = _first(rf, ["means", "model.means", "model_config.means", "config.means"], IMAGENET_MEANS)
    stds = _first(rf, ["stds", "model.stds", "model_config.stds", "config.stds"], IMAGENET_STDS)
    variant = _first(rf, ["size", "variant", "model_config.variant", "config.variant"])
    args = _first(rf, ["model.args", "args", "checkpoint_args"])
    class_ids = _first(rf, ["class_ids", "model.class_ids"])
    num_logits = _first(args, ["num_classes"]) if not isinstance(args, dict) else args.get("num_classes")
    if class_ids is None and names and isinstance(num_logits, int):
        class_ids = _coco_sparse_ids(names, num_logits)
    return ExportSource(
        model=model,
        resolution=int(resolution),
        patch_size=int(patch_size),
        num_windows=int(num_windows),
        class_names=[str(n) for n in names],
        means=tuple(float(m) for m in means),
        stds=tuple(float(s) for s in stds),
        variant=str(variant) if variant is not None else None,
        args=args,
        class_ids=list(class_ids) if class_ids is not None else None,
    )
