"""Plotly figures and the per-class table of the Review page, from plain numpy/python inputs.

The analysis (matching, confusion matrix, PR curves, AP) is computed elsewhere; these functions only
draw, in the look of the Train page (:mod:`studio.services.train.plots`). Every figure copes with empty
input (a project without classes, a split without images, a model that found nothing) by showing a
"nothing to show" note instead of raising, because the page redraws them on every slider move.

plotly is imported inside the functions so the app starts fast (as :mod:`studio.services.data.classes`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from studio.services.data.classes import PALETTE
from studio.text import html_text

if TYPE_CHECKING:
    import plotly.graph_objects as go

BACKGROUND_LABEL = "background"
TABLE_COLUMNS = ("Class", "AP@50:95", "AP@50", "Precision", "Recall", "GT boxes", "F1-optimal conf")
MISSING = "—"
#: Accepted keys of a per-class row (first present wins), so the table does not depend on one spelling.
ROW_KEYS = {
    "Class": ("class", "name", "class_name", "Class"),
    "AP@50:95": ("ap", "ap50_95", "ap_50_95", "AP_50_95", "map", "AP@50:95"),
    "AP@50": ("ap50", "ap_50", "AP_50", "AP@50"),
    "Precision": ("precision", "Precision"),
    "Recall": ("recall", "Recall"),
    "GT boxes": ("n_gt", "gt", "gt_boxes", "num_gt", "GT boxes"),
    "F1-optimal conf": ("best_conf", "f1_threshold", "F1-optimal conf"),
}


def _layout(
    fig: go.Figure, title: str, x: str, y: str, height: int = 320, legend_items: int = 0
) -> go.Figure:
    """The Train page's look; a long legend goes to the right instead of under the plot."""
    legend = dict(orientation="h", y=-0.25) if legend_items <= 8 else dict(orientation="v", x=1.02, y=1)
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        height=height,
        template="plotly_white",
        margin=dict(l=50, r=10, t=40, b=40),
        legend=legend,
    )
    return fig


def _empty(title: str, message: str) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(
        text=message,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font=dict(size=14, color="#666"),
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, "", "")


def _finite(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------- confusion matrix


def _cell_texts(matrix: np.ndarray, z: np.ndarray, normalise: bool) -> np.ndarray:
    """What each cell shows: the count (or the row share), blank for empty cells to keep 30×30 readable."""
    texts = np.full(matrix.shape, "", dtype=object)
    nz = matrix != 0
    if normalise:
        texts[nz] = [f"{v:.0%}" if v >= 0.005 else "<1%" for v in z[nz]]
    else:
        texts[nz] = [f"{v:g}" for v in matrix[nz]]
    return texts


def confusion_figure(matrix: np.ndarray, labels: list[str], normalise: bool = False) -> go.Figure:
    """Heatmap of ground truth (rows, y) against predicted class (columns, x), background last on both.

    ``labels`` are the class names (``"background"`` is appended unless already last). Each cell's
    ``customdata`` is ``[row, col]`` so a click handler knows which cell was clicked; the diagonal is
    outlined. ``normalise`` colours and labels each row by its share of the row total (what fraction of a
    class's boxes went where) while the hover still gives the count.
    """
    import plotly.graph_objects as go

    title = "Confusion matrix" + (" (row-normalised)" if normalise else "")
    matrix = np.asarray(matrix, dtype=np.float64)
    names = list(labels)
    if not names or names[-1] != BACKGROUND_LABEL or len(names) == matrix.shape[0] - 1:
        names.append(BACKGROUND_LABEL)
    if matrix.size == 0 or len(names) < 2 or not np.nan_to_num(matrix).any():
        return _empty(title, "Nothing to show: no ground truth and no predictions at this threshold.")
    if matrix.shape != (len(names), len(names)):
        raise ValueError(f"matrix has shape {matrix.shape} for {len(names)} labels (incl. background)")
    matrix = np.nan_to_num(matrix)
    names = _shown(names)
    n = len(names)
    z = matrix
    if normalise:
        totals = matrix.sum(axis=1, keepdims=True)
        z = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    rows, cols = np.indices((n, n))
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            customdata=np.stack([rows, cols], axis=-1),
            text=_cell_texts(matrix, z, normalise),
            texttemplate="%{text}",
            textfont=dict(size=max(7, 14 - n // 3)),
            hovertext=_confusion_hover(names, matrix, z, normalise),
            hovertemplate="%{hovertext}<extra></extra>",
            colorscale="Blues",
            xgap=1,
            ygap=1,
            colorbar=dict(title="share" if normalise else "count"),
        )
    )
    _outline_diagonal(fig, n)
    fig.update_yaxes(autorange="reversed", type="category", title="ground truth")
    fig.update_xaxes(type="category", title="predicted", tickangle=-45 if n > 8 else 0, side="bottom")
    fig.update_layout(
        title=title,
        height=max(360, 120 + 24 * n),
        template="plotly_white",
        margin=dict(l=80, r=10, t=40, b=80),
    )
    return fig


def _shown(names: list[str]) -> list[str]:
    """Class names as plotly shows them literally: plotly reads tags in its text (``<b>``, ``<a href>``)
    and decodes HTML entities, so an escaped name appears exactly as the file spelled it. Names that
    only differ after escaping cannot collide: escaping is one-to-one."""
    return [html_text(n) for n in names]


def _confusion_hover(names: list[str], matrix: np.ndarray, z: np.ndarray, normalise: bool) -> np.ndarray:
    n = len(names)
    return np.array(
        [
            [
                f"GT: {names[r]}<br>predicted: {names[c]}<br>count: {matrix[r, c]:g}"
                + (f" ({z[r, c]:.1%} of row)" if normalise else "")
                for c in range(n)
            ]
            for r in range(n)
        ]
    )


def _outline_diagonal(fig: go.Figure, n: int) -> None:
    for k in range(n - 1):  # background × background is never counted: not part of the diagonal
        fig.add_shape(
            type="rect",
            x0=k - 0.5,
            x1=k + 0.5,
            y0=k - 0.5,
            y1=k + 0.5,
            line=dict(color="#2ca02c", width=2),
            fillcolor="rgba(0,0,0,0)",
        )


# --------------------------------------------------------------------------- curves


def _ap_text(value) -> str:
    v = _finite(value)
    return MISSING if v is None else f"{v:.2f}"


def pr_figure(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], ap: dict[str, float] | None = None
) -> go.Figure:
    """Precision against recall, one line per class; the legend carries each class's AP@50."""
    import plotly.graph_objects as go

    title = "Precision–recall (IoU 0.50)"
    drawn = {
        name: (np.asarray(r, float).reshape(-1), np.asarray(p, float).reshape(-1))
        for name, (r, p) in (curves or {}).items()
    }
    drawn = {name: rp for name, rp in drawn.items() if len(rp[0]) and len(rp[0]) == len(rp[1])}
    if not drawn:
        return _empty(title, "Nothing to show: no class has ground truth or predictions.")
    fig = go.Figure()
    for k, (name, (recall, precision)) in enumerate(drawn.items()):
        shown = html_text(name)
        label = shown if ap is None else f"{shown} (AP50 {_ap_text(ap.get(name))})"
        fig.add_scatter(
            x=recall, y=precision, mode="lines", name=label, line=dict(color=PALETTE[k % len(PALETTE)])
        )
    fig.update_xaxes(range=[0, 1.02])
    fig.update_yaxes(range=[0, 1.02])
    return _layout(fig, title, "recall", "precision", height=360, legend_items=len(drawn))


