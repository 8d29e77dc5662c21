"""Review page: a run's predictions on the validation (or test) split, computed once and stored, then
re-scored at the user's confidence and IoU without the model — worst images first, per-class table,
PR curves, a clickable confusion matrix, the F1-optimal threshold, *Fix in editor* and FiftyOne.

Layout and wiring only: every handler calls one function of :mod:`studio.services.review.analysis`
(or :mod:`~studio.services.review.predictions` to run the model) and returns ``{component: value}``.
Picker, filter and threshold events are last-wins (``trigger_mode="always_last"``, one queue for all
of them): a pick made while an earlier one is still being drawn is drawn after it, never dropped, and
an older answer can never overwrite a newer one. Dropdowns and the split listen to ``select`` (one
event per user pick; Gradio 6's dropdown fires ``input`` twice per mouse pick).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.services.review import analysis as rv
from studio.services.review import predictions as rp

TITLE = "Review"
TAB_ID = "tab-review"
LABEL_TAB = "tab-label"
VIEW_QUEUE = "review-view"  # one server queue for every redraw of the view: answers come in order
F1_LABEL = "Use F1-optimal threshold"
_CANCEL: dict[str, threading.Event] = {}

# A plotly click on the confusion matrix writes "row,col,timestamp" into a hidden textbox (Gradio's Plot
# has no select event); the textbox's change event then filters the gallery on the server.
CONFUSION_JS = """
if (!window.__studioConfusion) {
  window.__studioConfusion = true;
  const bind = () => {
    const plot = document.querySelector('#review-confusion .js-plotly-plot');
    if (!plot || plot.__studioBound || !plot.on) return;
    plot.__studioBound = true;
    plot.on('plotly_click', (ev) => {
      const p = ev && ev.points && ev.points[0];
      if (!p) return;
      const cd = p.customdata;
      const cell = (Array.isArray(cd) ? cd.slice(0, 2).join(',') : `${p.pointIndex[0]},${p.pointIndex[1]}`)
        + ',' + Date.now();  // a nonce: clicking the same cell again is still a change
      const box = document.querySelector('#review-cell-input textarea, #review-cell-input input');
      if (!box) return;
      box.value = cell;
      box.dispatchEvent(new Event('input', { bubbles: true }));
    });
  };
  new MutationObserver(bind).observe(document.body, { childList: true, subtree: true });
  setInterval(bind, 1000);
}
"""


@dataclass
class ReviewState:
    """What the tab remembers per browser session between events."""

    ids: list[int] = field(default_factory=list)  # the gallery's image ids, in its order
    selected: int | None = None  # the image in the detail view (and for *Fix in editor*)
    cell: tuple[int, int] | None = None  # the confusion-matrix filter (ground truth row, predicted col)


@dataclass
class ReviewUI:
    """The page's components by name (no positional output lists)."""

    run: gr.Dropdown
    split: gr.Radio
    compute: gr.Button
    cancel: gr.Button
    status: gr.Markdown
    conf: gr.Slider
    iou: gr.Slider
    use_f1: gr.Button
    rescore: gr.Button
    counts: gr.HTML
    f_class: gr.Dropdown
    f_kind: gr.Dropdown
    cell_md: gr.Markdown
    clear_cell: gr.Button
    cell_box: gr.Textbox
    gallery: gr.Gallery
    detail_img: gr.Image
    detail_md: gr.Markdown
    fix: gr.Button
    confusion: gr.Plot
    pr: gr.Plot
    f1: gr.Plot
    ap_table: gr.Dataframe
    fo_button: gr.Button
    fo_link: gr.Markdown
    state: gr.State

    def view_outputs(self) -> list[Any]:
        """Everything a redraw of the view may change."""
        return [
            self.status,
            self.counts,
            self.gallery,
            self.confusion,
            self.pr,
            self.f1,
            self.ap_table,
            self.detail_img,
            self.detail_md,
            self.cell_md,
            self.use_f1,
            self.f_class,
            self.state,
        ]

    def page_outputs(self) -> list[Any]:
        """What a tab selection or project change refreshes (``PageHooks.outputs``)."""
        return [self.run, self.split, *self.view_outputs()]

    def view_inputs(self, project: gr.State) -> list[Any]:
        return [project, self.run, self.split, self.conf, self.iou, self.f_class, self.f_kind, self.state]


# --------------------------------------------------------------------------- layout


