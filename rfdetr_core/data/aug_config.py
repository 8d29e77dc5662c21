"""Translate the reference's ``train()`` augmentation knobs into an :class:`AugmentConfig`.

The reference's ``train(aug_config=..., multi_scale=..., expanded_scales=..., scale_jitter=...)``
takes an Albumentations-style dict (``{"HorizontalFlip": {"p": 0.5}, ...}``; ``None`` = the default
recipe, ``{}`` = no augmentation besides the resize). Our ``train()`` accepts the same arguments, and
the studio's Augment page shows them, so both must land on the one pipeline object. Only transforms the
pipeline implements are accepted; anything else is refused with the list of supported names instead of
being silently ignored.
"""

from __future__ import annotations

from typing import Any

from rfdetr_core.data.transforms import AugmentConfig


def _limit(value: Any) -> float:
    """Albumentations limits are a scalar ``v`` (meaning ``-v..v``) or a ``(low, high)`` pair."""
    if isinstance(value, list | tuple):
        return float(max(abs(float(v)) for v in value))
    return abs(float(value))


def _flip(name: str, field: str):
    def apply(params: dict[str, Any]) -> dict[str, Any]:
        return {field: float(params.get("p", 0.5))}

    apply.__name__ = name
    return apply


def _rotate(params: dict[str, Any]) -> dict[str, Any]:
    return {"rotate": float(params.get("p", 0.5)), "rotate_degrees": _limit(params.get("limit", 90))}


def _color_jitter(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "color_jitter": float(params.get("p", 0.5)),
        "brightness": _limit(params.get("brightness", 0.2)),
        "contrast": _limit(params.get("contrast", 0.2)),
        "saturation": _limit(params.get("saturation", 0.2)),
        "hue": _limit(params.get("hue", 0.2)),
    }


def _brightness_contrast(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "color_jitter": float(params.get("p", 0.5)),
        "brightness": _limit(params.get("brightness_limit", 0.2)),
        "contrast": _limit(params.get("contrast_limit", 0.2)),
        "saturation": 0.0,
        "hue": 0.0,
    }


def _gray(params: dict[str, Any]) -> dict[str, Any]:
    return {"grayscale": float(params.get("p", 0.5))}


def _blur(params: dict[str, Any]) -> dict[str, Any]:
    # A Gaussian kernel of size k has most of its weight within sigma ~ k / 6 of the centre.
    kernel = _limit(params.get("blur_limit", 7))
    return {"blur": float(params.get("p", 0.5)), "blur_max_radius": max(kernel / 6, 0.2)}


HANDLERS = {
    "HorizontalFlip": _flip("HorizontalFlip", "horizontal_flip"),
    "VerticalFlip": _flip("VerticalFlip", "vertical_flip"),
    "Rotate": _rotate,
    "ColorJitter": _color_jitter,
    "RandomBrightnessContrast": _brightness_contrast,
    "ToGray": _gray,
    "GaussianBlur": _blur,
}


def augment_config_from_train_kwargs(
    aug_config: dict[str, dict[str, Any]] | None = None,
    multi_scale: bool | str = True,
    expanded_scales: bool = True,
    scale_jitter: bool = True,
) -> AugmentConfig:
    """The :class:`AugmentConfig` equivalent of the reference's ``train()`` augmentation arguments."""
    if multi_scale is True:
        mode = "per-batch"
    elif multi_scale is False:
        mode = "off"
    else:
        mode = str(multi_scale)
    fields: dict[str, Any] = {
        "multi_scale": mode,
        "expanded_scales": expanded_scales,
        "scale_jitter": scale_jitter,
    }
    if aug_config is None:
        return AugmentConfig(**fields)
    fields["horizontal_flip"] = 0.0  # an explicit dict replaces the default flip, as in the reference
    for name, params in aug_config.items():
        handler = HANDLERS.get(name)
        if handler is None:
            raise ValueError(
                f"Augmentation {name!r} is not supported; supported: {', '.join(sorted(HANDLERS))}."
            )
        fields.update(handler(dict(params or {})))
    return AugmentConfig(**fields)


def train_kwargs_from_augment_config(config: AugmentConfig) -> dict[str, Any]:
    """The reverse mapping, for writing a run's settings in the reference's vocabulary."""
    aug: dict[str, dict[str, Any]] = {}
    if config.horizontal_flip:
        aug["HorizontalFlip"] = {"p": config.horizontal_flip}
    if config.vertical_flip:
        aug["VerticalFlip"] = {"p": config.vertical_flip}
    if config.rotate:
        aug["Rotate"] = {"limit": config.rotate_degrees, "p": config.rotate}
    if config.color_jitter:
        aug["ColorJitter"] = {
            "brightness": config.brightness,
            "contrast": config.contrast,
            "saturation": config.saturation,
            "hue": config.hue,
            "p": config.color_jitter,
        }
    if config.grayscale:
        aug["ToGray"] = {"p": config.grayscale}
    if config.blur:
        aug["GaussianBlur"] = {"blur_limit": round(config.blur_max_radius * 6), "p": config.blur}
    return {
        "aug_config": aug,
        "multi_scale": config.multi_scale,
        "expanded_scales": config.expanded_scales,
        "scale_jitter": config.scale_jitter,
    }
