"""Projects page: list with counts, create, open, rename, delete (with a confirmation step)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.pages import PageContext, PageHooks, guarded
from studio.services.projects import catalog as svc
from studio.text import html_text, md_text

TITLE = "Projects"
TAB_ID = "tab-projects"
HEADERS = ["Name", "Folder", "Images", "Boxes", "Classes", "Created"]


@dataclass
class ProjectsUI:
    """The page's components, by name."""

    table: gr.Dataframe
    picker: gr.Dropdown
    open_btn: gr.Button
    delete_btn: gr.Button
    confirm_row: gr.Row
    confirm_md: gr.Markdown
    confirm_btn: gr.Button
    cancel_btn: gr.Button
    new_name: gr.Textbox
    create_btn: gr.Button
    rename_name: gr.Textbox
    rename_btn: gr.Button


def _views(root, ui: ProjectsUI, selected: str | None) -> dict[Any, Any]:
    """The table rows and the picker (keeping ``selected`` when it still exists), from one listing."""
    infos = svc.list_projects(root)
    rows = [
        [p.name, p.slug, p.n_images, p.n_boxes, p.classes_text, f"{p.created_at:%Y-%m-%d %H:%M}"]
        for p in infos
    ]
    slugs = [p.slug for p in infos]
    value = selected if selected in slugs else (slugs[0] if slugs else None)
    choices = [(f"{p.name} ({p.slug})", p.slug) for p in infos]
    return {ui.table: rows, ui.picker: gr.Dropdown(choices=choices, value=value)}


def _list_panel() -> tuple[gr.Dataframe, gr.Dropdown, gr.Button, gr.Button]:
    gr.Markdown("Each project keeps its images, labels, runs and exports in its own folder.")
    table = gr.Dataframe(
        headers=HEADERS, value=[], interactive=False, elem_id="projects-table", label="Projects", wrap=True
    )
    with gr.Row(elem_classes="toolbar"):
        picker = gr.Dropdown(label="Project", choices=[], elem_id="projects-select", scale=3)
        open_btn = gr.Button("Open", variant="primary", elem_id="projects-open", scale=1)
        delete_btn = gr.Button("Delete…", variant="stop", elem_id="projects-delete", scale=1)
    return table, picker, open_btn, delete_btn


def _confirm_panel() -> tuple[gr.Row, gr.Markdown, gr.Button, gr.Button]:
    with gr.Row(visible=False, elem_id="projects-delete-confirm-row", elem_classes="toolbar confirm") as row:
        confirm_md = gr.Markdown(elem_id="projects-delete-message")
        confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="projects-delete-confirm")
        cancel_btn = gr.Button("Cancel", elem_id="projects-delete-cancel")
    return row, confirm_md, confirm_btn, cancel_btn


def _edit_panel() -> tuple[gr.Textbox, gr.Button, gr.Textbox, gr.Button]:
    with gr.Row():
        with gr.Column():
            new_name = gr.Textbox(
                label="New project name",
                placeholder="e.g. Bottle caps",
                info=svc.FOLDER_HINT,
                elem_id="projects-new-name",
            )
            create_btn = gr.Button("Create project", variant="primary", elem_id="projects-create")
        with gr.Column():
            rename_name = gr.Textbox(label="Rename selected project to", elem_id="projects-rename-name")
            rename_btn = gr.Button("Rename", elem_id="projects-rename")
    return new_name, create_btn, rename_name, rename_btn


def _wire_create(ctx: PageContext, ui: ProjectsUI) -> None:
    root = ctx.root

    def preview(name: str):
        """Say, while the name is typed, which folder it makes ("../../etc" -> "etc")."""
        return gr.Textbox(info=svc.folder_preview(root, name))

    @guarded
    def create(name: str):
        info = svc.create_project(root, name)
        gr.Info(
            f"Created project '{html_text(info.name)}' in the folder '{info.slug}'. Import a dataset on Data."
        )
        return _views(root, ui, info.slug) | {
            ctx.project: info.slug,
            ctx.tabs: gr.Tabs(selected="tab-data"),
            ui.new_name: "",
        }

    outputs = [ui.table, ui.picker, ctx.project, ctx.tabs, ui.new_name]
    # ``change``, not ``input``: it also fires for a paste or the box cleared after Create, and updating
    # the hint leaves the value alone, so it never re-fires itself
    ui.new_name.change(preview, [ui.new_name], [ui.new_name], show_progress="hidden")
    ui.create_btn.click(create, [ui.new_name], outputs)
    ui.new_name.submit(create, [ui.new_name], outputs)


def _wire_manage(ctx: PageContext, ui: ProjectsUI) -> None:
    root = ctx.root

    @guarded
    def open_(selected: str | None):
        if not selected:
            raise gr.Error("Pick a project to open.")
        return selected, gr.Tabs(selected="tab-data")

    @guarded
    def rename(selected: str | None, name: str, current: str | None):
        if not selected:
            raise gr.Error("Pick a project to rename.")
        svc.rename_project(root, selected, name)
        return _views(root, ui, selected) | {ctx.header: ctx.header_text(current), ui.rename_name: ""}

    @guarded
    def ask_delete(selected: str | None):
        if not selected:
            raise gr.Error("Pick a project to delete.")
        msg = f"Delete **{md_text(selected)}** with all its images, labels, runs and exports? This cannot be undone."
        return gr.Row(visible=True), msg

    @guarded
    def delete(selected: str | None, current: str | None):
        svc.delete_project(root, selected)
        gr.Info(f"Deleted project '{html_text(selected)}'.")
        remaining = [p.slug for p in svc.list_projects(root)]
        new_current = current if current in remaining else (remaining[0] if remaining else None)
        return _views(root, ui, new_current) | {
            ctx.project: new_current,
            ui.confirm_row: gr.Row(visible=False),
        }

    ui.open_btn.click(open_, [ui.picker], [ctx.project, ctx.tabs])
    ui.rename_btn.click(
        rename, [ui.picker, ui.rename_name, ctx.project], [ui.table, ui.picker, ctx.header, ui.rename_name]
    )
    ui.delete_btn.click(ask_delete, [ui.picker], [ui.confirm_row, ui.confirm_md])
    ui.cancel_btn.click(lambda: gr.Row(visible=False), None, [ui.confirm_row])
    ui.confirm_btn.click(delete, [ui.picker, ctx.project], [ui.table, ui.picker, ctx.project, ui.confirm_row])


def build(ctx: PageContext) -> PageHooks:
    ui = ProjectsUI(*_list_panel(), *_confirm_panel(), *_edit_panel())
    _wire_create(ctx, ui)
    _wire_manage(ctx, ui)

    def refresh(slug: str | None):
        values = _views(ctx.root, ui, slug)
        return [values[ui.table], values[ui.picker]]

    return PageHooks(refresh=refresh, outputs=[ui.table, ui.picker])
