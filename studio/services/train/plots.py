"""Reading a run's metrics back from SQLite and drawing them with plotly (one or two runs per plot).

The trainer writes long-format rows (:class:`~studio.store.RunMetric`: one scalar per row); these
functions only read, so the UI can poll them while training is running. Comparing runs draws each
run with its own line style on the same axes.
"""

from __future__ import annotations

import math
from collections import defaultdict

import plotly.graph_objects as go
from sqlalchemy import select

from studio.store import ProjectStore, Run, RunMetric

VAL_CURVES = (
    ("val/mAP_50", "mAP@50"),
    ("val/mAP_50_95", "mAP@50:95"),
    ("val/F1", "F1"),
    ("val/precision", "precision"),
    ("val/recall", "recall"),
)
DASHES = ("solid", "dash", "dot", "dashdot")
SMOOTHING = 0.8  # exponential moving average of the step loss (as TensorBoard's slider)
LR_MARGIN_DECADES = 0.5  # room above and below the learning-rate curve, in powers of ten


def metric_names(store: ProjectStore, run_id: int) -> list[str]:
    with store.session(readonly=True) as s:
        return sorted(s.scalars(select(RunMetric.name).where(RunMetric.run_id == run_id).distinct()))


def class_ap_names(store: ProjectStore, run_id: int) -> list[str]:
    """Classes with a per-class AP curve in this run."""
    return [n.removeprefix("val/AP/") for n in metric_names(store, run_id) if n.startswith("val/AP/")]


def series(
    store: ProjectStore, run_id: int, names: list[str], by: str = "epoch"
) -> dict[str, tuple[list, list]]:
    """``{name: (x, y)}`` ordered by ``by`` (``"epoch"`` or ``"step"``)."""
    order = RunMetric.step if by == "step" else RunMetric.epoch
    out: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    with store.session(readonly=True) as s:
        rows = s.execute(
            select(RunMetric.name, RunMetric.epoch, RunMetric.step, RunMetric.value)
            .where(RunMetric.run_id == run_id, RunMetric.name.in_(names))
            .order_by(order, RunMetric.id)
        )
        for name, epoch, step, value in rows:
            xs, ys = out[name]
            xs.append(step if by == "step" else epoch)
            ys.append(value)
    return dict(out)


def _labels(store: ProjectStore, run_ids: list[int]) -> dict[int, str]:
    with store.session(readonly=True) as s:
        return {r.id: r.name for r in s.scalars(select(Run).where(Run.id.in_(run_ids)))}


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        height=300,
        margin=dict(l=50, r=10, t=40, b=40),
        legend=dict(orientation="h", y=-0.25),
        template="plotly_white",
    )
    return fig


def _smooth(values: list[float], alpha: float = SMOOTHING) -> list[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None else alpha * acc + (1 - alpha) * v
        out.append(acc)
    return out


def loss_figure(store: ProjectStore, run_ids: list[int]) -> go.Figure:
    """Training loss per step, raw (faint) and smoothed."""
    fig, labels = go.Figure(), _labels(store, run_ids)
    for k, run_id in enumerate(run_ids):
        xs, ys = series(store, run_id, ["train/loss_step"], by="step").get("train/loss_step", ([], []))
        name = labels.get(run_id, str(run_id))
        fig.add_scatter(
            x=xs, y=ys, mode="lines", name=f"{name} (raw)", opacity=0.3, line=dict(dash=DASHES[k % 4])
        )
        fig.add_scatter(
            x=xs, y=_smooth(ys), mode="lines", name=f"{name} (smoothed)", line=dict(dash=DASHES[k % 4])
        )
    return _layout(fig, "Train loss", "step", "loss")


def metrics_figure(store: ProjectStore, run_ids: list[int]) -> go.Figure:
    """Validation mAP@50, mAP@50:95, F1, precision and recall per epoch."""
    fig, labels = go.Figure(), _labels(store, run_ids)
    for k, run_id in enumerate(run_ids):
        data = series(store, run_id, [key for key, _ in VAL_CURVES])
        prefix = f"{labels.get(run_id, run_id)} · " if len(run_ids) > 1 else ""
        for key, title in VAL_CURVES:
            if key in data:
                fig.add_scatter(
                    x=data[key][0],
                    y=data[key][1],
                    mode="lines+markers",
                    name=prefix + title,
                    line=dict(dash=DASHES[k % 4]),
                )
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, "Validation", "epoch", "value")


def class_ap_figure(store: ProjectStore, run_ids: list[int], classes: list[str] | None = None) -> go.Figure:
    """Per-class AP@50:95 per epoch for the chosen classes (all when ``classes`` is empty)."""
    fig, labels = go.Figure(), _labels(store, run_ids)
    for k, run_id in enumerate(run_ids):
        names = [f"val/AP/{c}" for c in (classes or class_ap_names(store, run_id))]
        prefix = f"{labels.get(run_id, run_id)} · " if len(run_ids) > 1 else ""
        for key, (xs, ys) in sorted(series(store, run_id, names).items()):
            fig.add_scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                name=prefix + key.removeprefix("val/AP/"),
                line=dict(dash=DASHES[k % 4]),
            )
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, "Per-class AP@50:95", "epoch", "AP")


def lr_figure(store: ProjectStore, run_ids: list[int]) -> go.Figure:
    """Learning rate per step on a log axis fitted to the values.

    Why not plotly's autorange: a constant rate (``7e-05`` all run long) autoscales to a flat line on
    a −1…1 axis. Learning rates live on a log scale anyway (warm-up and drops are factors of ten).
    """
    fig, labels = go.Figure(), _labels(store, run_ids)
    positive: list[float] = []
    for k, run_id in enumerate(run_ids):
        xs, ys = series(store, run_id, ["lr"], by="step").get("lr", ([], []))
        positive += [y for y in ys if y > 0]
        fig.add_scatter(
            x=xs, y=ys, mode="lines", name=labels.get(run_id, str(run_id)), line=dict(dash=DASHES[k % 4])
        )
    fig.update_yaxes(type="log", exponentformat="e")
    if positive:
        low, high = math.log10(min(positive)), math.log10(max(positive))
        fig.update_yaxes(range=[low - LR_MARGIN_DECADES, high + LR_MARGIN_DECADES])
    return _layout(fig, "Learning rate", "step", "lr")
