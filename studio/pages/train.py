"""Train page: model size and settings (defaults from data and hardware), start / stop / resume a run
in its own process, live progress and curves (polled from SQLite with a ``gr.Timer``), and the runs
table with compare and delete.

Layout and wiring only: the rules live in :mod:`studio.services.train.settings`, what is shown in
:mod:`studio.services.train.view`. A refused action (bad resolution, offline weights, nothing to resume)
is answered in ``train-message`` and leaves every other component as it was, so no component shows an
error badge for what is the user's choice to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.pages import USER_ERRORS, PageContext, PageHooks, guarded, open_project
from studio.services.train import runs, view
from studio.services.train import settings as train_settings
from studio.services.train.defaults import MODEL_SIZES
from studio.services.train.settings import TrainSettings
from studio.text import md_text

TITLE = "Train"
TAB_ID = "tab-train"
POLL_S = 2.0
PRETRAINED = [
    ("Official pretrained (download)", "official"),
    ("Local .pth file", "local"),
    ("From scratch", "scratch"),
]


@dataclass
class SettingsForm:
    """One component per :class:`TrainSettings` field."""

    model_size: gr.Radio
    epochs: gr.Number
    batch_size: gr.Number
    grad_accum_steps: gr.Number
    lr: gr.Number
    resolution: gr.Number
    early_stopping: gr.Checkbox
    use_ema: gr.Checkbox
    seed: gr.Number
    pretrained: gr.Radio
    weights_path: gr.Textbox

    def inputs(self) -> list[gr.components.Component]:
        """The components in :meth:`TrainSettings.names` order."""
        return [getattr(self, name) for name in TrainSettings.names()]

    def values(self, settings: TrainSettings) -> dict[gr.components.Component, Any]:
        return {getattr(self, name): getattr(settings, name) for name in TrainSettings.names()}


@dataclass
class LivePanel:
    """The live view of one run (and the run it is compared with)."""

    run_dd: gr.Dropdown
    compare_dd: gr.Dropdown
    stop_btn: gr.Button
    resume_btn: gr.Button
    progress: gr.HTML
    metrics_plot: gr.Plot
    loss_plot: gr.Plot
    class_dd: gr.Dropdown
    class_plot: gr.Plot
    lr_plot: gr.Plot
    log_box: gr.Textbox
    log_file: gr.File
    timer: gr.Timer
    seen: gr.State  # the view.LiveStamp the plots last showed, so an idle tick redraws nothing

    def outputs(self) -> list[gr.components.Component]:
        return [
            self.progress,
            self.metrics_plot,
            self.loss_plot,
            self.class_plot,
            self.lr_plot,
            self.log_box,
            self.log_file,
            self.class_dd,
            self.seen,
            self.timer,
        ]


@dataclass
class RunsPanel:
    table: gr.Dataframe
    delete_btn: gr.Button
    confirm_row: gr.Row
    confirm_md: gr.Markdown
    confirm_btn: gr.Button
    cancel_btn: gr.Button


@dataclass
class TrainPage:
    why: gr.Markdown
    start_btn: gr.Button
    form: SettingsForm
    message: gr.Markdown
    live: LivePanel
    runs: RunsPanel

    def runs_outputs(self) -> list[gr.components.Component]:
        return [self.runs.table, self.live.run_dd, self.live.compare_dd]

    def refresh_outputs(self) -> list[gr.components.Component]:
        return [self.why, *self.form.inputs(), *self.runs_outputs(), *self.live.outputs()]


# -- layout ---------------------------------------------------------------------------------------
def _settings_panel() -> tuple[gr.Button, SettingsForm]:
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
    form = SettingsForm(
        size, epochs, batch, accum, lr, resolution, early, ema, seed, pretrained, weights_path
    )
    return start_btn, form


def _live_panel() -> LivePanel:
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
    with gr.Row():
        log_box = gr.Textbox(
            label="Progress (last lines)",
            lines=8,
            max_lines=8,
            interactive=False,
            elem_id="train-log",
            scale=4,
        )
        log_file = gr.File(label="Full log (download)", interactive=False, elem_id="train-log-file", scale=1)
    timer = gr.Timer(POLL_S, active=False)
    seen = gr.State(None)
    return LivePanel(
        run_dd,
        compare_dd,
        stop_btn,
        resume_btn,
        progress,
        metrics_plot,
        loss_plot,
        class_dd,
        class_plot,
        lr_plot,
        log_box,
        log_file,
        timer,
        seen,
    )


def _runs_panel() -> RunsPanel:
    gr.Markdown("### Runs")
    table = gr.Dataframe(headers=view.TABLE_HEADERS, interactive=False, elem_id="train-runs-table", wrap=True)
    with gr.Row(elem_classes="toolbar"):
        delete_btn = gr.Button("Delete selected run", elem_id="train-delete", scale=0, min_width=200)
    with gr.Row(
        visible=False, elem_id="train-delete-confirm-row", elem_classes="toolbar confirm"
    ) as confirm_row:
        confirm_md = gr.Markdown(elem_id="train-delete-message")
        confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="train-delete-confirm")
        cancel_btn = gr.Button("Cancel", elem_id="train-delete-cancel")
    return RunsPanel(table, delete_btn, confirm_row, confirm_md, confirm_btn, cancel_btn)


# -- values for the components ------------------------------------------------------------------
def _live_values(live: LivePanel, shown: view.LiveView) -> dict[gr.components.Component, Any]:
    """Component values for a live view; an unchanged view only updates the progress line."""
    out: dict[gr.components.Component, Any] = {
        live.progress: shown.progress,
        live.seen: shown.stamp,
        live.timer: gr.Timer(active=shown.active),
    }
    if shown.changed:
        out.update(
            {
                live.metrics_plot: shown.metrics,
                live.loss_plot: shown.loss,
                live.class_plot: shown.class_ap,
                live.lr_plot: shown.lr,
                live.log_box: shown.log_tail,
                live.class_dd: gr.Dropdown(choices=shown.class_names, value=shown.classes),
            }
        )
    if shown.log_changed:
        out[live.log_file] = str(shown.log_path) if shown.log_path else None
    return out


def _runs_values(page: TrainPage, rv: view.RunsView) -> dict[gr.components.Component, Any]:
    return {
        page.runs.table: rv.rows,
        page.live.run_dd: gr.Dropdown(choices=rv.run_choices, value=rv.run_id),
        page.live.compare_dd: gr.Dropdown(choices=rv.compare_choices, value=rv.compare_id),
    }


def _ordered(values: dict[gr.components.Component, Any], outputs: list) -> list[Any]:
    """``values`` as a list in ``outputs`` order (what the app's project refresh expects)."""
    return [values.get(c, gr.skip()) for c in outputs]


def _refused(exc: Exception) -> str:
    return f"**Not done:** {md_text(str(exc) or exc.__class__.__name__)}"


# -- wiring ---------------------------------------------------------------------------------------
def build(ctx: PageContext) -> PageHooks:
    why = gr.Markdown(elem_id="train-defaults-why")
    start_btn, form = _settings_panel()
    message = gr.Markdown(elem_id="train-message")
    page = TrainPage(why, start_btn, form, message, _live_panel(), _runs_panel())
    _wire_actions(ctx, page)
    _wire_live(ctx, page)
    _wire_delete(ctx, page)
    return PageHooks(refresh=_refresher(ctx.root, page), outputs=page.refresh_outputs())


def _refresher(root: Path, page: TrainPage):
    def refresh(slug: str | None) -> list[Any]:
        if not slug:
            values = {page.why: "No project open.", **_runs_values(page, view.runs_view([]))}
            values.update(_live_values(page.live, view.LiveView()))
            return _ordered(values, page.refresh_outputs())
        with open_project(root, slug) as store:
            why_text, suggested = train_settings.suggested(store)
            values = {page.why: why_text, **page.form.values(suggested)}
            values.update(_runs_values(page, view.load_runs_view(store)))
            shown = view.live_view(store, view.latest_run_id(store), None, [], None, True)
        values.update(_live_values(page.live, shown))
        return _ordered(values, page.refresh_outputs())

    return refresh


def _wire_actions(ctx: PageContext, page: TrainPage) -> None:
    root, live = ctx.root, page.live

    @guarded
    def start(slug: str | None, *values: Any):
        form_values = dict(zip(TrainSettings.names(), values, strict=True))
        try:
            with open_project(root, slug) as store:
                started = train_settings.start_training(store, TrainSettings.from_values(form_values))
                rv = view.load_runs_view(store, started.run_id)
        except USER_ERRORS as exc:
            return {page.message: _refused(exc)}
        return {page.message: md_text(started.message), **_runs_values(page, rv)}

    def action(service):
        @guarded
        def handler(slug: str | None, run_id: Any):
            try:
                with open_project(root, slug) as store:
                    return {page.message: md_text(service(store, run_id))}
            except USER_ERRORS as exc:
                return {page.message: _refused(exc)}

        return handler

    view_inputs = [ctx.project, live.run_dd, live.compare_dd, live.class_dd]
    forced = _live_handler(root, page, force=True)
    page.start_btn.click(
        start, [ctx.project, *page.form.inputs()], [page.message, *page.runs_outputs()]
    ).success(forced, view_inputs, live.outputs())
    live.stop_btn.click(
        action(train_settings.stop_training), [ctx.project, live.run_dd], [page.message]
    ).then(forced, view_inputs, live.outputs())
    live.resume_btn.click(
        action(train_settings.resume_training), [ctx.project, live.run_dd], [page.message]
    ).success(
        _runs_handler(root, page), [ctx.project, live.run_dd, live.compare_dd], page.runs_outputs()
    ).then(forced, view_inputs, live.outputs())
    page.form.model_size.input(
        train_settings.default_resolution, [page.form.model_size], [page.form.resolution]
    )


def _runs_handler(root: Path, page: TrainPage):
    @guarded
    def runs_view(slug: str | None, run_id: Any = None, compare_id: Any = None):
        if not slug:
            return _runs_values(page, view.runs_view([]))
        with open_project(root, slug) as store:
            return _runs_values(page, view.load_runs_view(store, run_id, compare_id))

    return runs_view


def _live_handler(root: Path, page: TrainPage, force: bool, with_runs: bool = False):
    """The live view handler; ``with_runs``: also refresh the table and pickers when a status changed."""

    @guarded
    def handler(slug: str | None, run_id: Any, compare_id: Any, classes: list[str] | None, last: Any = None):
        if not slug:
            return _live_values(page.live, view.LiveView())
        with open_project(root, slug) as store:
            shown = view.live_view(store, run_id, compare_id, classes, last, force)
            values = _live_values(page.live, shown)
            if with_runs and shown.stamp != last:
                rv = view.load_runs_view(store, run_id, compare_id)
                runs_values = _runs_values(page, rv)
                if last is not None and shown.stamp and shown.stamp.statuses == last.statuses:
                    runs_values = {page.runs.table: rv.rows}  # pickers only change with a status
                values.update(runs_values)
        return values

    return handler


def _wire_live(ctx: PageContext, page: TrainPage) -> None:
    live = page.live
    view_inputs = [ctx.project, live.run_dd, live.compare_dd, live.class_dd]
    forced = _live_handler(ctx.root, page, force=True)
    tick = _live_handler(ctx.root, page, force=False, with_runs=True)
    live.run_dd.input(_runs_handler(ctx.root, page), [ctx.project, live.run_dd], page.runs_outputs()).then(
        forced, view_inputs, live.outputs()
    )
    live.compare_dd.input(forced, view_inputs, live.outputs())
    live.class_dd.input(forced, view_inputs, live.outputs())
    live.timer.tick(
        tick, [*view_inputs, live.seen], [*live.outputs(), *page.runs_outputs()], show_progress="hidden"
    )


def _wire_delete(ctx: PageContext, page: TrainPage) -> None:
    root, rp, live = ctx.root, page.runs, page.live

    @guarded
    def ask_delete(run_id: Any):
        if not run_id:
            raise gr.Error("No run selected.")
        return gr.Row(visible=True), f"Delete run #{run_id} with its checkpoints and metrics?"

    @guarded
    def do_delete(slug: str | None, run_id: Any):
        with open_project(root, slug) as store:
            runs.delete_run(store, int(run_id))
        return gr.Row(visible=False), f"Run #{run_id} deleted."

    view_inputs = [ctx.project, live.run_dd, live.compare_dd, live.class_dd]
    rp.delete_btn.click(ask_delete, [live.run_dd], [rp.confirm_row, rp.confirm_md])
    rp.cancel_btn.click(lambda: gr.Row(visible=False), None, [rp.confirm_row])
    rp.confirm_btn.click(do_delete, [ctx.project, live.run_dd], [rp.confirm_row, page.message]).then(
        _runs_handler(root, page), [ctx.project], page.runs_outputs()
    ).then(_live_handler(root, page, force=True), view_inputs, live.outputs())
