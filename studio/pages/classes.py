"""Classes page: the supercategory tree, per-split counts (plotly), what the model trains on,
warnings, and rename / merge / delete / add."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.services.data import classes as svc

TITLE = "Classes"
TAB_ID = "tab-classes"
NO_PARENT = "none"


def _view(root: Path, slug: str | None):
    """Values for (trained, warnings, tree, chart, table, 5 class pickers)."""
    if not slug:
        empty = gr.Dropdown(choices=[], value=None)
        return ("No project open.", "", "", None, [], empty, empty, empty, empty, empty)
    with open_project(root, slug) as store:
        trained = svc.trainable_classes(store)
        warnings = svc.class_warnings(store)
        tree = svc.tree_html(svc.class_tree(store))
        counts = svc.class_counts(store)
        choices = svc.class_choices(store)
    trained_md = (
        f"**The model will train on {len(trained)} class(es):** " + ", ".join(f"`{c.name}`" for c in trained)
        if trained
        else "**No classes to train on yet.**"
    )
    warn_md = "\n".join(f"- ⚠️ {w.message}" for w in warnings) or "✅ No class warnings."
    headers, rows = svc.counts_table(counts)
    table = gr.Dataframe(value=rows, headers=headers)
    fig = svc.class_chart(counts) if counts else None
    picker = gr.Dropdown(choices=choices, value=None)
    parent = gr.Dropdown(choices=[("(no parent)", NO_PARENT), *choices], value=NO_PARENT)
    return (
        trained_md,
        warn_md,
        tree,
        fig,
        table,
        parent,
        picker,
        gr.Dropdown(choices=choices, value=[]),
        picker,
        picker,
    )


def build(ctx: PageContext) -> PageHooks:
    root = ctx.root
    trained = gr.Markdown(elem_id="classes-trained")
    warnings = gr.Markdown(elem_id="classes-warnings")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=260):
            gr.Markdown("### Class tree")
            tree = gr.HTML(elem_id="classes-tree")
        with gr.Column(scale=3):
            chart = gr.Plot(elem_id="classes-chart", show_label=False)
    table = gr.Dataframe(
        interactive=False, elem_id="classes-table", label="Boxes / images per split", wrap=True
    )
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
        ) as confirm_row:
            confirm_md = gr.Markdown()
            confirm_btn = gr.Button("Yes, delete", variant="stop", elem_id="classes-delete-confirm")
            cancel_btn = gr.Button("Cancel", elem_id="classes-delete-cancel")
    outputs = [trained, warnings, tree, chart, table, add_parent, ren_pick, merge_src, merge_dst, del_pick]

    def refresh(slug: str | None):
        return _view(root, slug)

    @guarded
    def add(slug, name, parent):
        with open_project(root, slug) as store:
            svc.add_class(store, name, None if parent in (None, NO_PARENT) else int(parent))
        gr.Info(f"Added class '{name.strip()}'.")

    @guarded
    def rename(slug, cat_id, name):
        if cat_id is None:
            raise gr.Error("Pick the class to rename.")
        with open_project(root, slug) as store:
            svc.rename_class(store, int(cat_id), name)
        gr.Info(f"Renamed to '{name.strip()}'.")

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
        msg = f"Delete class **{count.name}** and its **{count.total_boxes}** box(es)? Sub-classes move up a level."
        return gr.Row(visible=True), msg

    @guarded
    def delete(slug, cat_id):
        with open_project(root, slug) as store:
            removed = svc.delete_class(store, int(cat_id))
        gr.Info(f"Class deleted with {removed} box(es).")
        return gr.Row(visible=False)

    def on_success(event) -> None:
        event.success(refresh, [ctx.project], outputs).then(ctx.header_text, [ctx.project], [ctx.header])

    on_success(add_btn.click(add, [ctx.project, add_name, add_parent], None))
    on_success(ren_btn.click(rename, [ctx.project, ren_pick, ren_name], None))
    on_success(merge_btn.click(merge, [ctx.project, merge_src, merge_dst], None))
    del_btn.click(ask_delete, [ctx.project, del_pick], [confirm_row, confirm_md])
    cancel_btn.click(lambda: gr.Row(visible=False), None, [confirm_row])
    on_success(confirm_btn.click(delete, [ctx.project, del_pick], [confirm_row]))
    return PageHooks(refresh=refresh, outputs=outputs)
