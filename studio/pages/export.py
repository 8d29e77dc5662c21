"""Export page: a run's best model as ONNX / TFLite (FP32, FP16, INT8) / Roboflow bundle, each verified
on the validation split right after it is written (PyTorch vs exported mAP and latency side by side),
a zip to download, the export history, and ``deploy_to_roboflow`` with a key that is never stored.

Layout and wiring only: exporting is :mod:`studio.services.deploy.model_export`, the history
:mod:`~studio.services.deploy.history`, what the result panel shows
:mod:`~studio.services.deploy.verification`, the upload :mod:`~studio.services.deploy.roboflow`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.services.deploy import history as hist
from studio.services.deploy import model_export as mx
from studio.services.deploy import roboflow, verification

TITLE = "Export"
TAB_ID = "tab-export"


@dataclass
class ExportPage:
    """The page's components, by panel."""

    run_dd: gr.Dropdown
    fmt: gr.Radio
    start_btn: gr.Button
    result: gr.HTML
    download: gr.File
    history: gr.Dataframe
    pick: gr.Dropdown
    get_btn: gr.Button
    delete_btn: gr.Button
    deploy: DeployPanel

    def history_values(self, view: hist.HistoryView) -> dict[gr.components.Component, Any]:
        return {self.history: view.table, self.pick: gr.Dropdown(choices=view.choices, value=view.selected)}


@dataclass
class DeployPanel:
    key: gr.Textbox
    workspace: gr.Textbox
    project_id: gr.Textbox
    version: gr.Number
    button: gr.Button
    message: gr.Markdown


def _export_panel() -> tuple[gr.Dropdown, gr.Radio, gr.Button, gr.HTML, gr.File]:
    with gr.Row(elem_classes="toolbar"):
        run_dd = gr.Dropdown([], label="Run (best checkpoint)", elem_id="export-run", scale=2)
        fmt = gr.Radio(
            [(label, key) for key, label in hist.FORMATS.items()],
            value="onnx",
            label="Format",
            elem_id="export-format",
            scale=4,
        )
        start_btn = gr.Button("Export and verify", variant="primary", elem_id="export-start", scale=1)
    gr.Markdown(
        "TFLite conversion runs onnx2tf in its own environment (created on first use, a few minutes); "
        "INT8 calibrates on images of the project's **train** split. Every export is run on the "
        "validation images and compared with the PyTorch model before you download it."
    )
    result = gr.HTML(elem_id="export-result")
    download = gr.File(label="Download", interactive=False, elem_id="export-file")
    return run_dd, fmt, start_btn, result, download


def _history_panel() -> tuple[gr.Dataframe, gr.Dropdown, gr.Button, gr.Button]:
    gr.Markdown("### Export history")
    history = gr.Dataframe(headers=hist.TABLE_HEADERS, interactive=False, elem_id="export-history", wrap=True)
    with gr.Row(elem_classes="toolbar"):
        pick = gr.Dropdown([], label="Export", elem_id="export-pick", scale=2)
        get_btn = gr.Button("Download selected", elem_id="export-download", scale=1)
        delete_btn = gr.Button("Delete selected", elem_id="export-delete", scale=1)
    return history, pick, get_btn, delete_btn


def _deploy_panel() -> DeployPanel:
    with gr.Accordion("Deploy to Roboflow", open=False, elem_id="export-deploy-panel"):
        gr.Markdown(
            "Uploads the run's weights to a Roboflow project version. The API key is used for this "
            "upload only: it is not saved in the project, its files or the logs."
        )
        with gr.Row(elem_classes="toolbar"):
            key = gr.Textbox(label="API key", type="password", elem_id="export-deploy-key")
            workspace = gr.Textbox(label="Workspace", elem_id="export-deploy-workspace")
            project_id = gr.Textbox(label="Project", elem_id="export-deploy-project")
            version = gr.Number(1, precision=0, minimum=1, label="Version", elem_id="export-deploy-version")
            button = gr.Button("Deploy", elem_id="export-deploy", scale=0, min_width=110)
        message = gr.Markdown(elem_id="export-deploy-message")
    return DeployPanel(key, workspace, project_id, version, button, message)


def _chosen(value: Any, message: str) -> int:
    if value in (None, ""):
        raise StudioError(message)
    return int(value)


def _wire_export(root: Path, project: gr.State, page: ExportPage) -> None:
    @guarded
    def start(slug, run_id, fmt_, progress=gr.Progress()):
        run = _chosen(run_id, "Choose a run with a best checkpoint (train one on the Train tab).")
        with open_project(root, slug) as store:
            res = mx.export_run(store, run, fmt_, progress=lambda f, msg: progress(f, desc=msg))
            view = hist.history_view(store)
        html = verification.result_html(res.details, res.status, res.error)
        return {page.result: html, page.download: str(res.zip_path), **page.history_values(view)}

    @guarded
    def get(slug, export_id):
        chosen = _chosen(export_id, "Choose an export.")
        with open_project(root, slug) as store:
            row = hist.find_export(store, chosen)
        if row is None:
            raise StudioError(f"Export #{export_id} no longer exists.")
        zip_path = row.zip_path
        if zip_path is None or not zip_path.is_file():
            raise StudioError(f"Export #{export_id} has no zip to download ({row.status}).")
        return {
            page.result: verification.result_html(row.details, row.status, row.error),
            page.download: str(zip_path),
        }

    @guarded
    def delete(slug, export_id):
        chosen = _chosen(export_id, "Choose an export.")
        with open_project(root, slug) as store:
            hist.delete_export(store, chosen)
            return page.history_values(hist.history_view(store))

    page.start_btn.click(
        start, [project, page.run_dd, page.fmt], [page.result, page.download, page.history, page.pick]
    )
    page.get_btn.click(get, [project, page.pick], [page.result, page.download])
    page.delete_btn.click(delete, [project, page.pick], [page.history, page.pick])


def _wire_deploy(root: Path, project: gr.State, page: ExportPage) -> None:
    d = page.deploy

    @guarded
    def deploy(slug, run_id, key_, workspace_, project_, version_):
        run = _chosen(run_id, "Choose a run first.")
        with open_project(root, slug) as store:
            message = roboflow.deploy_run(store, run, key_, workspace_, project_, version_)
            view = hist.history_view(store)
        return {d.message: message, d.key: "", **page.history_values(view)}  # the key box is cleared

    inputs = [project, page.run_dd, d.key, d.workspace, d.project_id, d.version]
    d.button.click(deploy, inputs, [d.message, d.key, page.history, page.pick])


def build(ctx: PageContext) -> PageHooks:
    run_dd, fmt, start_btn, result, download = _export_panel()
    history, pick, get_btn, delete_btn = _history_panel()
    page = ExportPage(
        run_dd, fmt, start_btn, result, download, history, pick, get_btn, delete_btn, _deploy_panel()
    )
    _wire_export(ctx.root, ctx.project, page)
    _wire_deploy(ctx.root, ctx.project, page)
    root = ctx.root

    def refresh(slug: str | None):
        if not slug:
            return gr.Dropdown(choices=[], value=None), [], gr.Dropdown(choices=[], value=None)
        with open_project(root, slug) as store:
            runs = mx.exportable_runs(store)
            view = hist.history_view(store)
        values = page.history_values(view)
        return gr.Dropdown(choices=runs, value=runs[0][1] if runs else None), values[history], values[pick]

    return PageHooks(refresh=refresh, outputs=[run_dd, history, pick])