def _pickers_panel() -> dict[str, Any]:
    with gr.Row(elem_classes="toolbar"):
        run = gr.Dropdown([], label="Run", elem_id="review-run", scale=2)
        split = gr.Radio(["valid"], value="valid", label="Split", elem_id="review-split", scale=1)
        compute = gr.Button("Compute predictions", variant="primary", elem_id="review-compute", scale=1)
        cancel = gr.Button("Cancel", elem_id="review-cancel", scale=0, min_width=90)
    status = gr.Markdown(elem_id="review-status")
    return dict(run=run, split=split, compute=compute, cancel=cancel, status=status)


def _thresholds_panel() -> dict[str, Any]:
    with gr.Row(elem_classes="toolbar"):
        conf = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="Confidence", elem_id="review-conf", scale=3)
        iou = gr.Slider(0.1, 0.95, value=0.5, step=0.05, label="IoU threshold", elem_id="review-iou", scale=2)
        use_f1 = gr.Button(F1_LABEL, elem_id="review-use-f1", scale=1)
        rescore = gr.Button("Re-score with current labels", elem_id="review-rescore", scale=1)
    counts = gr.HTML(elem_id="review-counts")
    return dict(conf=conf, iou=iou, use_f1=use_f1, rescore=rescore, counts=counts)


def _filters_panel() -> dict[str, Any]:
    with gr.Row(elem_classes="toolbar"):
        f_class = gr.Dropdown([("All classes", "")], value="", label="Class", elem_id="review-filter-class")
        f_kind = gr.Dropdown(
            [(v, k) for k, v in rv.KINDS.items()], value="errors", label="Show", elem_id="review-filter-kind"
        )
        cell_md = gr.Markdown(elem_id="review-filter-cell")
        clear_cell = gr.Button("Clear matrix filter", elem_id="review-clear-cell", scale=0, min_width=160)
    cell_box = gr.Textbox(elem_id="review-cell-input", elem_classes="studio-hidden", show_label=False)
    return dict(f_class=f_class, f_kind=f_kind, cell_md=cell_md, clear_cell=clear_cell, cell_box=cell_box)


def _gallery_panel() -> dict[str, Any]:
    """The worst-first grid and, beside it in its own component, the selected image: a click never turns
    the grid into one enlarged picture (no preview mode)."""
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(
                label="Worst images first",
                columns=4,
                height=520,
                allow_preview=False,
                preview=False,
                buttons=[],  # no fullscreen: nothing turns the grid into one enlarged picture
                elem_id="review-gallery",
            )
        with gr.Column(scale=4):
            detail_img = gr.Image(
                label="Ground truth | Predictions", interactive=False, elem_id="review-detail"
            )
            detail_md = gr.Markdown(elem_id="review-detail-info")
            fix = gr.Button("✎ Fix in editor", elem_id="review-fix")
    return dict(gallery=gallery, detail_img=detail_img, detail_md=detail_md, fix=fix)


def _plots_panel() -> dict[str, Any]:
    with gr.Row():
        confusion = gr.Plot(elem_id="review-confusion", show_label=False)
        pr = gr.Plot(elem_id="review-pr", show_label=False)
    with gr.Row():
        f1 = gr.Plot(elem_id="review-f1", show_label=False)
        ap_table = gr.Dataframe(interactive=False, elem_id="review-ap-table", label="Per class")
    return dict(confusion=confusion, pr=pr, f1=f1, ap_table=ap_table)


def _fiftyone_panel() -> dict[str, Any]:
    with gr.Accordion("Open in FiftyOne", open=False, elem_id="review-fiftyone-panel"):
        fo_button = gr.Button("Build FiftyOne dataset and open the App", elem_id="review-fiftyone")
        fo_link = gr.Markdown(elem_id="review-fiftyone-link")
    gr.HTML("", js_on_load=CONFUSION_JS, elem_id="review-js")
    return dict(fo_button=fo_button, fo_link=fo_link)


def build(ctx: PageContext) -> PageHooks:
    ui = ReviewUI(
        **_pickers_panel(),
        **_thresholds_panel(),
        **_filters_panel(),
        **_gallery_panel(),
        **_plots_panel(),
        **_fiftyone_panel(),
        state=gr.State(ReviewState()),
    )
    handlers = Handlers(ctx.root, ui)
    _wire_view(ctx, ui, handlers)
    _wire_actions(ctx, ui, handlers)
    return PageHooks(
        refresh=handlers.refresh,
        outputs=ui.page_outputs(),
        select_inputs=[ui.run, ui.split, ui.conf, ui.iou, ui.f_class, ui.f_kind, ui.state],
    )


# --------------------------------------------------------------------------- wiring


