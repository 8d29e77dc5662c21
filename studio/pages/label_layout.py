"""The Label page's components: constants, the keyboard-shortcut help, one dataclass of components per
panel (queue filters, editor view, buttons, auto split, model panel, add panel) and their builders.

Why a module of its own: :mod:`studio.pages.label` is then only the handlers and their wiring, and each
half reads on its own (the components without the events, the events by the names of the components).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import gradio as gr
from gradio_image_annotation import image_annotator

from studio.services.label import editor_format as ed
from studio.services.label import labeling as lab
from studio.services.label import next as nxt
from studio.services.label import session as ses
from studio.services.label.saving import LabelCursor

ALL = ses.ALL
SPLIT_FILTER = [
    ("All splits", ALL),
    ("train", "train"),
    ("valid", "valid"),
    ("test", "test"),
    ("unassigned", lab.UNASSIGNED),
]
STATUS_FILTER = [
    ("Any status", ALL),
    ("unlabeled", "unlabeled"),
    ("labeled", "labeled"),
    ("reviewed", "reviewed"),
]
SPLIT_CHOICES = ["train", "valid", "test", lab.UNASSIGNED]
ORDER_CHOICES = [("File order", nxt.ORDER_FILE), ("Most useful first (diversity)", nxt.ORDER_USEFUL)]
EDITOR_HEIGHT = 560

SHORTCUTS_HTML = """
<div class="label-shortcuts"><b>Keys</b> (outside text boxes):
<kbd>→</kbd>/<kbd>N</kbd> next · <kbd>←</kbd>/<kbd>P</kbd> previous · <kbd>S</kbd> save · <kbd>Z</kbd> undo ·
<kbd>X</kbd> no objects · <kbd>1</kbd>–<kbd>9</kbd> class for new boxes · on the image: <kbd>C</kbd> draw,
<kbd>D</kbd> move/resize, <kbd>Delete</kbd> delete the selected box; double-click a box in move mode (or select
it and press <kbd>E</kbd>) to change its class. The editor's own ↺ / ↻ undo unsaved edits; <kbd>Z</kbd> undoes saves.
Magenta boxes labelled <code>? class score #id</code> are model proposals: move or re-class one to accept it,
delete it to reject it.</div>
"""
SHORTCUTS_JS = """
if (!window.__studioLabelKeys) {
  window.__studioLabelKeys = true;
  const click = (sel) => { const el = document.querySelector(sel); if (el && el.offsetParent !== null) el.click(); };
  document.addEventListener('keydown', (ev) => {
    const tab = document.querySelector('#label-editor');
    if (!tab || tab.offsetParent === null) return;           // only while the Label tab is shown
    const t = ev.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)) return;
    if (ev.altKey || ev.metaKey) return;
    const k = ev.key.toLowerCase();
    let handled = true;
    if (ev.ctrlKey) {
      if (k === 's') click('#label-save'); else if (k === 'z') click('#label-undo'); else handled = false;
    } else if (k === 'arrowright' || k === 'n') click('#label-next');
    else if (k === 'arrowleft' || k === 'p') click('#label-prev');
    else if (k === 's') click('#label-save');
    else if (k === 'z') click('#label-undo');
    else if (k === 'x') click('#label-no-objects');
    else if (/^[1-9]$/.test(k)) {
      const radios = document.querySelectorAll('#label-class input[type=radio]');
      const r = radios[parseInt(k) - 1]; if (r) r.click(); else handled = false;
    } else handled = false;
    if (handled) { ev.preventDefault(); ev.stopPropagation(); }
  }, true);
  // Leaving the Label tab saves the image first: the save is dispatched while the editor is still
  // shown, so it carries the boxes on screen (a hidden editor cannot be read reliably afterwards).
  document.addEventListener('pointerdown', (ev) => {
    const tab = ev.target && ev.target.closest && ev.target.closest('#studio-tabs button[role=tab]');
    if (!tab || tab.getAttribute('aria-selected') === 'true') return;
    click('#label-save');
  }, true);
}
"""


# -- components ----------------------------------------------------------------------------------------


class _Group:
    """A dataclass of components: ``list()`` gives them in field order (for event inputs/outputs)."""

    def list(self) -> list[Any]:
        return [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]


@dataclass
class Filters(_Group):
    split: gr.Dropdown
    cls: gr.Dropdown
    status: gr.Dropdown
    problems: gr.Checkbox
    order: gr.Dropdown


@dataclass
class View(_Group):
    """What every image-changing action updates; :meth:`show` turns a service view into updates."""

    editor: Any
    position: gr.Markdown
    info: gr.Markdown
    split: gr.Radio
    pick: gr.Dropdown
    message: gr.Markdown
    cursor: gr.State
    class_radio: gr.Radio
    reason: gr.Markdown

    def show(self, v: ses.LabelView) -> dict[Any, Any]:
        if not v.redraw:
            return {self.message: v.message}
        props = {} if v.label_list is None else {"label_list": v.label_list, "label_colors": v.label_colors}
        return {
            self.editor: gr.update(value=v.editor, **props),
            self.position: v.position,
            self.info: v.info,
            self.split: gr.Radio(value=v.split),
            self.pick: gr.Dropdown(choices=v.picks, value=v.picks[0][1] if v.picks else None),
            self.message: v.message,
            self.cursor: v.cursor,
            self.class_radio: gr.Radio(choices=v.class_choices, value=v.class_value),
            self.reason: v.reason,
        }


@dataclass
class Buttons(_Group):
    prev: gr.Button
    next: gr.Button
    save: gr.Button
    undo: gr.Button
    empty: gr.Button
    new_class: gr.Textbox
    new_class_btn: gr.Button


@dataclass
class AutoSplit(_Group):
    train: gr.Number
    valid: gr.Number
    test: gr.Number
    seed: gr.Number
    only_new: gr.Checkbox
    run: gr.Button
    result: gr.Markdown


@dataclass
class ModelPanel(_Group):
    run: gr.Dropdown
    path: gr.Textbox
    threshold: gr.Slider
    propose: gr.Button
    batch: gr.Button
    cancel: gr.Button
    message: gr.Markdown
    accept_all: gr.Button
    reject_all: gr.Button
    accept_one: gr.Button
    reject_one: gr.Button


@dataclass
class AddPanel(_Group):
    files: gr.File
    path: gr.Textbox
    run: gr.Button
    report: gr.Markdown


@dataclass
class LabelTab:
    """Every component of the tab, by panel, plus the tab's state."""

    filters: Filters
    view: View
    buttons: Buttons
    auto: AutoSplit
    model: ModelPanel
    add: AddPanel
    history: gr.State
    token: gr.State


