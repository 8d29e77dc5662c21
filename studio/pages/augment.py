"""Augment page: the augmentation knobs ``train()`` takes, stored in the project, and a grid of
training samples augmented by the trainer's own pipeline (re-roll for a new seed).

Layout and wiring only: settings, validation and the preview are :mod:`studio.services.train.augment`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.services.train import augment as aug
from studio.text import md_text

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


@dataclass
class AugmentPage:
    """The page's components; ``knobs`` in :data:`aug.KNOBS` order."""

    knobs: dict[str, gr.components.Component]
    seed: gr.Number
    reroll_btn: gr.Button
    preview_btn: gr.Button
    save_btn: gr.Button
    reset_btn: gr.Button
    message: gr.Markdown
    grid: gr.Gallery

    def knob_list(self) -> list[gr.components.Component]:
        return [self.knobs[k] for k in aug.KNOBS if k in self.knobs]

    def knob_names(self) -> list[str]:
        return [k for k in aug.KNOBS if k in self.knobs]

    def settings(self, values: tuple[Any, ...]) -> dict[str, Any]:
        """Knob values (in :meth:`knob_list` order) as settings."""
        return dict(zip(self.knob_names(), values, strict=True))

    def knob_values(self, settings: dict[str, Any]) -> dict[gr.components.Component, Any]:
        return {self.knobs[k]: settings[k] for k in self.knob_names()}

    def outputs(self) -> list[gr.components.Component]:
        return [*self.knob_list(), self.grid, self.message]


def _knobs_panel() -> dict[str, gr.components.Component]:
    knobs: dict[str, gr.components.Component] = {}
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
    return knobs


def _grid_panel(knobs: dict[str, gr.components.Component]) -> AugmentPage:
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
    return AugmentPage(knobs, seed, reroll_btn, preview_btn, save_btn, reset_btn, message, grid)


def build(ctx: PageContext) -> PageHooks:
    gr.Markdown(
        "The augmentations applied to training images, with the trainer's defaults. The grid shows real "
        "training samples as the trainer will see them (same code), boxes and classes drawn. "
        "**Save** stores the settings in the project; the next training run uses them.",
        elem_id="augment-intro",
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            knobs = _knobs_panel()
        with gr.Column(scale=3):
            page = _grid_panel(knobs)
    _wire(ctx.root, ctx.project, page)
    return PageHooks(refresh=_refresher(ctx.root, page), outputs=page.outputs())


def _grid(root: Path, slug: str | None, settings: dict[str, Any], seed: int) -> aug.Preview:
    if not slug:
        return aug.Preview([], "No project open.")
    with open_project(root, slug) as store:
        return aug.preview_for_next_run(store, settings, seed, GRID_SIZE)


def _refresher(root: Path, page: AugmentPage):
    def refresh(slug: str | None) -> list[Any]:
        if not slug:
            return [*[gr.skip()] * len(page.knob_list()), [], "No project open."]
        with open_project(root, slug) as store:
            settings = aug.load_settings(store)
        try:
            shown = _grid(root, slug, settings, 0)
        except StudioError as exc:  # e.g. a new project with no images yet: show why, not an error
            shown = aug.Preview([], md_text(str(exc)))
        values = {**page.knob_values(settings), page.grid: shown.items, page.message: shown.text}
        return [values[c] for c in page.outputs()]

    return refresh


def _wire(root: Path, project: gr.State, page: AugmentPage) -> None:
    @guarded
    def preview(slug, seed_value, *values):
        shown = _grid(root, slug, page.settings(values), seed_value)
        return {page.grid: shown.items, page.message: shown.text}

    @guarded
    def reroll(slug, *values):
        new_seed = random.randrange(1, 1_000_000)
        shown = _grid(root, slug, page.settings(values), new_seed)
        return {page.seed: new_seed, page.grid: shown.items, page.message: shown.text}

    @guarded
    def save(slug, seed_value, *values):
        with open_project(root, slug) as store:
            saved = aug.save_settings(store, page.settings(values))
        shown = _grid(root, slug, saved, seed_value)
        text = f"✅ Saved: the next training run uses these settings. {shown.text}"
        return {**page.knob_values(saved), page.grid: shown.items, page.message: text}

    @guarded
    def reset(slug, seed_value):
        defaults = aug.default_settings()
        shown = _grid(root, slug, defaults, seed_value)
        text = f"Defaults restored (not saved yet). {shown.text}"
        return {**page.knob_values(defaults), page.grid: shown.items, page.message: text}

    knobs = page.knob_list()
    page.preview_btn.click(preview, [project, page.seed, *knobs], [page.grid, page.message])
    page.seed.submit(preview, [project, page.seed, *knobs], [page.grid, page.message])
    page.reroll_btn.click(reroll, [project, *knobs], [page.seed, page.grid, page.message])
    page.save_btn.click(save, [project, page.seed, *knobs], page.outputs())
    page.reset_btn.click(reset, [project, page.seed], page.outputs())
