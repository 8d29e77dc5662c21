"""Train page: model size and settings (defaults from data and hardware), start / stop / resume a run
in its own process, live progress and curves (polled from SQLite with a ``gr.Timer``), and the runs
table with compare and delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.services.train import augment as aug
from studio.services.train import plots, runs
from studio.services.train.defaults import (
    MODEL_SIZES,
    count_train_images,
    default_settings,
    detect_hardware,
)

TITLE = "Train"
TAB_ID = "tab-train"
POLL_S = 2.0
PRETRAINED = [
    ("Official pretrained (download)", "official"),
    ("Local .pth file", "local"),
    ("From scratch", "scratch"),
]
SETTING_KEYS = (
    "model_size",
    "epochs",
    "batch_size",
    "grad_accum_steps",
    "lr",
    "resolution",
    "early_stopping",
    "use_ema",
    "seed",
    "pretrained",
    "weights_path",
)
TABLE_HEADERS = [
    "id",
    "name",
    "size",
    "status",
    "best mAP@50:95",
    "best mAP@50",
    "epochs",
    "duration",
    "dataset",
    "settings",
    "created",
]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def _table(infos: list[runs.RunInfo]) -> list[list[Any]]:
    rows = []
    for r in infos:
        s = r.settings
        summary = (
            f"{s.get('epochs')} ep · batch {s.get('batch_size')}×{s.get('grad_accum_steps', 1)} · "
            f"lr {s.get('lr')} · {s.get('resolution')} px · {s.get('pretrained')}"
        )
        rows.append(
            [
                r.id,
                r.name,
                r.model_size,
                r.status_label,
                None if r.best_map50_95 is None else round(r.best_map50_95, 4),
                None if r.best_map50 is None else round(r.best_map50, 4),
                f"{r.epochs_done}/{r.total_epochs}",
                _duration(r.duration_s),
                r.dataset_hash[:12],
                summary,
                r.created_at.strftime("%Y-%m-%d %H:%M"),
            ]
        )
    return rows


def _progress_html(info: runs.RunInfo | None) -> str:
    if info is None:
        return "<div class='train-progress'>No run yet: choose the settings and press <b>Start training</b>.</div>"
    p = info.progress
    step, total = int(p.get("step") or 0), int(p.get("total_steps") or 0)
    frac = step / total if total else 0.0
    eta = p.get("eta_s")
    eta_text = f" · ETA {_duration(eta)}" if eta is not None and info.status == "running" else ""
    epoch = f"epoch {min(info.epochs_done + 1, info.total_epochs or 0) if info.status == 'running' else info.epochs_done}"
    stopping = " · stopping…" if info.stop_requested and info.status == "running" else ""
    error = f"<div class='train-error'>{info.error}</div>" if info.error else ""
    return (
        f"<div class='train-progress' data-status='{info.status_label}'>"
        f"<b>Run #{info.id}</b> · <span class='train-status'>{info.status_label}</span>{stopping} · "
        f"{epoch}/{info.total_epochs} · step {step}/{total}{eta_text}"
        f"<progress max='1' value='{frac:.4f}' style='width:100%'></progress>{error}</div>"
    )


def _run_choices(infos: list[runs.RunInfo]) -> list[tuple[str, int]]:
    return [(f"#{r.id} {r.model_size} · {r.status_label}", r.id) for r in infos]


def build(ctx: PageContext) -> PageHooks:
    root: Path = ctx.root
    why = gr.Markdown(elem_id="train-defaults-why")
    with gr.Row(elem_classes="toolbar"):
        size = gr.Radio(
            [(m.label, m.name) for m in MODEL_SIZES.values()],
            value="Nano",
            label="Model size",
            elem_id="train-model-size",
            scale=4,
        )
        start_btn = gr.Button("▶ Start training", variant="primary", elem_id="train-start", scale=1)
    with gr.Accordion("Advanced settings", open=False, elem_id="train-advanced"):
        with gr.Row():
            epochs = gr.Number(50, precision=0, minimum=1, label="Epochs", elem_id="train-epochs")
            batch = gr.Number(2, precision=0, minimum=1, label="Batch size", elem_id="train-batch")
            accum = gr.Number(
                1, precision=0, minimum=1, label="Gradient accumulation", elem_id="train-grad-accum"
            )
            lr = gr.Number(1e-4, label="Learning rate", elem_id="train-lr")
            resolution = gr.Number(
                384, precision=0, minimum=32, label="Resolution (px)", elem_id="train-resolution"
            )
        with gr.Row():
            early = gr.Checkbox(False, label="Early stopping", elem_id="train-early-stopping")
            ema = gr.Checkbox(True, label="EMA weights", elem_id="train-ema")
            seed = gr.Number(0, precision=0, label="Seed", elem_id="train-seed")
            pretrained = gr.Radio(
                PRETRAINED, value="official", label="Start from", elem_id="train-pretrained"
            )
            weights_path = gr.Textbox(
                label="Local .pth file", placeholder="/path/to/weights.pth", elem_id="train-weights-path"
            )
    message = gr.Markdown(elem_id="train-message")
    gr.Markdown("### Live view")
    with gr.Row(elem_classes="toolbar"):
        run_dd = gr.Dropdown([], label="Run", elem_id="train-run-select", scale=2)
        compare_dd = gr.Dropdown([], label="Compare with", elem_id="train-compare-select", scale=2)
        stop_btn = gr.Button("■ Stop", variant="stop", elem_id="train-stop", scale=1)
        resume_btn = gr.Button("↻ Resume", elem_id="train-resume", scale=1)
    progress = gr.HTML(elem_id="train-progress")
    with gr.Row():
        metrics_plot = gr.Plot(elem_id="train-metrics-plot", show_label=False)
        loss_plot = gr.Plot(elem_id="train-loss-plot", show_label=False)
    with gr.Row():
        with gr.Column():
            class_dd = gr.Dropdown(
                [], multiselect=True, label="Classes (empty = all)", elem_id="train-class-select"
            )
            class_plot = gr.Plot(elem_id="train-class-plot", show_label=False)
        lr_plot = gr.Plot(elem_id="train-lr-plot", show_label=False)
    log_box = gr.Textbox(
        label="Log (last lines)", lines=8, max_lines=8, interactive=False, elem_id="train-log"
    )
    gr.Markdown("### Runs")
    table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="train-runs-table", wrap=True)
    with gr.Row(elem_classes="toolbar"):
        delete_btn = gr.Button("Delete selected run", elem_id="train-delete", scale=0, min_width=200)
    with gr.Row(
        visible=False, elem_id="train-delete-confirm-row", elem_classes="toolbar confirm"
    ) as confirm_row:
        confirm_md = gr.Markdown(elem_id="train-delete-message")
        confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="train-delete-confirm")
        cancel_btn = gr.Button("Cancel", elem_id="train-delete-cancel")
    timer = gr.Timer(POLL_S, active=False)
    seen = gr.State(None)  # what the plots last showed, so an idle tick redraws nothing

    setting_inputs = [size, epochs, batch, accum, lr, resolution, early, ema, seed, pretrained, weights_path]
    live_outputs = [progress, metrics_plot, loss_plot, class_plot, lr_plot, log_box, class_dd, seen, timer]

    def _live(
        slug: str | None, run_id: Any, compare_id: Any, classes: list[str] | None, last: Any, force: bool
    ):
        """Values for ``live_outputs``; unchanged data gives ``gr.skip()`` for the heavy parts."""
        if not slug:
            return [
                _progress_html(None),
                None,
                None,
                None,
                None,
                "",
                gr.Dropdown(choices=[]),
                None,
                gr.Timer(active=False),
            ]
        with open_project(root, slug) as store:
            infos = runs.list_runs(store)
            info = next((r for r in infos if r.id == run_id), infos[0] if infos else None)
            if info is None:
                return [
                    _progress_html(None),
                    None,
                    None,
                    None,
                    None,
                    "",
                    gr.Dropdown(choices=[]),
                    None,
                    gr.Timer(active=False),
                ]
            active = any(r.status in runs.ACTIVE for r in infos)
            ids = [info.id] + ([int(compare_id)] if compare_id not in (None, "", info.id) else [])
            stamp = (
                tuple(ids),
                tuple(classes or ()),
                info.status,
                info.progress.get("step"),
                info.epochs_done,
            )
            if stamp == last and not force:
                return [_progress_html(info), *[gr.skip()] * 6, last, gr.Timer(active=active)]
            names = plots.class_ap_names(store, info.id)
            chosen = [c for c in (classes or []) if c in names]
            return [
                _progress_html(info),
                plots.metrics_figure(store, ids),
                plots.loss_figure(store, ids),
                plots.class_ap_figure(store, ids, chosen),
                plots.lr_figure(store, ids),
                runs.run_log_tail(store, info.id),
                gr.Dropdown(choices=names, value=chosen),
                stamp,
                gr.Timer(active=active),
            ]

    def _runs_view(slug: str | None, run_id: Any = None, compare_id: Any = None):
        """Values for ``runs_outputs`` (table, run picker, compare picker), keeping valid selections."""
        if not slug:
            return [], gr.Dropdown(choices=[], value=None), gr.Dropdown(choices=[], value=None)
        with open_project(root, slug) as store:
            infos = runs.list_runs(store)
        choices = _run_choices(infos)
        ids = [r.id for r in infos]
        run_id = int(run_id) if run_id not in (None, "") and int(run_id) in ids else (ids[0] if ids else None)
        compare_id = compare_id if compare_id in ids and compare_id != run_id else ""
        others = [("none", "")] + [c for c in choices if c[1] != run_id]
        return (
            _table(infos),
            gr.Dropdown(choices=choices, value=run_id),
            gr.Dropdown(choices=others, value=compare_id),
        )

    def _defaults(slug: str | None):
        if not slug:
            return ["No project open.", *[gr.skip()] * len(setting_inputs)]
        with open_project(root, slug) as store:
            n_train = count_train_images(store)
            saved = runs.load_train_settings(store)
        settings, text = default_settings(n_train, detect_hardware())
        if saved:
            settings = {**settings, **{k: v for k, v in saved.items() if k in SETTING_KEYS}}
            text += " (Showing the settings of your last run.)"
        return [f"**Suggested:** {text}", *[settings[k] for k in SETTING_KEYS]]

    def refresh(slug: str | None):
        with_runs = _runs_view(slug)
        latest = None
        if slug:
            with open_project(root, slug) as store:
                latest = next((r.id for r in runs.list_runs(store, check_liveness=False)), None)
        return [*_defaults(slug), *with_runs, *_live(slug, latest, None, [], None, True)]

    @guarded
    def start(slug, *values):
        settings = dict(zip(SETTING_KEYS, values, strict=True))
        if settings["model_size"] not in MODEL_SIZES:
            raise gr.Error("Choose a model size.")
        block = MODEL_SIZES[settings["model_size"]].block_size
        if int(settings["resolution"] or 0) % block:
            raise gr.Error(f"Resolution must be a multiple of {block} for {settings['model_size']}.")
        with open_project(root, slug) as store:
            source = runs.check_pretrained(settings)
            runs.save_train_settings(store, settings)
            full = {**settings, "augment": aug.load_settings(store), **runs.hidden_overrides()}
            run_id = runs.create_run(store, full)
            runs.start_run(store, run_id)
        text = (
            f"Started run #{run_id} ({source}); training runs in its own process — you can reload the page."
        )
        return [text, *_runs_view(slug, run_id)]

    @guarded
    def stop(slug, run_id):
        if not run_id:
            raise gr.Error("No run selected.")
        with open_project(root, slug) as store:
            runs.request_stop(store, int(run_id))
        return (
            f"Stop requested for run #{run_id}: it ends after the current step and keeps its best checkpoint."
        )

    @guarded
    def resume(slug, run_id):
        if not run_id:
            raise gr.Error("No run selected.")
        with open_project(root, slug) as store:
            info = runs.get_run(store, int(run_id))
            if info.status in runs.ACTIVE:
                raise gr.Error(f"Run #{run_id} is still running.")
            if info.status == "completed":
                raise gr.Error(f"Run #{run_id} has finished all its epochs; start a new run instead.")
            runs.start_run(store, int(run_id), resume=True)
        return f"Resuming run #{run_id} from its last checkpoint."

    @guarded
    def ask_delete(run_id):
        if not run_id:
            raise gr.Error("No run selected.")
        return gr.Row(visible=True), f"Delete run #{run_id} with its checkpoints and metrics?"

    @guarded
    def do_delete(slug, run_id):
        with open_project(root, slug) as store:
            runs.delete_run(store, int(run_id))
        return gr.Row(visible=False), f"Run #{run_id} deleted."

    @guarded
    def live(slug, run_id, compare_id, classes, last):
        return _live(slug, run_id, compare_id, classes, last, False)

    @guarded
    def live_forced(slug, run_id, compare_id, classes):
        return _live(slug, run_id, compare_id, classes, None, True)

    @guarded
    def tick(slug, run_id, compare_id, classes, last):
        out = _live(slug, run_id, compare_id, classes, last, False)
        changed = out[7] != last
        return [*out, _runs_view(slug, run_id, compare_id)[0] if changed else gr.skip()]

    runs_outputs = [table, run_dd, compare_dd]
    view = [ctx.project, run_dd, compare_dd, class_dd]
    start_btn.click(start, [ctx.project, *setting_inputs], [message, *runs_outputs]).success(
        live_forced, view, live_outputs
    )
    stop_btn.click(stop, [ctx.project, run_dd], [message]).then(live_forced, view, live_outputs)
    resume_btn.click(resume, [ctx.project, run_dd], [message]).success(
        _runs_view, [ctx.project, run_dd, compare_dd], runs_outputs
    ).then(live_forced, view, live_outputs)
    run_dd.input(_runs_view, [ctx.project, run_dd], runs_outputs).then(live_forced, view, live_outputs)
    compare_dd.input(live_forced, view, live_outputs)
    class_dd.input(live_forced, view, live_outputs)
    timer.tick(tick, [*view, seen], [*live_outputs, table], show_progress="hidden")
    size.input(lambda s: MODEL_SIZES[s].resolution, [size], [resolution])
    delete_btn.click(ask_delete, [run_dd], [confirm_row, confirm_md])
    cancel_btn.click(lambda: gr.Row(visible=False), None, [confirm_row])
    confirm_btn.click(do_delete, [ctx.project, run_dd], [confirm_row, message]).then(
        _runs_view, [ctx.project], runs_outputs
    ).then(live_forced, view, live_outputs)
    return PageHooks(refresh=refresh, outputs=[why, *setting_inputs, *runs_outputs, *live_outputs])
