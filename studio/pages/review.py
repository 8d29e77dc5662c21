"""Review page: a run's predictions on the validation (or test) split, computed once and stored, then
re-scored at the user's confidence and IoU without the model — worst images first, per-class table,
PR curves, a clickable confusion matrix, the F1-optimal threshold, *Fix in editor* and FiftyOne."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.services.review import analysis as rv
from studio.services.review import fiftyone_bridge as fob
from studio.services.review import plots
from studio.services.review import predictions as rp

TITLE = "Review"
TAB_ID = "tab-review"
LABEL_TAB = "tab-label"
_CANCEL: dict[str, threading.Event] = {}

# A plotly click on the confusion matrix writes "row,col" into a hidden textbox (Gradio's Plot has no
# select event); the textbox's change event then filters the gallery on the server.
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


def _status(info: rp.PredictionSetInfo | None, review: Any, recorded: dict[str, Any] | None) -> str:
    if info is None:
        return (
            "No predictions for this run and split yet: press **Compute predictions** (runs the model once)."
        )
    text = (
        f"Predictions of run #{info.run_id} ({info.checkpoint} checkpoint) on **{info.split}**: "
        f"{info.n_images} images, {info.n_predictions} boxes, computed {info.created_at:%Y-%m-%d %H:%M} "
        f"in {info.seconds:.1f} s."
    )
    if info.stale:
        text += " ⚠ The checkpoint or the split's images changed since: compute again to include them."
    if review is not None:
        coco = review.coco_metrics()
        text += (
            f"\n\n**mAP@50:95 {coco['mAP_50_95']:.4f} · mAP@50 {coco['mAP_50']:.4f}** on the current labels"
        )
        if recorded and recorded.get("mAP_50_95") is not None and info.split == "valid":
            text += (
                f" (training reported {recorded['mAP_50_95']:.4f} / {recorded['mAP_50']:.4f} for the "
                f"{recorded.get('model', 'best')} model at epoch {recorded.get('epoch')})"
            )
        if review.data.unknown_gt:
            text += f". {review.data.unknown_gt} ground-truth boxes are of classes the model does not know (left out)"
        text += "."
    return text


def _counts_html(totals: dict[str, Any], conf: float, iou: float, view: str = "") -> str:
    """The totals as tiles; ``data-*`` attributes say which thresholds and filters they belong to."""
    cells = [
        ("TP", totals["tp"], "ok"),
        ("Wrong class", totals["fp_class"], "bad"),
        ("Duplicate", totals["fp_duplicate"], "bad"),
        ("Background", totals["fp_background"], "bad"),
        ("Missed", totals["fn"], "bad"),
        ("Precision", f"{totals['precision']:.3f}", ""),
        ("Recall", f"{totals['recall']:.3f}", ""),
        ("F1", f"{totals['f1']:.3f}", ""),
    ]
    body = "".join(
        f"<div class='review-count {cls}' data-name='{name}'><b>{value}</b><span>{name}</span></div>"
        for name, value, cls in cells
    )
    return (
        f"<div class='review-counts' data-conf='{conf:g}' data-iou='{iou:g}' data-view='{view}' "
        f"data-drawn='{time.time():.3f}'>{body}</div>"
    )


def _with_best_conf(rows: list[dict], best: dict[str, Any]) -> list[dict]:
    """Per-class rows plus each class's own F1-optimal confidence (None for a class without ground truth)."""
    per_class = best.get("per_class") or {}
    return [
        {
            **row,
            "best_conf": (per_class.get(row["name"]) or {}).get("threshold") if row.get("num_gt") else None,
        }
        for row in rows
    ]


def _parse_cell(text: str | None) -> tuple[int, int] | None:
    try:
        row, col = (int(v) for v in str(text).split(",")[:2])
    except (TypeError, ValueError):
        return None
    return row, col


def _class_choices(names: list[str]) -> list[tuple[str, Any]]:
    return [("All classes", "")] + [(n, i) for i, n in enumerate(names)]