# -- layout (one builder per panel) ---------------------------------------------------------------------


def _filters() -> Filters:
    return Filters(
        gr.Dropdown(SPLIT_FILTER, value=ALL, label="Split", elem_id="label-filter-split"),
        gr.Dropdown([("All classes", ALL)], value=ALL, label="Class", elem_id="label-filter-class"),
        gr.Dropdown(STATUS_FILTER, value=ALL, label="Status", elem_id="label-filter-status"),
        gr.Checkbox(label="Only images with import problems", elem_id="label-filter-problems"),
        gr.Dropdown(ORDER_CHOICES, value=nxt.ORDER_FILE, label="Queue order", elem_id="label-queue-order"),
    )


def _auto_split() -> AutoSplit:
    with gr.Accordion("Automatic stratified split", open=False, elem_id="label-auto-split"):
        with gr.Row():
            train = gr.Number(70, label="train %", minimum=0, elem_id="label-auto-train")
            valid = gr.Number(20, label="valid %", minimum=0, elem_id="label-auto-valid")
            test = gr.Number(10, label="test %", minimum=0, elem_id="label-auto-test")
        seed = gr.Number(0, label="Seed", precision=0, elem_id="label-auto-seed")
        only_new = gr.Checkbox(label="Only images without a split", elem_id="label-auto-only-unassigned")
        run = gr.Button("Split all images by class", elem_id="label-auto-split-btn")
        result = gr.Markdown(elem_id="label-auto-split-result")
    return AutoSplit(train, valid, test, seed, only_new, run, result)


def _editor() -> Any:
    return image_annotator(
        None,
        label_list=[ed.NEW_BOX_LABEL],
        label_colors=[ed.NEW_BOX_COLOR],
        sources=[],
        show_clear_button=False,
        show_remove_button=True,
        show_download_button=False,
        use_default_label=True,
        height=EDITOR_HEIGHT,
        box_min_size=4,
        image_type="filepath",
        show_label=False,
        elem_id="label-editor",
    )


def _queue_column() -> tuple[Filters, dict[str, Any], AutoSplit]:
    """Left column: filters, position and prev/next, image info, its split, the automatic split."""
    with gr.Column(scale=1, min_width=280):
        filters = _filters()
        parts = {"position": gr.Markdown("0 / 0", elem_id="label-position")}
        with gr.Row():
            parts["prev"] = gr.Button("◀ Previous", elem_id="label-prev")
            parts["next"] = gr.Button("Next ▶", elem_id="label-next")
        parts["info"] = gr.Markdown(elem_id="label-image-info")
        parts["reason"] = gr.Markdown(elem_id="label-next-reason")
        parts["split"] = gr.Radio(SPLIT_CHOICES, label="Split of this image", elem_id="label-split")
        auto = _auto_split()
    return filters, parts, auto


