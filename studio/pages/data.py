"""Data page: import (folder path or .zip upload) with progress and report, a paged gallery with
boxes drawn and split/class filters, and COCO / YOLO zip export."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.services.data import gallery as gal
from studio.services.data.classes import class_choices, class_counts
from studio.services.data.importing.report import ImportAborted

TITLE = "Data"
TAB_ID = "tab-data"
PAGE_SIZE = 24
THUMB_SIDE = 480
ALL = "all"
SPLIT_CHOICES = [
    ("All splits", ALL),
    ("train", "train"),
    ("valid", "valid"),
    ("test", "test"),
    ("unassigned", gal.UNASSIGNED),
]


def _summary(store) -> str:
    counts = class_counts(store)
    page = gal.query_images(store, page_size=1)
    n_boxes = sum(c.total_boxes for c in counts)
    return f"**{page.total}** images · **{n_boxes}** boxes · **{len(counts)}** classes"


def _gallery(root: Path, slug: str | None, split: str, class_id: int | str | None, page: int):
    """Values for (gallery, page info, page state, summary, class filter)."""
    if not slug:
        return [], "No project open.", 0, "", gr.Dropdown(choices=[("All classes", ALL)], value=ALL)
    with open_project(root, slug) as store:
        choices = [("All classes", ALL), *class_choices(store)]
        valid = {v for _, v in choices}
        class_id = class_id if class_id in valid else ALL
        result = gal.query_images(
            store,
            split=None if split in (None, ALL) else split,
            category_id=None if class_id == ALL else int(class_id),
            page=page,
            page_size=PAGE_SIZE,
        )
        items = [(gal.render_image(store, it.id, max_side=THUMB_SIDE), it.caption) for it in result.items]
        summary = _summary(store)
    return items, result.summary(), result.page, summary, gr.Dropdown(choices=choices, value=class_id)


def build(ctx: PageContext) -> PageHooks:
    root = ctx.root
    page_state = gr.State(0)
    with gr.Row(elem_classes="toolbar"):
        summary = gr.Markdown(elem_id="data-summary")
        coco_btn = gr.Button("Export COCO zip", elem_id="data-export-coco", scale=0, min_width=200)
        yolo_btn = gr.Button("Export YOLO zip", elem_id="data-export-yolo", scale=0, min_width=200)
    export_file = gr.File(label="Download", interactive=False, visible=False, elem_id="data-export-file")
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
    view_outputs = [gallery, page_info, page_state, summary, class_dd]

    def refresh(slug: str | None):
        return _gallery(root, slug, ALL, ALL, 0)

    @guarded
    def show(slug, split, class_id, page):
        return _gallery(root, slug, split, class_id, page)

    @guarded
    def run_import(slug, path_text, zip_path, progress=gr.Progress()):
        from studio.services.data.importing.importer import import_dataset

        source = zip_path or (path_text or "").strip()
        if not source:
            raise gr.Error("Type a folder or .zip path, or upload a .zip file.")
        with open_project(root, slug) as store:
            try:
                result = import_dataset(store, Path(source), progress=lambda f, m: progress(f, desc=m))
            except ImportAborted as exc:
                gr.Warning(f"Import aborted, nothing was changed: {exc}")
                return exc.report.to_markdown() if exc.report else f"**Import aborted:** {exc}"
        gr.Info(result.summary())
        return result.to_markdown()

    @guarded
    def export(slug, fmt):
        from studio.services.data.dataset_export import export_zip

        with open_project(root, slug) as store:
            out = Path(tempfile.mkdtemp(prefix="studio-export-")) / f"{slug}-{fmt}.zip"
            return gr.File(value=str(export_zip(store, fmt, out)), visible=True)

    filters = [ctx.project, split_dd, class_dd]
    import_btn.click(run_import, [ctx.project, path_box, upload], [report]).then(
        show, [*filters, gr.State(0)], view_outputs
    ).then(ctx.header_text, [ctx.project], [ctx.header])
    split_dd.input(show, [*filters, gr.State(0)], view_outputs)
    class_dd.input(show, [*filters, gr.State(0)], view_outputs)
    prev_btn.click(lambda *a: show(*a[:-1], a[-1] - 1), [*filters, page_state], view_outputs)
    next_btn.click(lambda *a: show(*a[:-1], a[-1] + 1), [*filters, page_state], view_outputs)
    coco_btn.click(lambda s: export(s, "coco"), [ctx.project], [export_file])
    yolo_btn.click(lambda s: export(s, "yolo"), [ctx.project], [export_file])
    return PageHooks(refresh=refresh, outputs=view_outputs)
