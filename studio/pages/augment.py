"""Augment page: the augmentation knobs ``train()`` takes, stored in the project, and a grid of
training samples augmented by the trainer's own pipeline (re-roll for a new seed)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.services.train import augment as aug
from studio.services.train.defaults import MODEL_SIZES
from studio.services.train.runs import load_train_settings

TITLE = "Augment"
TAB_ID = "tab-augment"
GRID_SIZE = 12
#: (knob, elem_id suffix, label, kind, extra) in page order; kinds: p = probability slider, s = slider.
SLIDERS = (
    ("horizontal_flip", "hflip", "Horizontal flip (probability)", 0.0, 1.0, 0.05),
    ("vertical_flip", "vflip", "Vertical flip (probability)", 0.0, 1.0, 0.05),
    ("color_jitter", "color-jitter", "Colour jitter (probability)", 0.0, 1.0, 0.05),
    ("brightness", "brightness", "… brightness ±", 0.0, 1.0, 0.05),
    ("contrast", "contrast", "… contrast ±", 0.0, 1.0, 0.05),
    ("saturation", "saturation", "… saturation ±", 0.0, 1.0, 0.05),
    ("hue", "hue", "… hue ±", 0.0, 0.5, 0.01),
    ("grayscale", "grayscale", "Grayscale (probability)", 0.0, 1.0, 0.05),
    ("blur", "blur", "Gaussian blur (probability)", 0.0, 1.0, 0.05),
    ("blur_max_radius", "blur-radius", "… largest blur radius (px)", 0.2, 5.0, 0.1),
    ("rotate", "rotate", "Rotation (probability)", 0.0, 1.0, 0.05),
    ("rotate_degrees", "rotate-degrees", "… largest angle (°)", 0.0, 180.0, 1.0),
)


def _preview_size(store) -> tuple[int, int, str]:
    """Resolution and block size of the model the next run will train (Nano until one is chosen)."""
    train = load_train_settings(store) or {}
    size = MODEL_SIZES.get(train.get("model_size", "Nano"), MODEL_SIZES["Nano"])
    resolution = int(train.get("resolution") or size.resolution)
    return resolution, size.block_size, size.name


def _settings(values: tuple[Any, ...], names: list[str]) -> dict[str, Any]:
    return dict(zip(names, values, strict=True))


def build(ctx: PageContext) -> PageHooks:
    root: Path = ctx.root
    gr.Markdown(
        "The augmentations applied to training images, with the trainer's defaults. The grid shows real "
        "training samples as the trainer will see them (same code), boxes and classes drawn. "
        "**Save** stores the settings in the project; the next training run uses them.",
        elem_id="augment-intro",
    )
    knobs: dict[str, gr.components.Component] = {}
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            with gr.Group():
                knobs["multi_scale"] = gr.Radio(
                    list(aug.MULTI_SCALE_CHOICES), label="Multi-scale training", elem_id="augment-multi-scale"
                )
                knobs["expanded_scales"] = gr.Checkbox(
                    label="Expanded scales (11 sizes instead of 8)", elem_id="augment-expanded-scales"
                )
                knobs["scale_jitter"] = gr.Checkbox(
                    label="Random resize-and-crop (half of the samples)", elem_id="augment-scale-jitter"
                )
            for name, suffix, label, lo, hi, step in SLIDERS:
                knobs[name] = gr.Slider(lo, hi, step=step, label=label, elem_id=f"augment-{suffix}")
        with gr.Column(scale=3):
            with gr.Row(elem_classes="toolbar"):
                seed = gr.Number(0, precision=0, label="Seed", elem_id="augment-seed", scale=1, min_width=100)
                reroll_btn = gr.Button("🎲 Re-roll", elem_id="augment-reroll", scale=1)
                preview_btn = gr.Button("Preview", elem_id="augment-preview", scale=1)
                save_btn = gr.Button("Save for training", variant="primary", elem_id="augment-save", scale=1)
                reset_btn = gr.Button("Reset to defaults", elem_id="augment-reset", scale=1)
            message = gr.Markdown(elem_id="augment-message")
            grid = gr.Gallery(
                columns=4,
                height="auto",
                object_fit="contain",
                show_label=False,
                format="jpeg",
                elem_id="augment-grid",
                interactive=False,
            )
    names = [k for k in aug.KNOBS if k in knobs]
    knob_list = [knobs[k] for k in names]

    def _grid(slug: str | None, settings: dict[str, Any], seed_value: int) -> tuple[list, str]:
        if not slug:
            return [], "No project open."
        with open_project(root, slug) as store:
            resolution, block, size = _preview_size(store)
            items = aug.preview_grid(store, settings, int(seed_value or 0), GRID_SIZE, resolution, block)
        return items, f"{len(items)} samples · seed {int(seed_value or 0)} · {size} at {resolution} px"

    def refresh(slug: str | None):
        if not slug:
            return [*[gr.skip()] * len(knob_list), [], "No project open."]
        with open_project(root, slug) as store:
            settings = aug.load_settings(store)
        try:
            items, text = _grid(slug, settings, 0)
        except StudioError as exc:  # e.g. a new project with no images yet: show why, not an error
            items, text = [], str(exc)
        return [*[settings[k] for k in names], items, text]

    @guarded
    def preview(slug, seed_value, *values):
        return _grid(slug, _settings(values, names), seed_value)

    @guarded
    def reroll(slug, *values):
        new_seed = random.randrange(1, 1_000_000)
        items, text = _grid(slug, _settings(values, names), new_seed)
        return new_seed, items, text

    @guarded
    def save(slug, seed_value, *values):
        with open_project(root, slug) as store:
            saved = aug.save_settings(store, _settings(values, names))
        items, text = _grid(slug, saved, seed_value)
        return [
            *[saved[k] for k in names],
            items,
            f"✅ Saved: the next training run uses these settings. {text}",
        ]

    @guarded
    def reset(slug, seed_value):
        defaults = aug.default_settings()
        items, text = _grid(slug, defaults, seed_value)
        return [*[defaults[k] for k in names], items, f"Defaults restored (not saved yet). {text}"]

    preview_btn.click(preview, [ctx.project, seed, *knob_list], [grid, message])
    seed.submit(preview, [ctx.project, seed, *knob_list], [grid, message])
    reroll_btn.click(reroll, [ctx.project, *knob_list], [seed, grid, message])
    save_btn.click(save, [ctx.project, seed, *knob_list], [*knob_list, grid, message])
    reset_btn.click(reset, [ctx.project, seed], [*knob_list, grid, message])
    return PageHooks(refresh=refresh, outputs=[*knob_list, grid, message])
