"""Classes page: the supercategory tree, per-split counts (plotly), what the model trains on,
warnings (with the train/valid leakage through near-duplicates), and rename / merge / delete / add."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr

from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.services.data import classes as svc
from studio.services.data import duplicates as dup
from studio.text import html_text, md_text

TITLE = "Classes"
TAB_ID = "tab-classes"
NO_PARENT = "none"


@dataclass
class ClassesView:
    """The components a refresh fills, in the order of ``PageHooks.outputs``."""

    trained: gr.Markdown
    warnings: gr.Markdown
    leakage: gr.Markdown
    tree: gr.HTML
    chart: gr.Plot
    table: gr.Dataframe
    add_parent: gr.Dropdown
    rename_pick: gr.Dropdown
    merge_sources: gr.Dropdown
    merge_target: gr.Dropdown
    delete_pick: gr.Dropdown

    def components(self) -> list[Any]:
        return [getattr(self, f.name) for f in fields(self)]


@dataclass
class ClassEdits:
    """The edit controls (inputs and buttons) of the accordion."""

    add_name: gr.Textbox
    add_btn: gr.Button
    rename_name: gr.Textbox
    rename_btn: gr.Button
    merge_btn: gr.Button
    delete_btn: gr.Button
    confirm_row: gr.Row
    confirm_md: gr.Markdown
    confirm_btn: gr.Button
    cancel_btn: gr.Button


def _values(root: Path, slug: str | None, ui: ClassesView) -> dict[Any, Any]:
    """New values for every component of ``ui``."""
    if not slug:
        pickers = [ui.add_parent, ui.rename_pick, ui.merge_sources, ui.merge_target, ui.delete_pick]
        empty = {c: gr.Dropdown(choices=[], value=None) for c in pickers}
        return {
            ui.trained: "No project open.",
            ui.warnings: "",
            ui.leakage: "",
            ui.tree: "",
            ui.chart: None,
            ui.table: [],
        } | empty
    with open_project(root, slug) as store:
        view = svc.class_overview(store)
        leakage = dup.leakage_line(store)
    picker = gr.Dropdown(choices=view.choices, value=None)
    return {
        ui.trained: view.trained_md,
        ui.warnings: view.warnings_md,
        ui.leakage: f"**Leakage:** {md_text(leakage)} See Data → Duplicates." if leakage else "",
        ui.tree: view.tree_html,
        ui.chart: _chart(view.counts),
        ui.table: gr.Dataframe(value=view.table_rows, headers=view.table_headers),
        ui.add_parent: gr.Dropdown(choices=[("(no parent)", NO_PARENT), *view.choices], value=NO_PARENT),
        ui.rename_pick: picker,
        ui.merge_sources: gr.Dropdown(choices=view.choices, value=[]),
        ui.merge_target: picker,
        ui.delete_pick: picker,
    }


def _chart(counts: list[svc.ClassCount]) -> Any:
    """The chart, with a new draw id each time.

    Why: Gradio draws a plot only when its value changes, and plotly sizes a figure drawn in a hidden
    tab (every page refreshes on a project change) at its 700 px fallback, or not at all. The same
    figure arriving again on tab select was therefore never redrawn: the chart stayed blank or squeezed.
    A fresh ``layout.meta`` makes every refresh a change, so the tab-select refresh draws it visible.
    """
    if not counts:
        return None
    return svc.class_chart(counts).update_layout(meta={"draw": uuid.uuid4().hex})


def _overview_panel() -> tuple[gr.Markdown, gr.Markdown, gr.Markdown, gr.HTML, gr.Plot, gr.Dataframe]:
    trained = gr.Markdown(elem_id="classes-trained")
    warnings = gr.Markdown(elem_id="classes-warnings")
    leakage = gr.Markdown(elem_id="classes-leakage")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=260):
            gr.Markdown("### Class tree")
            tree = gr.HTML(elem_id="classes-tree")
        with gr.Column(scale=3):
            chart = gr.Plot(elem_id="classes-chart", show_label=False)
    table = gr.Dataframe(
        interactive=False, elem_id="classes-table", label="Boxes / images per split", wrap=True
    )
    return trained, warnings, leakage, tree, chart, table


def _edit_panel() -> tuple[list[gr.Dropdown], ClassEdits]:
    """The accordion; returns its five class pickers (refreshed with the view) and the other controls."""
    with gr.Accordion("Edit classes", open=True, elem_id="classes-edit"):
        with gr.Row(elem_classes="toolbar"):
            add_name = gr.Textbox(label="New class", elem_id="classes-add-name")
            add_parent = gr.Dropdown(label="Parent (supercategory)", elem_id="classes-add-parent")
            add_btn = gr.Button("Add class", variant="primary", elem_id="classes-add-btn")
        with gr.Row(elem_classes="toolbar"):
            ren_pick = gr.Dropdown(label="Class to rename", elem_id="classes-rename-select")
            ren_name = gr.Textbox(label="New name", elem_id="classes-rename-name")
            ren_btn = gr.Button("Rename", elem_id="classes-rename-btn")
        with gr.Row(elem_classes="toolbar"):
            merge_src = gr.Dropdown(
                label="Merge these classes…", multiselect=True, elem_id="classes-merge-sources"
            )
            merge_dst = gr.Dropdown(label="…into", elem_id="classes-merge-target")
            merge_btn = gr.Button("Merge", elem_id="classes-merge-btn")
        with gr.Row(elem_classes="toolbar"):
            del_pick = gr.Dropdown(label="Class to delete (with its boxes)", elem_id="classes-delete-select")
            del_btn = gr.Button("Delete…", variant="stop", elem_id="classes-delete-btn")
        with gr.Row(
            visible=False, elem_id="classes-delete-confirm-row", elem_classes="toolbar confirm"
        ) as row:
            confirm_md = gr.Markdown()
            confirm_btn = gr.Button("Yes, delete", variant="stop", elem_id="classes-delete-confirm")
            cancel_btn = gr.Button("Cancel", elem_id="classes-delete-cancel")
    edits = ClassEdits(
        add_name, add_btn, ren_name, ren_btn, merge_btn, del_btn, row, confirm_md, confirm_btn, cancel_btn
    )
    return [add_parent, ren_pick, merge_src, merge_dst, del_pick], edits


@dataclass
class EditHandlers:
    add: Callable[..., Any]
    rename: Callable[..., Any]
    merge: Callable[..., Any]
    ask_delete: Callable[..., Any]
    delete: Callable[..., Any]


def _edit_handlers(root: Path) -> EditHandlers:
    """One handler per edit; each calls one service function and says what it did (names escaped)."""

    @guarded
    def add(slug, name, parent):
        with open_project(root, slug) as store:
            svc.add_class(store, name, None if parent in (None, NO_PARENT) else int(parent))
        gr.Info(f"Added class '{html_text(name.strip())}'.")

    @guarded
    def rename(slug, cat_id, name):
        if cat_id is None:
            raise gr.Error("Pick the class to rename.")
        with open_project(root, slug) as store:
            svc.rename_class(store, int(cat_id), name)
        gr.Info(f"Renamed to '{html_text(name.strip())}'.")

    @guarded
    def merge(slug, sources, target):
        if not sources or target is None:
            raise gr.Error("Pick the classes to merge and the class to merge them into.")
        with open_project(root, slug) as store:
            moved = svc.merge_classes(store, [int(s) for s in sources], int(target))
        gr.Info(f"Merged: {moved} box(es) moved.")

    @guarded
    def ask_delete(slug, cat_id):
        if cat_id is None:
            raise gr.Error("Pick the class to delete.")
        with open_project(root, slug) as store:
            count = next((c for c in svc.class_counts(store) if c.id == int(cat_id)), None)
        if count is None:
            raise gr.Error("That class no longer exists.")
        name = md_text(count.name)
        msg = f"Delete class **{name}** and its **{count.total_boxes}** box(es)? Sub-classes move up a level."
        return gr.Row(visible=True), msg

    @guarded
    def delete(slug, cat_id):
        with open_project(root, slug) as store:
            removed = svc.delete_class(store, int(cat_id))
        gr.Info(f"Class deleted with {removed} box(es).")
        return gr.Row(visible=False)

    return EditHandlers(add, rename, merge, ask_delete, delete)


def _wire_edits(ctx: PageContext, ui: ClassesView, edits: ClassEdits, refresh) -> None:
    h = _edit_handlers(ctx.root)
    outputs = ui.components()

    def on_success(event) -> None:
        event.success(refresh, [ctx.project], outputs).then(ctx.header_text, [ctx.project], [ctx.header])

    on_success(edits.add_btn.click(h.add, [ctx.project, edits.add_name, ui.add_parent], None))
    on_success(edits.rename_btn.click(h.rename, [ctx.project, ui.rename_pick, edits.rename_name], None))
    on_success(edits.merge_btn.click(h.merge, [ctx.project, ui.merge_sources, ui.merge_target], None))
    edits.delete_btn.click(h.ask_delete, [ctx.project, ui.delete_pick], [edits.confirm_row, edits.confirm_md])
    edits.cancel_btn.click(lambda: gr.Row(visible=False), None, [edits.confirm_row])
    on_success(edits.confirm_btn.click(h.delete, [ctx.project, ui.delete_pick], [edits.confirm_row]))


def build(ctx: PageContext) -> PageHooks:
    root = ctx.root
    overview = _overview_panel()
    pickers, edits = _edit_panel()
    ui = ClassesView(*overview, *pickers)

    def refresh(slug: str | None):
        values = _values(root, slug, ui)
        return [values[c] for c in ui.components()]

    _wire_edits(ctx, ui, edits, refresh)
    return PageHooks(refresh=refresh, outputs=ui.components())
