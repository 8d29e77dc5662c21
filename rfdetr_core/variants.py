"""The published RF-DETR detection variants: the one table every command line, the checkpoint reader
and the studio's size picker read, and how a checkpoint names its variant.

Only the model classes and their config classes spell out a variant; everything else (CLI choices,
``model_name`` lookups, the studio's resolutions and block sizes) is derived from :data:`VARIANTS`,
so adding a variant is one class pair plus one row.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from rfdetr_core.checkpoint import Checkpoint
from rfdetr_core.config import (
    ModelConfig,
    RFDETRBaseConfig,
    RFDETRLargeConfig,
    RFDETRMediumConfig,
    RFDETRNanoConfig,
    RFDETRSmallConfig,
)
from rfdetr_core.detr import RFDETR

logger = logging.getLogger(__name__)


class RFDETRNano(RFDETR):
    """RF-DETR Nano (384 px)."""

    size = "rfdetr-nano"
    _model_config_class = RFDETRNanoConfig


class RFDETRSmall(RFDETR):
    """RF-DETR Small (512 px)."""

    size = "rfdetr-small"
    _model_config_class = RFDETRSmallConfig


class RFDETRMedium(RFDETR):
    """RF-DETR Medium (576 px)."""

    size = "rfdetr-medium"
    _model_config_class = RFDETRMediumConfig


class RFDETRBase(RFDETR):
    """RF-DETR Base (560 px, DINOv2 ViT-S/14)."""

    size = "rfdetr-base"
    _model_config_class = RFDETRBaseConfig


class RFDETRLarge(RFDETR):
    """RF-DETR Large (704 px)."""

    size = "rfdetr-large"
    _model_config_class = RFDETRLargeConfig


@dataclass(frozen=True)
class Variant:
    """One published variant. Architecture numbers are read from its config class, never repeated."""

    model_class: type[RFDETR]
    #: Parameters in millions with the COCO head, measured by building the variant once (a test
    #: checks Nano's against the built network).
    params_m: float

    @property
    def name(self) -> str:
        """``"Nano"``: the studio's size name (the class is ``RFDETR<name>``)."""
        return self.model_class.__name__.removeprefix("RFDETR")

    @property
    def key(self) -> str:
        """``"nano"``: the command lines' ``--variant`` choice."""
        return self.name.lower()

    @property
    def config_class(self) -> type[ModelConfig]:
        return self.model_class._model_config_class

    def _default(self, field: str):
        return self.config_class.model_fields[field].default

    @property
    def resolution(self) -> int:
        """Default square input size in pixels."""
        return self._default("resolution")

    @property
    def patch_size(self) -> int:
        return self._default("patch_size")

    @property
    def block_size(self) -> int:
        """Input sides must be multiples of this (``patch_size * num_windows``)."""
        return self.patch_size * self._default("num_windows")

    @property
    def pretrain_weights(self) -> str:
        """File name of the official COCO-pretrained weights."""
        return self._default("pretrain_weights")


class _VariantTable(dict):
    """``dict`` of :class:`Variant` by key. TRANSITIONAL: a class name (``VARIANTS["RFDETRNano"]``)
    still returns the model class, as the old class map did, until the studio's
    ``services/train/worker.py`` and ``runs.py`` read ``VARIANTS[key].model_class``; then delete this."""

    def __missing__(self, name: str) -> type[RFDETR]:
        for variant in self.values():
            if variant.model_class.__name__ == name:
                return variant.model_class
        raise KeyError(name)


#: The published variants by ``--variant`` key, smallest first.
VARIANTS: dict[str, Variant] = _VariantTable(
    (v.key, v)
    for v in (
        Variant(RFDETRNano, 30.5),
        Variant(RFDETRSmall, 32.1),
        Variant(RFDETRMedium, 33.7),
        Variant(RFDETRBase, 32.2),
        Variant(RFDETRLarge, 33.9),
    )
)
#: Model classes by class name (what a reference checkpoint stores as ``model_name``).
MODEL_CLASSES: dict[str, type[RFDETR]] = {v.model_class.__name__: v.model_class for v in VARIANTS.values()}
#: Substrings of a weights name, most specific first: larger variants first and "base" last, so
#: "rf-detr-base-2" can match nothing else.
_NAME_HINTS: tuple[tuple[str, type[RFDETR]], ...] = tuple(
    (v.key, v.model_class) for v in sorted(reversed(VARIANTS.values()), key=lambda v: v.key == "base")
)
_UNSET = {"", "none", "null"}
_UNSUPPORTED = ("seg-", "keypoint", "xlarge", "2xlarge", "xxlarge")


def infer_variant(
    ckpt: Checkpoint, path: str | os.PathLike[str], default: type[RFDETR] | None = None
) -> type[RFDETR]:
    """Pick the variant class: ``model_name`` → ``args.pretrain_weights`` → file name → *default*.

    Raises:
        ValueError: nothing identifies the variant and no default was given.
    """
    if ckpt.model_name and ckpt.model_name.strip() in MODEL_CLASSES:
        return MODEL_CLASSES[ckpt.model_name.strip()]
    weights = str(ckpt.args.get("pretrain_weights") or "").strip().lower()
    candidates = [os.path.basename(weights)] if weights not in _UNSET else []
    candidates.append(os.path.basename(os.fspath(path)).lower())
    for name in candidates:
        unsupported = next((h for h in _UNSUPPORTED if h in name), None)
        if unsupported:
            raise ValueError(
                f"Checkpoint {os.fspath(path)!r} looks like an RF-DETR '{unsupported}' model ({name!r}); "
                f"rfdetr_core supports the detection variants {', '.join(MODEL_CLASSES)} only."
            )
        for hint, variant in _NAME_HINTS:
            if hint in name:
                logger.info("Inferred %s for %s from %r", variant.__name__, path, name)
                return variant
    if default is not None:
        return default
    raise ValueError(
        f"Could not infer model class from checkpoint at {os.fspath(path)!r} (model_name={ckpt.model_name!r}, "
        f"pretrain_weights={weights!r}). Please instantiate the model class directly, e.g. "
        f"RFDETRSmall(pretrain_weights=...)."
    )
