"""The published RF-DETR detection variants and how a checkpoint names its variant."""

from __future__ import annotations

import logging
import os

from rfdetr_core.checkpoint import Checkpoint
from rfdetr_core.config import (
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


VARIANTS: dict[str, type[RFDETR]] = {
    cls.__name__: cls for cls in (RFDETRNano, RFDETRSmall, RFDETRMedium, RFDETRBase, RFDETRLarge)
}
#: Substrings of a weights name, most specific first ("large" before "base": no overlap today,
#: but "rf-detr-base-2" must not match anything else).
_NAME_HINTS: tuple[tuple[str, type[RFDETR]], ...] = (
    ("large", RFDETRLarge),
    ("medium", RFDETRMedium),
    ("small", RFDETRSmall),
    ("nano", RFDETRNano),
    ("base", RFDETRBase),
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
    if ckpt.model_name and ckpt.model_name.strip() in VARIANTS:
        return VARIANTS[ckpt.model_name.strip()]
    weights = str(ckpt.args.get("pretrain_weights") or "").strip().lower()
    candidates = [os.path.basename(weights)] if weights not in _UNSET else []
    candidates.append(os.path.basename(os.fspath(path)).lower())
    for name in candidates:
        unsupported = next((h for h in _UNSUPPORTED if h in name), None)
        if unsupported:
            raise ValueError(
                f"Checkpoint {os.fspath(path)!r} looks like an RF-DETR '{unsupported}' model ({name!r}); "
                f"rfdetr_core supports the detection variants {', '.join(VARIANTS)} only."
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