def f1_figure(
    thresholds: np.ndarray,
    f1: np.ndarray,
    precision: np.ndarray,
    recall: np.ndarray,
    best: float | None = None,
    current: float | None = None,
) -> go.Figure:
    """F1, precision and recall against the confidence threshold, with the F1-optimal and the current
    threshold marked, so the user sees how far the slider is from the best operating point."""
    import plotly.graph_objects as go

    title = "F1 / precision / recall vs confidence"
    x = np.asarray(thresholds, float).reshape(-1)
    series = [("F1", f1, "#000075"), ("precision", precision, "#4363d8"), ("recall", recall, "#f58231")]
    series = [(n, np.asarray(v, float).reshape(-1), c) for n, v, c in series if v is not None]
    series = [(n, v, c) for n, v, c in series if len(v) == len(x)]
    if not len(x) or not series:
        return _empty(title, "Nothing to show: no predictions to threshold.")
    fig = go.Figure()
    for name, values, color in series:
        fig.add_scatter(
            x=x, y=values, mode="lines", name=name, line=dict(color=color, width=3 if name == "F1" else 2)
        )
    for value, label, color, dash, pos in (
        (best, "F1-optimal", "#3cb44b", "dash", "top left"),
        (current, "current", "#e6194b", "dot", "bottom right"),
    ):
        v = _finite(value)
        if v is not None:
            fig.add_vline(
                x=v,
                line=dict(color=color, dash=dash, width=2),
                annotation_text=f"{label} {v:.2f}",
                annotation_position=pos,
            )
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    return _layout(fig, title, "confidence threshold", "value")


# --------------------------------------------------------------------------- per-class AP


def _field(row: dict, column: str):
    return next((row[k] for k in ROW_KEYS[column] if k in row), None)


def ap_bar_figure(rows: list[dict]) -> go.Figure:
    """AP@50:95 and AP@50 per class as grouped bars (rows as for :func:`ap_table`)."""
    import plotly.graph_objects as go

    title = "Per-class AP"
    rows = list(rows or [])
    names = _shown([str(_field(r, "Class")) for r in rows])
    ap = [_finite(_field(r, "AP@50:95")) for r in rows]
    ap50 = [_finite(_field(r, "AP@50")) for r in rows]
    if not rows or all(v is None for v in ap + ap50):
        return _empty(title, "Nothing to show: no per-class AP (no classes or no ground truth).")
    fig = go.Figure()
    fig.add_bar(x=names, y=ap, name="AP@50:95", marker_color="#4363d8")
    fig.add_bar(x=names, y=ap50, name="AP@50", marker_color="#42d4f4")
    fig.update_layout(barmode="group")
    fig.update_xaxes(type="category", tickangle=-45 if len(names) > 8 else 0)
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, title, "class", "AP")


def _cell(value, integer: bool = False):
    v = _finite(value)
    if v is None:
        return MISSING
    return int(round(v)) if integer else round(v, 3)


def ap_table(rows: list[dict]) -> pd.DataFrame:
    """Per-class metrics as a table for display: columns :data:`TABLE_COLUMNS`, numbers rounded to 3
    decimals, GT boxes as integers and "—" where a value is missing (e.g. AP of a class without ground
    truth). Row keys may be spelled as in :data:`ROW_KEYS`."""
    out = []
    for row in rows or []:
        name = _field(row, "Class")
        out.append(
            {
                "Class": MISSING if name is None else str(name),
                **{c: _cell(_field(row, c), integer=c == "GT boxes") for c in TABLE_COLUMNS[1:]},
            }
        )
    return pd.DataFrame(out, columns=list(TABLE_COLUMNS))
