"""Export page: a run's best model as ONNX / TFLite (FP32, FP16, INT8) / Roboflow bundle, each verified
on the validation split right after it is written (PyTorch vs exported mAP and latency side by side),
a zip to download, the export history, and ``deploy_to_roboflow`` with a key that is never stored."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.services.deploy import model_export as mx

TITLE = "Export"
TAB_ID = "tab-export"


def _num(value: Any, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _result_html(details: dict[str, Any], status: str, error: str | None) -> str:
    """The verification side by side: what the user needs to trust (or not) the exported file."""
    if status == "done":
        head = "<div class='export-verdict ok'>✔ Verified: the exported model reproduces the PyTorch model.</div>"
    else:
        why = error or "; ".join(details.get("failures") or []) or status
        head = (
            f"<div class='export-verdict bad'>✖ {html.escape(why)} — the zip holds the full report; "
            f"do not deploy it without reading it.</div>"
        )
    rows = [
        ("mAP@50:95", _num(details.get("map_pytorch"), ".4f"), _num(details.get("map_exported"), ".4f")),
        ("mAP@50", _num(details.get("map50_pytorch"), ".4f"), _num(details.get("map50_exported"), ".4f")),
        (
            "median latency (ms)",
            _num(details.get("latency_pytorch_ms"), ".1f"),
            _num(details.get("latency_exported_ms"), ".1f"),
        ),
    ]
    body = "".join(f"<tr><td>{name}</td><td>{a}</td><td>{b}</td></tr>" for name, a, b in rows)
    extra = []
    if details.get("map_images"):
        extra.append(f"mAP on {details['map_images']} validation images")
    if details.get("detections_matched") is not None:
        extra.append(
            f"top detections matched {details['detections_matched']}/{details.get('detections_compared')}"
        )
    if details.get("max_abs_diff") is not None:
        extra.append(f"max |Δ| {details['max_abs_diff']:.2e}")
    if details.get("size_mb") is not None:
        extra.append(f"{details['size_mb']:.1f} MB")
    if details.get("export_seconds") is not None:
        extra.append(f"exported in {details['export_seconds']:.1f} s")
    warn = "".join(f"<li>{w}</li>" for w in details.get("warnings") or [])
    return (
        f"{head}<table class='export-compare'><tr><th></th><th>PyTorch</th><th>exported</th></tr>{body}</table>"
        f"<div class='export-extra'>{' · '.join(extra)}</div>" + (f"<ul>{warn}</ul>" if warn else "")
    )


def build(ctx: PageContext) -> PageHooks:
    root: Path = ctx.root
    with gr.Row(elem_classes="toolbar"):
        run_dd = gr.Dropdown([], label="Run (best checkpoint)", elem_id="export-run", scale=2)
        fmt = gr.Radio(
            [(label, key) for key, label in mx.FORMATS.items()],
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
    gr.Markdown("### Export history")
    history = gr.Dataframe(headers=mx.TABLE_HEADERS, interactive=False, elem_id="export-history", wrap=True)
    with gr.Row(elem_classes="toolbar"):
        pick = gr.Dropdown([], label="Export", elem_id="export-pick", scale=2)
        get_btn = gr.Button("Download selected", elem_id="export-download", scale=1)
        delete_btn = gr.Button("Delete selected", elem_id="export-delete", scale=1)
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
            deploy_btn = gr.Button("Deploy", elem_id="export-deploy", scale=0, min_width=110)
        deploy_md = gr.Markdown(elem_id="export-deploy-message")

    def _history(store) -> tuple[list[list[Any]], Any]:
        rows = mx.export_table(store)
        choices = [(f"#{r[0]} {r[3]} · run {r[2]} · {r[4]}", r[0]) for r in rows]
        return rows, gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    def refresh(slug: str | None):
        if not slug:
            return gr.Dropdown(choices=[], value=None), [], gr.Dropdown(choices=[], value=None)
        with open_project(root, slug) as store:
            runs = mx.exportable_runs(store)
            return gr.Dropdown(choices=runs, value=runs[0][1] if runs else None), *_history(store)

    @guarded
    def start(slug, run_id, fmt_, progress=gr.Progress()):
        if run_id in (None, ""):
            raise StudioError("Choose a run with a best checkpoint (train one on the Train tab).")
        with open_project(root, slug) as store:
            res = mx.export_run(store, int(run_id), fmt_, progress=lambda f, msg: progress(f, desc=msg))
            rows, choices = _history(store)
        return _result_html(res.details, res.status, res.error), str(res.zip_path), rows, choices

    @guarded
    def get(slug, export_id):
        if export_id in (None, ""):
            raise StudioError("Choose an export.")
        with open_project(root, slug) as store:
            row = next((r for r in mx.list_exports(store) if r.id == int(export_id)), None)
        if row is None:
            raise StudioError(f"Export #{export_id} no longer exists.")
        zip_path = row.zip_path
        if zip_path is None or not zip_path.is_file():
            raise StudioError(f"Export #{export_id} has no zip to download ({row.status}).")
        return _result_html(row.details, row.status, row.error), str(zip_path)

    @guarded
    def delete(slug, export_id):
        if export_id in (None, ""):
            raise StudioError("Choose an export.")
        with open_project(root, slug) as store:
            mx.delete_export(store, int(export_id))
            return _history(store)

    @guarded
    def deploy(slug, run_id, key_, workspace_, project_, version_):
        if run_id in (None, ""):
            raise StudioError("Choose a run first.")
        with open_project(root, slug) as store:
            message = mx.deploy_run(store, int(run_id), key_, workspace_, project_, version_)
            rows, choices = _history(store)
        return message, "", rows, choices  # the key box is cleared

    start_btn.click(start, [ctx.project, run_dd, fmt], [result, download, history, pick])
    get_btn.click(get, [ctx.project, pick], [result, download])
    delete_btn.click(delete, [ctx.project, pick], [history, pick])
    deploy_btn.click(
        deploy, [ctx.project, run_dd, key, workspace, project_id, version], [deploy_md, key, history, pick]
    )
    return PageHooks(refresh=refresh, outputs=[run_dd, history, pick])