def build(ctx: PageContext) -> PageHooks:
    root: Path = ctx.root
    with gr.Row(elem_classes="toolbar"):
        run_dd = gr.Dropdown([], label="Run", elem_id="review-run", scale=2)
        split = gr.Radio(["valid"], value="valid", label="Split", elem_id="review-split", scale=1)
        compute_btn = gr.Button("Compute predictions", variant="primary", elem_id="review-compute", scale=1)
        cancel_btn = gr.Button("Cancel", elem_id="review-cancel", scale=0, min_width=90)
    status = gr.Markdown(elem_id="review-status")
    with gr.Row(elem_classes="toolbar"):
        conf = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="Confidence", elem_id="review-conf", scale=3)
        iou = gr.Slider(0.1, 0.95, value=0.5, step=0.05, label="IoU threshold", elem_id="review-iou", scale=2)
        f1_btn = gr.Button("Use F1-optimal threshold", elem_id="review-use-f1", scale=1)
        rescore_btn = gr.Button("Re-score with current labels", elem_id="review-rescore", scale=1)
    counts = gr.HTML(elem_id="review-counts")
    with gr.Row(elem_classes="toolbar"):
        f_class = gr.Dropdown([("All classes", "")], value="", label="Class", elem_id="review-filter-class")
        f_kind = gr.Dropdown(
            [(v, k) for k, v in rv.KINDS.items()], value="errors", label="Show", elem_id="review-filter-kind"
        )
        cell_md = gr.Markdown(elem_id="review-filter-cell")
        clear_cell = gr.Button("Clear matrix filter", elem_id="review-clear-cell", scale=0, min_width=160)
    cell_box = gr.Textbox(elem_id="review-cell-input", elem_classes="studio-hidden", show_label=False)
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(
                label="Worst images first",
                columns=4,
                height=520,
                allow_preview=False,
                elem_id="review-gallery",
            )
        with gr.Column(scale=4):
            detail_img = gr.Image(
                label="Ground truth | Predictions", interactive=False, elem_id="review-detail"
            )
            detail_md = gr.Markdown(elem_id="review-detail-info")
            fix_btn = gr.Button("✎ Fix in editor", elem_id="review-fix")
    with gr.Row():
        confusion = gr.Plot(elem_id="review-confusion", show_label=False)
        pr_plot = gr.Plot(elem_id="review-pr", show_label=False)
    with gr.Row():
        f1_plot = gr.Plot(elem_id="review-f1", show_label=False)
        ap_table = gr.Dataframe(interactive=False, elem_id="review-ap-table", label="Per class")
    with gr.Accordion("Open in FiftyOne", open=False, elem_id="review-fiftyone-panel"):
        fo_btn = gr.Button("Build FiftyOne dataset and open the App", elem_id="review-fiftyone")
        fo_md = gr.Markdown(elem_id="review-fiftyone-link")
    gr.HTML("", js_on_load=CONFUSION_JS, elem_id="review-js")
    state = gr.State({})  # {"ids": gallery image ids, "selected": image id, "cell": [row, col] | None}

    outputs = [
        status,
        counts,
        gallery,
        confusion,
        pr_plot,
        f1_plot,
        ap_table,
        detail_img,
        detail_md,
        cell_md,
        f1_btn,
        f_class,
        state,
    ]

    def _empty(message: str, st: dict) -> list[Any]:
        return [
            message,
            "",
            [],
            None,
            None,
            None,
            None,
            None,
            "",
            "",
            gr.Button(value="Use F1-optimal threshold"),
            gr.skip(),
            {**st, "ids": [], "selected": None},
        ]

    def _view(
        store,
        run_id: Any,
        split_: str,
        conf_: float,
        iou_: float,
        cls: Any,
        kind: str,
        st: dict,
        rebuild: bool = False,
    ) -> list[Any]:
        if run_id in (None, ""):
            return _empty("No finished run yet: train one on the **Train** tab, then review it here.", st)
        run_id = int(run_id)
        info = rp.prediction_status(store, run_id, split_)
        if info is None:
            return _empty(_status(None, None, None), st)
        review = rv.open_review(store, run_id, split_, rebuild=rebuild)
        scored = review.score(float(conf_), float(iou_))
        cell = tuple(st.get("cell") or ()) or None
        class_index = int(cls) if cls not in (None, "") else None
        items, ids, n_matching = rv.gallery(review, scored, class_index, kind or "errors", cell)
        selected = st.get("selected") if st.get("selected") in ids else (ids[0] if ids else None)
        picture, text = (
            rv.detail(review, scored, selected) if selected is not None else (None, "No image matches.")
        )
        coco = review.coco_metrics()
        best = review.f1_optimal(float(iou_))
        curve = best.get("curve") or {}
        f1_fig = plots.f1_figure(
            curve.get("thresholds", []),
            curve.get("f1", []),
            curve.get("precision", []),
            curve.get("recall", []),
            best.get("threshold"),
            float(conf_),
        )
        ap50 = {r["name"]: r["AP_50"] for r in review.ap_table(scored) if r.get("AP_50") is not None}
        cell_text, cell_key = "", f"{cell[0]},{cell[1]}" if cell else ""
        if cell is not None:
            labels = scored.labels
            cell_text = (
                f"Matrix filter: ground truth **{labels[cell[0]]}** → predicted **{labels[cell[1]]}** · "
                f"{n_matching} image(s)"
            )
        recorded = rp.recorded_map(store, run_id) if split_ == "valid" else None
        names = review.data.class_names
        return [
            _status(info, review, recorded),
            _counts_html(scored.totals, float(conf_), float(iou_), f"{kind}|{cls}|{cell_key}"),
            items,
            plots.confusion_figure(scored.confusion, scored.labels),
            plots.pr_figure(review.pr_curves(float(iou_)), ap50),
            f1_fig,
            plots.ap_table(_with_best_conf(review.ap_table(scored), best)),
            picture,
            text,
            cell_text,
            gr.Button(value=f"Use F1-optimal threshold ({best['threshold']:.2f})"),
            gr.Dropdown(choices=_class_choices(names), value=cls if cls in range(len(names)) else ""),
            {**st, "ids": ids, "selected": selected, "mAP": coco["mAP_50_95"]},
        ]

    def refresh(
        slug: str | None,
        run_id: Any = None,
        split_: str | None = None,
        conf_: float = 0.5,
        iou_: float = 0.5,
        cls: Any = "",
        kind: str = "errors",
        st: dict | None = None,
    ):
        """Keeps the user's run, split, thresholds and filters when the tab is re-selected (e.g. back
        from fixing a box in the Label editor: the review is re-scored against the new labels)."""
        if not slug:
            return [
                gr.Dropdown(choices=[], value=None),
                gr.Radio(choices=["valid"], value="valid"),
                *_empty("No project open.", {}),
            ]
        with open_project(root, slug) as store:
            choices = rp.reviewable_runs(store)
            ids = [c[1] for c in choices]
            keep = run_id in ids
            run_id = run_id if keep else (ids[0] if ids else None)
            splits = rp.review_splits(store, run_id) if run_id is not None else ["valid"]
            split_ = split_ if keep and split_ in splits else splits[0]
            view = _view(
                store,
                run_id,
                split_,
                conf_,
                iou_,
                cls if keep else "",
                kind or "errors",
                (st or {}) if keep else {},
            )
        return [gr.Dropdown(choices=choices, value=run_id), gr.Radio(choices=splits, value=split_), *view]

    @guarded
    def show(slug, run_id, split_, conf_, iou_, cls, kind, st):
        with open_project(root, slug) as store:
            return _view(store, run_id, split_, conf_, iou_, cls, kind, st or {})

    @guarded
    def pick_run(slug, run_id, conf_, iou_, st):
        with open_project(root, slug) as store:
            splits = rp.review_splits(store, int(run_id)) if run_id not in (None, "") else ["valid"]
            view = _view(store, run_id, splits[0], conf_, iou_, "", "errors", {})
        return [gr.Radio(choices=splits, value=splits[0]), *view]

    @guarded
    def compute(
        slug, run_id, split_, conf_, iou_, cls, kind, st, request: gr.Request, progress=gr.Progress()
    ):
        if run_id in (None, ""):
            raise StudioError("Choose a run first.")
        stop = _CANCEL.setdefault(request.session_hash or "", threading.Event())
        stop.clear()
        with open_project(root, slug) as store:
            progress(0, desc="Loading the model…")
            rp.compute_predictions(
                store,
                int(run_id),
                split_,
                progress=lambda done, total: progress((done, total), desc="Predicting", unit="images"),
                should_stop=stop.is_set,
            )
            return _view(store, run_id, split_, conf_, iou_, cls, kind, {**(st or {}), "cell": None})

    def cancel(request: gr.Request) -> None:
        _CANCEL.setdefault(request.session_hash or "", threading.Event()).set()
        gr.Info("Cancelling after the current batch…")

    @guarded
    def rescore(slug, run_id, split_, conf_, iou_, cls, kind, st):
        with open_project(root, slug) as store:
            return _view(store, run_id, split_, conf_, iou_, cls, kind, st or {}, rebuild=True)

    @guarded
    def use_f1(slug, run_id, split_, iou_):
        with open_project(root, slug) as store:
            review = rv.open_review(store, int(run_id), split_)
            return round(float(review.f1_optimal(float(iou_))["threshold"]), 2)

    @guarded
    def select_image(st, evt: gr.SelectData):
        ids = (st or {}).get("ids") or []
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        return {**(st or {}), "selected": ids[index] if 0 <= index < len(ids) else None}

    @guarded
    def show_detail(slug, run_id, split_, conf_, iou_, st):
        if not st or st.get("selected") is None:
            return None, ""
        with open_project(root, slug) as store:
            review = rv.open_review(store, int(run_id), split_)
            return rv.detail(review, review.score(float(conf_), float(iou_)), st["selected"])

    def set_cell(text, st):
        return {**(st or {}), "cell": _parse_cell(text), "selected": None}

    def no_cell(st):
        return {**(st or {}), "cell": None}, ""

    @guarded
    def fix(st):
        image_id = (st or {}).get("selected")
        if image_id is None:
            raise StudioError("Select an image in the gallery first.")
        return {"image_id": int(image_id), "at": time.time()}

    @guarded
    def open_fiftyone(slug, run_id, split_, conf_, iou_, progress=gr.Progress()):
        """Every stored prediction goes to FiftyOne (so its mAP is the review's); the App's confidence
        filter then plays the role of this page's slider."""
        if run_id in (None, ""):
            raise StudioError("Choose a run first.")
        with open_project(root, slug) as store:
            data = rp.load_review_data(store, int(run_id), split_)
            name = fob.dataset_name(store.project().name, int(run_id), split_)
            ours = rv.open_review(store, int(run_id), split_).coco_metrics()["mAP_50_95"]
        progress(0, desc="Starting FiftyOne…")
        summary = fob.build_dataset(
            data,
            name,
            conf=0.0,
            iou=float(iou_),
            progress=lambda d, t: progress((d, t), desc="Adding samples"),
        )
        url = fob.launch_app(name)
        fo_map = "—" if summary.mAP is None else format(summary.mAP, ".4f")
        return (
            f"FiftyOne dataset **{summary.name}**: {summary.n_samples} samples, {summary.n_gt} ground-truth and "
            f"{summary.n_predictions} predicted boxes; `evaluate_detections` (eval key `{summary.eval_key}`, "
            f"IoU {float(iou_):g}) mAP {fo_map} (Review: {ours:.4f}). Filter by confidence ≥ {float(conf_):g} "
            f"in the App to see what this page shows. **[Open the FiftyOne App]({url})** ({url})"
        )

    inputs = [ctx.project, run_dd, split, conf, iou, f_class, f_kind, state]
    run_dd.input(pick_run, [ctx.project, run_dd, conf, iou, state], [split, *outputs])
    for comp in (split, f_class, f_kind):
        comp.input(show, inputs, outputs, show_progress="minimal")
    for slider in (conf, iou):  # also typed values and the F1 button; a drag runs only its last position
        slider.change(show, inputs, outputs, show_progress="hidden", trigger_mode="always_last")
    compute_btn.click(compute, inputs, outputs)
    cancel_btn.click(cancel, None, None)
    rescore_btn.click(rescore, inputs, outputs)
    f1_btn.click(use_f1, [ctx.project, run_dd, split, iou], [conf])
    gallery.select(select_image, [state], [state]).then(
        show_detail, [ctx.project, run_dd, split, conf, iou, state], [detail_img, detail_md]
    )
    cell_box.change(set_cell, [cell_box, state], [state]).then(show, inputs, outputs, show_progress="minimal")
    clear_cell.click(no_cell, [state], [state, cell_md]).then(show, inputs, outputs, show_progress="minimal")
    fix_btn.click(fix, [state], [ctx.label_goto]).success(
        lambda: gr.Tabs(selected=LABEL_TAB), None, [ctx.tabs]
    )
    fo_btn.click(open_fiftyone, [ctx.project, run_dd, split, conf, iou], [fo_md])
    return PageHooks(
        refresh=refresh,
        outputs=[run_dd, split, *outputs],
        select_inputs=[run_dd, split, conf, iou, f_class, f_kind, state],
    )