def _wire_view(ctx: PageContext, ui: ReviewUI, h: Handlers) -> None:
    """Pickers, filters, thresholds and the matrix click: each redraws the view, last pick wins."""
    inputs, outputs = ui.view_inputs(ctx.project), ui.view_outputs()
    last = dict(trigger_mode="always_last", concurrency_id=VIEW_QUEUE)
    ui.run.select(h.pick_run, inputs, [ui.split, ui.f_kind, *outputs], show_progress="minimal", **last)
    gr.on(
        [ui.split.select, ui.f_class.select, ui.f_kind.select],
        h.show,
        inputs,
        outputs,
        show_progress="minimal",
        **last,
    )
    # sliders: also typed values and the F1 button; a drag runs only its last position
    for slider in (ui.conf, ui.iou):
        slider.change(h.show, inputs, outputs, show_progress="hidden", **last)
    ui.cell_box.change(h.pick_cell, [*inputs, ui.cell_box], outputs, show_progress="minimal", **last)
    ui.clear_cell.click(h.clear_cell, inputs, outputs, show_progress="minimal", **last)
    ui.rescore.click(h.rescore, inputs, outputs, concurrency_id=VIEW_QUEUE)
    ui.gallery.select(
        h.select_image,
        [ctx.project, ui.run, ui.split, ui.conf, ui.iou, ui.state],
        [ui.state, ui.detail_img, ui.detail_md],
        trigger_mode="always_last",
    )


def _wire_actions(ctx: PageContext, ui: ReviewUI, h: Handlers) -> None:
    """The buttons that run something: the model, the F1 threshold, Fix in editor, FiftyOne."""
    ui.compute.click(h.compute, ui.view_inputs(ctx.project), ui.view_outputs())
    ui.cancel.click(h.cancel, None, None)
    ui.use_f1.click(h.use_f1, [ctx.project, ui.run, ui.split, ui.iou], [ui.conf])
    ui.fix.click(h.fix, [ui.state], [ctx.label_goto]).success(
        lambda: gr.Tabs(selected=LABEL_TAB), None, [ctx.tabs]
    )
    ui.fo_button.click(h.open_fiftyone, [ctx.project, ui.run, ui.split, ui.conf, ui.iou], [ui.fo_link])


# --------------------------------------------------------------------------- handlers