def _editor_column() -> dict[str, Any]:
    """Right column: class picker and new class, the box editor, save / undo / no objects, message."""
    parts: dict[str, Any] = {}
    with gr.Column(scale=3):
        with gr.Row(elem_classes="toolbar"):
            parts["class_radio"] = gr.Radio(
                [], label="Class for new boxes (given on save)", elem_id="label-class", scale=4
            )
            parts["new_class"] = gr.Textbox(
                label="New class", placeholder="name", elem_id="label-new-class", scale=1
            )
            parts["new_class_btn"] = gr.Button(
                "Add class", elem_id="label-new-class-btn", scale=0, min_width=110
            )
        parts["editor"] = _editor()
        with gr.Row():
            parts["save"] = gr.Button("Save (S)", variant="primary", elem_id="label-save")
            parts["undo"] = gr.Button("Undo (Z)", elem_id="label-undo")
            parts["empty"] = gr.Button("No objects (X)", elem_id="label-no-objects")
        parts["message"] = gr.Markdown(elem_id="label-message")
        gr.HTML(SHORTCUTS_HTML, js_on_load=SHORTCUTS_JS, elem_id="label-shortcuts")
    return parts


def _model_panel() -> tuple[ModelPanel, gr.Dropdown]:
    """Model-assisted labeling: model choice, propose / pre-label, accept or reject proposals."""
    with gr.Accordion("Model-assisted labeling", open=False, elem_id="label-model"):
        with gr.Row(elem_classes="toolbar"):
            run = gr.Dropdown([], label="Trained run", elem_id="label-model-run", scale=2)
            path = gr.Textbox(label="…or a checkpoint file (.pth)", elem_id="label-model-path", scale=2)
            threshold = gr.Slider(
                0.0, 1.0, value=0.5, step=0.01, label="Confidence", elem_id="label-model-threshold"
            )
        with gr.Row():
            propose = gr.Button("Propose boxes for this image", elem_id="label-propose")
            batch = gr.Button("Pre-label all unlabeled images", elem_id="label-prelabel-all")
            cancel = gr.Button("Cancel pre-labeling", variant="stop", elem_id="label-prelabel-cancel")
        message = gr.Markdown(elem_id="label-model-message")
        with gr.Row(elem_classes="toolbar"):
            accept_all = gr.Button("Accept all proposals", variant="primary", elem_id="label-accept-all")
            reject_all = gr.Button("Reject all proposals", elem_id="label-reject-all")
            pick = gr.Dropdown([], label="Proposal", elem_id="label-proposal-pick")
            accept_one = gr.Button("Accept this one", elem_id="label-accept-one")
            reject_one = gr.Button("Reject this one", elem_id="label-reject-one")
    panel = ModelPanel(
        run, path, threshold, propose, batch, cancel, message, accept_all, reject_all, accept_one, reject_one
    )
    return panel, pick


def _add_panel() -> AddPanel:
    with gr.Accordion("Add images", open=False, elem_id="label-add"):
        with gr.Row(elem_classes="toolbar"):
            files = gr.File(
                label="Images or a .zip",
                file_count="multiple",
                type="filepath",
                file_types=["image", ".zip"],
                height=110,
                elem_id="label-add-files",
            )
            path = gr.Textbox(label="…or a folder / .zip on this machine", elem_id="label-add-path")
            run = gr.Button(
                "Add to project", variant="primary", elem_id="label-add-btn", scale=0, min_width=150
            )
        report = gr.Markdown(elem_id="label-add-report")
    return AddPanel(files, path, run, report)


def _layout() -> LabelTab:
    with gr.Row(equal_height=False):
        filters, left, auto = _queue_column()
        right = _editor_column()
    model, pick = _model_panel()
    add = _add_panel()
    cursor = gr.State(LabelCursor())
    view = View(
        right["editor"],
        left["position"],
        left["info"],
        left["split"],
        pick,
        right["message"],
        cursor,
        right["class_radio"],
        left["reason"],
    )
    buttons = Buttons(
        left["prev"],
        left["next"],
        right["save"],
        right["undo"],
        right["empty"],
        right["new_class"],
        right["new_class_btn"],
    )
    return LabelTab(filters, view, buttons, auto, model, add, gr.State(lab.UndoHistory()), gr.State(0.0))
