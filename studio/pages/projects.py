"""Projects page: list with counts, create, open, rename, delete (with a confirmation step)."""

from __future__ import annotations

import gradio as gr

from studio.pages import PageContext, PageHooks, guarded
from studio.services.projects import catalog as svc

TITLE = "Projects"
TAB_ID = "tab-projects"
HEADERS = ["Name", "Folder", "Images", "Boxes", "Classes", "Created"]


def _views(root, selected: str | None) -> tuple[list[list[object]], gr.Dropdown]:
    """The table rows and the picker (keeping ``selected`` when it still exists), from one listing."""
    infos = svc.list_projects(root)
    rows = [
        [p.name, p.slug, p.n_images, p.n_boxes, p.n_classes, f"{p.created_at:%Y-%m-%d %H:%M}"] for p in infos
    ]
    slugs = [p.slug for p in infos]
    value = selected if selected in slugs else (slugs[0] if slugs else None)
    return rows, gr.Dropdown(choices=[(f"{p.name} ({p.slug})", p.slug) for p in infos], value=value)


def build(ctx: PageContext) -> PageHooks:
    root = ctx.root
    gr.Markdown("Each project keeps its images, labels, runs and exports in its own folder.")
    table = gr.Dataframe(
        headers=HEADERS, value=[], interactive=False, elem_id="projects-table", label="Projects", wrap=True
    )
    with gr.Row(elem_classes="toolbar"):
        picker = gr.Dropdown(label="Project", choices=[], elem_id="projects-select", scale=3)
        open_btn = gr.Button("Open", variant="primary", elem_id="projects-open", scale=1)
        delete_btn = gr.Button("Delete…", variant="stop", elem_id="projects-delete", scale=1)
    with gr.Row(
        visible=False, elem_id="projects-delete-confirm-row", elem_classes="toolbar confirm"
    ) as confirm_row:
        confirm_md = gr.Markdown(elem_id="projects-delete-message")
        confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="projects-delete-confirm")
        cancel_btn = gr.Button("Cancel", elem_id="projects-delete-cancel")
    with gr.Row():
        with gr.Column():
            new_name = gr.Textbox(
                label="New project name", placeholder="e.g. Bottle caps", elem_id="projects-new-name"
            )
            create_btn = gr.Button("Create project", variant="primary", elem_id="projects-create")
        with gr.Column():
            rename_name = gr.Textbox(label="Rename selected project to", elem_id="projects-rename-name")
            rename_btn = gr.Button("Rename", elem_id="projects-rename")

    def refresh(slug: str | None):
        return _views(root, slug)

    @guarded
    def create(name: str):
        info = svc.create_project(root, name)
        gr.Info(f"Created project '{info.name}'. Import a dataset on the Data tab.")
        return *_views(root, info.slug), info.slug, gr.Tabs(selected="tab-data"), ""

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
        return *_views(root, selected), ctx.header_text(current), ""

    @guarded
    def ask_delete(selected: str | None):
        if not selected:
            raise gr.Error("Pick a project to delete.")
        msg = f"Delete **{selected}** with all its images, labels, runs and exports? This cannot be undone."
        return gr.Row(visible=True), msg

    @guarded
    def delete(selected: str | None, current: str | None):
        svc.delete_project(root, selected)
        gr.Info(f"Deleted project '{selected}'.")
        remaining = [p.slug for p in svc.list_projects(root)]
        new_current = current if current in remaining else (remaining[0] if remaining else None)
        return *_views(root, new_current), new_current, gr.Row(visible=False)

    create_btn.click(create, [new_name], [table, picker, ctx.project, ctx.tabs, new_name])
    new_name.submit(create, [new_name], [table, picker, ctx.project, ctx.tabs, new_name])
    open_btn.click(open_, [picker], [ctx.project, ctx.tabs])
    rename_btn.click(rename, [picker, rename_name, ctx.project], [table, picker, ctx.header, rename_name])
    delete_btn.click(ask_delete, [picker], [confirm_row, confirm_md])
    cancel_btn.click(lambda: gr.Row(visible=False), None, [confirm_row])
    confirm_btn.click(delete, [picker, ctx.project], [table, picker, ctx.project, confirm_row])
    return PageHooks(refresh=refresh, outputs=[table, picker])