def _run_id(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _class_index(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _state(value: Any) -> ReviewState:
    return value if isinstance(value, ReviewState) else ReviewState()


def _class_choices(names: list[str]) -> list[tuple[str, Any]]:
    return [("All classes", "")] + [(n, i) for i, n in enumerate(names)]


class Handlers:
    """The page's event handlers; each calls one service function and names what it updates."""

    def __init__(self, root: Path, ui: ReviewUI) -> None:
        self.root, self.ui = root, ui

    def _render(self, view: rv.ReviewView, state: ReviewState, class_index: int | None) -> dict:
        ui = self.ui
        out = {
            ui.status: view.status,
            ui.counts: view.counts,
            ui.gallery: view.gallery,
            ui.confusion: view.confusion,
            ui.pr: view.pr,
            ui.f1: view.f1,
            ui.ap_table: view.table,
            ui.detail_img: view.picture,
            ui.detail_md: view.detail,
            ui.cell_md: view.cell_text,
            ui.use_f1: gr.Button(
                value=F1_LABEL if view.best_conf is None else f"{F1_LABEL} ({view.best_conf:.2f})"
            ),
            ui.state: dataclasses.replace(state, ids=view.ids, selected=view.selected),
        }
        if view.class_names is not None:
            names = view.class_names
            value = class_index if class_index in range(len(names)) else ""
            out[ui.f_class] = gr.Dropdown(choices=_class_choices(names), value=value)
        return out

    def _view(self, slug, run, split, conf, iou, cls, kind, state: ReviewState, rebuild=False) -> dict:
        filters = rv.Filters(_class_index(cls), kind or "errors", state.cell)
        with open_project(self.root, slug) as store:
            view = rv.view(
                store, _run_id(run), split, float(conf), float(iou), filters, state.selected, rebuild
            )
        return self._render(view, state, filters.class_index)

    def refresh(self, slug, run=None, split=None, conf=0.5, iou=0.5, cls="", kind="errors", st=None):
        """Keeps the user's run, split, thresholds and filters when the tab is re-selected (e.g. back
        from fixing a box in the Label editor: the review is re-scored against the new labels)."""
        ui = self.ui
        if not slug:
            out = self._render(rv.ReviewView("No project open."), ReviewState(), None)
            out.update(
                {
                    ui.run: gr.Dropdown(choices=[], value=None),
                    ui.split: gr.Radio(choices=["valid"], value="valid"),
                }
            )
        else:
            with open_project(self.root, slug) as store:
                choices = rp.reviewable_runs(store)
                ids = [c[1] for c in choices]
                keep = run in ids
                run = run if keep else (ids[0] if ids else None)
                splits = rp.review_splits(store, run) if run is not None else ["valid"]
            split = split if keep and split in splits else splits[0]
            state = _state(st) if keep else ReviewState()
            out = self._view(slug, run, split, conf, iou, cls if keep else "", kind, state)
            out.update(
                {
                    ui.run: gr.Dropdown(choices=choices, value=run),
                    ui.split: gr.Radio(choices=splits, value=split),
                }
            )
        return [out.get(c, gr.skip()) for c in ui.page_outputs()]

    @guarded
    def show(self, slug, run, split, conf, iou, cls, kind, st):
        return self._view(slug, run, split, conf, iou, cls, kind, _state(st))

    @guarded
    def pick_run(self, slug, run, split, conf, iou, cls, kind, st):
        """A new run starts on its first split, all classes, errors only, no matrix filter."""
        with open_project(self.root, slug) as store:
            splits = rp.review_splits(store, int(run)) if _run_id(run) is not None else ["valid"]
        out = self._view(slug, run, splits[0], conf, iou, "", "errors", ReviewState())
        return {**out, self.ui.split: gr.Radio(choices=splits, value=splits[0]), self.ui.f_kind: "errors"}

    @guarded
    def pick_cell(self, slug, run, split, conf, iou, cls, kind, st, text):
        state = dataclasses.replace(_state(st), cell=rv.parse_cell(text), selected=None)
        return self._view(slug, run, split, conf, iou, cls, kind, state)

    @guarded
    def clear_cell(self, slug, run, split, conf, iou, cls, kind, st):
        return self._view(slug, run, split, conf, iou, cls, kind, dataclasses.replace(_state(st), cell=None))

    @guarded
    def rescore(self, slug, run, split, conf, iou, cls, kind, st):
        return self._view(slug, run, split, conf, iou, cls, kind, _state(st), rebuild=True)

    @guarded
    def compute(
        self, slug, run, split, conf, iou, cls, kind, st, request: gr.Request, progress=gr.Progress()
    ):
        if _run_id(run) is None:
            raise StudioError("Choose a run first.")
        stop = _CANCEL.setdefault(request.session_hash or "", threading.Event())
        stop.clear()
        with open_project(self.root, slug) as store:
            progress(0, desc="Loading the model…")
            rp.compute_predictions(
                store,
                int(run),
                split,
                progress=lambda done, total: progress((done, total), desc="Predicting", unit="images"),
                should_stop=stop.is_set,
            )
        return self._view(slug, run, split, conf, iou, cls, kind, dataclasses.replace(_state(st), cell=None))

    def cancel(self, request: gr.Request) -> None:
        _CANCEL.setdefault(request.session_hash or "", threading.Event()).set()
        gr.Info("Cancelling after the current batch…")

    @guarded
    def use_f1(self, slug, run, split, iou):
        with open_project(self.root, slug) as store:
            return rv.f1_threshold(store, int(run), split, float(iou))

    @guarded
    def select_image(self, slug, run, split, conf, iou, st, evt: gr.SelectData):
        """The clicked thumbnail goes to the detail view beside the grid."""
        state = _state(st)
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        selected = state.ids[index] if 0 <= index < len(state.ids) else None
        ui = self.ui
        if selected is None:
            return {
                ui.state: dataclasses.replace(state, selected=None),
                ui.detail_img: None,
                ui.detail_md: "",
            }
        with open_project(self.root, slug) as store:
            picture, text = rv.detail_of(store, int(run), split, float(conf), float(iou), selected)
        return {
            ui.state: dataclasses.replace(state, selected=selected),
            ui.detail_img: picture,
            ui.detail_md: text,
        }

    @guarded
    def fix(self, st):
        image_id = _state(st).selected
        if image_id is None:
            raise StudioError("Select an image in the gallery first.")
        return {"image_id": int(image_id), "at": time.time()}

    @guarded
    def open_fiftyone(self, slug, run, split, conf, iou, progress=gr.Progress()):
        if _run_id(run) is None:
            raise StudioError("Choose a run first.")
        progress(0, desc="Starting FiftyOne…")
        with open_project(self.root, slug) as store:
            return rv.open_fiftyone(
                store,
                int(run),
                split,
                float(conf),
                float(iou),
                progress=lambda d, t: progress((d, t), desc="Adding samples"),
            )
