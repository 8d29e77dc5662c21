"""Data page: import (folder path or .zip upload) with progress and report, a paged gallery with
boxes drawn and split/class filters, COCO / YOLO zip export, and the Duplicates panel (near-copies,
train/valid leakage, keep one / move the group into one split; :mod:`studio.services.data.duplicates`)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gradio as gr

from studio.housekeeping import export_temp_dir
from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.services.data import duplicates as dup
from studio.services.data import gallery as gal
from studio.services.data.importing.report import ImportAborted
from studio.text import html_text, md_text

TITLE = "Data"
TAB_ID = "tab-data"
PAGE_SIZE = 24
THUMB_SIDE = 480
ALL = gal.ALL
SPLIT_CHOICES = [
    ("All splits", ALL),
    ("train", "train"),
    ("valid", "valid"),
    ("test", "test"),
    ("unassigned", gal.UNASSIGNED),
]


@dataclass(frozen=True)
class DataState:
    """What the gallery shows (the tab's ``gr.State``).

    Why keep it: a Gradio dropdown sends ``input`` twice per mouse pick (on select and on blur); a
    request for exactly what is shown is skipped, and the filter events run ``always_last`` so the
    last pick wins even when it arrives while an earlier one is still running.
    """

    slug: str | None = None
    split: str = ALL
    class_id: int | str = ALL
    page: int = 0


@dataclass
class DupUI:
    """The Duplicates panel. ``groups`` (gr.State) holds the image ids of each group as last shown, so
    an action acts on the group the user saw."""

    find: gr.Button
    summary: gr.Markdown
    group: gr.Dropdown
    gallery: gr.Gallery
    keep: gr.Dropdown
    keep_btn: gr.Button
    split: gr.Dropdown
    move_btn: gr.Button
    groups: gr.State

    def outputs(self) -> list[Any]:
        return [self.summary, self.group, self.gallery, self.keep, self.groups]


@dataclass
class DataUI:
    """The page's components, by name."""

    summary: gr.Markdown
    export_coco: gr.Button
    export_yolo: gr.Button
    export_file: gr.File
    path_box: gr.Textbox
    upload: gr.File
    import_btn: gr.Button
    report: gr.Markdown
    split_dd: gr.Dropdown
    class_dd: gr.Dropdown
    prev_btn: gr.Button
    next_btn: gr.Button
    page_info: gr.Markdown
    gallery: gr.Gallery
    state: gr.State
    dup: DupUI

    def view_outputs(self) -> list[Any]:
        """What showing a gallery page updates."""
        return [self.gallery, self.page_info, self.state, self.summary, self.class_dd]

    def refresh_outputs(self) -> list[Any]:
        """What a refresh updates: the view, and for another project the filters and the import panel."""
        return [
            *self.view_outputs(),
            self.split_dd,
            self.report,
            self.upload,
            self.export_file,
            *self.dup.outputs(),
        ]


def _view(root: Path, ui: DataUI, want: DataState) -> dict[Any, Any]:
    """Values for :meth:`DataUI.view_outputs` showing ``want`` (the page clamped, the class checked)."""
    if not want.slug:
        no_class = gr.Dropdown(choices=[("All classes", ALL)], value=ALL)
        return {
            ui.gallery: [],
            ui.page_info: "No project open.",
            ui.state: DataState(),
            ui.summary: "",
            ui.class_dd: no_class,
        }
    with open_project(root, want.slug) as store:
        view = gal.gallery_view(store, want.split, want.class_id, want.page, PAGE_SIZE, THUMB_SIDE)
        summary = gal.summary_markdown(store)
    return {
        ui.gallery: view.items,
        ui.page_info: view.page_info,
        ui.state: replace(want, class_id=view.class_value, page=view.page),
        ui.summary: summary,
        ui.class_dd: gr.Dropdown(choices=view.class_choices, value=view.class_value),
    }


def _toolbar() -> tuple[gr.Markdown, gr.Button, gr.Button, gr.File]:
    with gr.Row(elem_classes="toolbar"):
        summary = gr.Markdown(elem_id="data-summary")
        coco_btn = gr.Button("Export COCO zip", elem_id="data-export-coco", scale=0, min_width=200)
        yolo_btn = gr.Button("Export YOLO zip", elem_id="data-export-yolo", scale=0, min_width=200)
    export_file = gr.File(label="Download", interactive=False, visible=False, elem_id="data-export-file")
    return summary, coco_btn, yolo_btn, export_file


def _import_panel() -> tuple[gr.Textbox, gr.File, gr.Button, gr.Markdown]:
    with gr.Row(elem_id="data-import-panel", elem_classes="toolbar"):
        path_box = gr.Textbox(
            label="Import a dataset: folder or .zip on this machine",
            info="COCO (Roboflow layout or one json), YOLO (data.yaml) or plain images.",
            placeholder="/data/my_dataset",
            elem_id="data-import-path",
        )
        upload = gr.File(
            label="…or upload a .zip",
            file_types=[".zip"],
            type="filepath",
            height=110,
            elem_id="data-import-zip",
        )
        import_btn = gr.Button("Import", variant="primary", elem_id="data-import-btn", scale=0, min_width=140)
    report = gr.Markdown(elem_id="data-import-report")
    return path_box, upload, import_btn, report


def _gallery_panel() -> tuple[gr.Dropdown, gr.Dropdown, gr.Button, gr.Button, gr.Markdown, gr.Gallery]:
    gr.Markdown("### Images")
    with gr.Row(elem_classes="toolbar"):
        split_dd = gr.Dropdown(SPLIT_CHOICES, value=ALL, label="Split", elem_id="data-filter-split", scale=2)
        class_dd = gr.Dropdown(
            [("All classes", ALL)], value=ALL, label="Class", elem_id="data-filter-class", scale=2
        )
        prev_btn = gr.Button("◀ Previous", elem_id="data-prev", scale=1)
        next_btn = gr.Button("Next ▶", elem_id="data-next", scale=1)
    page_info = gr.Markdown(elem_id="data-page-info")
    gallery = gr.Gallery(
        columns=4,
        height="auto",
        object_fit="contain",
        allow_preview=True,
        show_label=False,
        format="jpeg",
        elem_id="data-gallery",
        interactive=False,
    )
    return split_dd, class_dd, prev_btn, next_btn, page_info, gallery


def _duplicates_panel() -> DupUI:
    with gr.Column(elem_id="data-dup-panel"):
        gr.Markdown("### Duplicates")
        with gr.Row(elem_classes="toolbar"):
            find = gr.Button("Find duplicates", elem_id="data-dup-find", scale=0, min_width=180)
            summary = gr.Markdown(elem_id="data-dup-summary")
        group = gr.Dropdown([], label="Group", elem_id="data-dup-group")
        gallery = gr.Gallery(
            columns=6, height="auto", object_fit="contain", show_label=False, format="jpeg",
            elem_id="data-dup-gallery", interactive=False,
        )  # fmt: skip
        with gr.Row(elem_classes="toolbar"):
            keep = gr.Dropdown([], label="Image to keep", elem_id="data-dup-keep", scale=2)
            keep_btn = gr.Button(
                "Keep this one, delete the others", variant="stop", elem_id="data-dup-keep-btn"
            )
            split = gr.Dropdown(
                ["train", "valid", "test"], value="train", label="Split", elem_id="data-dup-split"
            )
            move_btn = gr.Button("Move the group into this split", elem_id="data-dup-move-btn")
    return DupUI(find, summary, group, gallery, keep, keep_btn, split, move_btn, gr.State([]))


def _dup_values(root: Path, d: DupUI, slug: str | None, index: int | None, note: str = "") -> dict[Any, Any]:
    """The panel's values for group ``index`` (``note``: the result of the action just done)."""
    if not slug:
        return {
            d.summary: "",
            d.group: gr.Dropdown(choices=[], value=None),
            d.gallery: [],
            d.keep: None,
            d.groups: [],
        }
    with open_project(root, slug) as store:
        v = dup.duplicates_view(store, index)
    return {
        d.summary: (note + " " if note else "") + v.summary,
        d.group: gr.Dropdown(choices=v.group_choices, value=v.group_index),
        d.gallery: v.items,
        d.keep: gr.Dropdown(choices=v.keep_choices, value=v.keep_choices[0][1] if v.keep_choices else None),
        d.groups: v.groups,
    }


def _wire_duplicates(ctx: PageContext, ui: DataUI) -> None:
    root, d = ctx.root, ui.dup

    def group_ids(groups: list[list[int]], index: int | None) -> list[int]:
        if index is None or not 0 <= int(index) < len(groups):
            raise gr.Error("Find duplicates and pick a group first.")
        return groups[int(index)]

    @guarded
    def keep(slug, groups, index, keep_id):
        if keep_id is None:
            raise gr.Error("Pick the image to keep.")
        with open_project(root, slug) as store:
            gone = dup.keep_one(store, int(keep_id), group_ids(groups, index))
        return _dup_values(root, d, slug, index, f"Deleted {len(gone)} image(s).")

    @guarded
    def move(slug, groups, index, split):
        with open_project(root, slug) as store:
            n = dup.move_group(store, group_ids(groups, index), split)
        return _dup_values(root, d, slug, index, f"Moved {n} image(s) to {md_text(split)}.")

    reload = guarded(lambda slug, split, class_id: _view(root, ui, DataState(slug, split, class_id, 0)))
    d.find.click(guarded(lambda slug: _dup_values(root, d, slug, 0)), [ctx.project], d.outputs())
    d.group.input(guarded(lambda slug, i: _dup_values(root, d, slug, i)), [ctx.project, d.group], d.outputs())
    d.keep_btn.click(keep, [ctx.project, d.groups, d.group, d.keep], d.outputs()).success(
        reload, [ctx.project, ui.split_dd, ui.class_dd], ui.view_outputs()
    ).then(ctx.header_text, [ctx.project], [ctx.header])
    d.move_btn.click(move, [ctx.project, d.groups, d.group, d.split], d.outputs()).success(
        reload, [ctx.project, ui.split_dd, ui.class_dd], ui.view_outputs()
    )


def _run_import(root: Path, slug: str | None, path_text: str, zip_path: str | None, progress) -> str:
    """Import the upload (or the typed path) and return the report, whose Source is the name the user
    knows: the uploaded file's own name, not the server's temporary path."""
    from studio.services.data.importing.importer import import_dataset

    source = zip_path or (path_text or "").strip()
    if not source:
        raise gr.Error("Type a folder or .zip path, or upload a .zip file.")
    shown = Path(zip_path).name if zip_path else source
    with open_project(root, slug) as store:
        try:
            result = import_dataset(store, Path(source), progress=lambda f, m: progress(f, desc=m))
        except ImportAborted as exc:
            gr.Warning(f"Import aborted, nothing was changed: {html_text(exc)}")
            if exc.report is None:
                return f"**Import aborted:** {md_text(exc)}"
            exc.report.source = shown
            return exc.report.to_markdown()
    result.source = shown
    gr.Info(result.summary())
    return result.to_markdown()


def _wire(ctx: PageContext, ui: DataUI) -> None:
    root = ctx.root

    @guarded
    def show(slug, split, class_id, state: DataState, delta: int | None = None):
        """A filter pick (``delta`` None: first page, skipped when it is what is shown) or paging."""
        want = DataState(slug, split, class_id, 0 if delta is None else state.page + delta)
        if delta is None and want == state:
            return {c: gr.skip() for c in ui.view_outputs()}
        return _view(root, ui, want)

    @guarded
    def run_import(slug, path_text, zip_path, progress=gr.Progress()):
        return _run_import(root, slug, path_text, zip_path, progress)

    @guarded
    def export(slug, fmt):
        from studio.services.data.dataset_export import export_zip

        with open_project(root, slug) as store:
            out = Path(tempfile.mkdtemp(prefix="studio-export-", dir=export_temp_dir())) / f"{slug}-{fmt}.zip"
            return gr.File(value=str(export_zip(store, fmt, out)), visible=True)

    filters, views = [ctx.project, ui.split_dd, ui.class_dd, ui.state], ui.view_outputs()
    reload = guarded(lambda slug, split, class_id: _view(root, ui, DataState(slug, split, class_id, 0)))
    ui.import_btn.click(run_import, [ctx.project, ui.path_box, ui.upload], [ui.report]).then(
        reload, filters[:3], views
    ).then(ctx.header_text, [ctx.project], [ctx.header])
    ui.split_dd.input(show, filters, views, trigger_mode="always_last")
    ui.class_dd.input(show, filters, views, trigger_mode="always_last")
    ui.prev_btn.click(lambda *a: show(*a, -1), filters, views)
    ui.next_btn.click(lambda *a: show(*a, 1), filters, views)
    ui.export_coco.click(lambda s: export(s, "coco"), [ctx.project], [ui.export_file])
    ui.export_yolo.click(lambda s: export(s, "yolo"), [ctx.project], [ui.export_file])


def build(ctx: PageContext) -> PageHooks:
    state = gr.State(DataState())
    toolbar = _toolbar()
    ui = DataUI(*toolbar, *_import_panel(), *_gallery_panel(), state, _duplicates_panel())
    _wire(ctx, ui)
    _wire_duplicates(ctx, ui)

    def refresh(slug: str | None, shown: DataState | None = None):
        """Tab select keeps the filters of the same project; another project starts afresh, with the
        filters reset and the previous project's import report, upload and export cleared."""
        same = shown is not None and shown.slug == slug
        values = _view(ctx.root, ui, shown if same else DataState(slug))
        if not same:
            values |= {
                ui.split_dd: ALL,
                ui.report: "",
                ui.upload: None,
                ui.export_file: gr.File(value=None, visible=False),
            } | _dup_values(ctx.root, ui.dup, None, None)
        return [values.get(c, gr.skip()) for c in ui.refresh_outputs()]

    return PageHooks(refresh=refresh, outputs=ui.refresh_outputs(), select_inputs=[state])
