"""What the Train page shows for a project's runs: the table, the run pickers, the progress line and
the live plots, computed from SQLite with no Gradio in sight.

Why a stamp: the page polls every two seconds while a run is active; redrawing four plotly figures
on every tick would make the page flicker and cost CPU. :class:`LiveStamp` names what the plots
depend on; an idle tick with the same stamp redraws nothing but the progress line.

Every run-derived string that reaches HTML (a run's error quotes checkpoint contents, which may be
hostile) goes through :func:`studio.text.html_text`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from studio.services.train import plots, runs
from studio.services.train.status import ACTIVE
from studio.store import ProjectStore
from studio.text import html_text

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
NO_RUN_HTML = (
    "<div class='train-progress'>No run yet: choose the settings and press <b>Start training</b>.</div>"
)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def table_rows(infos: list[runs.RunInfo]) -> list[list[Any]]:
    """One row per run, in :data:`TABLE_HEADERS` order."""
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
                _round(r.best_map50_95),
                _round(r.best_map50),
                f"{r.epochs_done}/{r.total_epochs}",
                duration(r.duration_s),
                r.dataset_hash[:12],
                summary,
                r.created_at.strftime("%Y-%m-%d %H:%M"),
            ]
        )
    return rows


def progress_html(info: runs.RunInfo | None) -> str:
    """Status, epoch / step, ETA and a progress bar for one run (``data-status`` = the status word)."""
    if info is None:
        return NO_RUN_HTML
    p = info.progress
    step, total = int(p.get("step") or 0), int(p.get("total_steps") or 0)
    frac = step / total if total else 0.0
    running = info.status == "running"
    eta = p.get("eta_s")
    eta_text = f" · ETA {duration(eta)}" if eta is not None and running else ""
    done = min(info.epochs_done + 1, info.total_epochs or 0) if running else info.epochs_done
    label = html_text(info.status_label)
    error = f"<div class='train-error'>{html_text(info.error)}</div>" if info.error else ""
    return (
        f"<div class='train-progress' data-status='{label}'>"
        f"<b>Run #{info.id}</b> · <span class='train-status'>{label}</span> · "
        f"epoch {done}/{info.total_epochs} · step {step}/{total}{eta_text}"
        f"<progress max='1' value='{frac:.4f}' style='width:100%'></progress>{error}</div>"
    )


@dataclass(frozen=True)
class RunsView:
    """The runs table and the two run pickers, with selections that still exist."""

    rows: list[list[Any]]
    run_choices: list[tuple[str, int]]
    run_id: int | None
    compare_choices: list[tuple[str, Any]]
    compare_id: Any  # a run id, or "" for none


def runs_view(infos: list[runs.RunInfo], run_id: Any = None, compare_id: Any = None) -> RunsView:
    """Keep the chosen run (else the newest) and the compared run when they still exist."""
    choices = [(f"#{r.id} {r.model_size} · {r.status_label}", r.id) for r in infos]
    ids = [r.id for r in infos]
    chosen = int(run_id) if run_id not in (None, "") and int(run_id) in ids else (ids[0] if ids else None)
    compare = compare_id if compare_id in ids and compare_id != chosen else ""
    others = [("none", "")] + [c for c in choices if c[1] != chosen]
    return RunsView(table_rows(infos), choices, chosen, others, compare)


def load_runs_view(store: ProjectStore, run_id: Any = None, compare_id: Any = None) -> RunsView:
    return runs_view(runs.list_runs(store), run_id, compare_id)


@dataclass(frozen=True)
class LiveStamp:
    """What the live plots were drawn from; equal stamps mean nothing to redraw."""

    run_ids: tuple[int, ...]
    classes: tuple[str, ...]
    status: str
    step: Any
    epochs_done: int
    statuses: tuple[tuple[int, str], ...] = ()  # every run's status word: the pickers show them

    def log_differs(self, other: LiveStamp | None) -> bool:
        """Is the downloadable log worth refreshing (another run, status or epoch)?"""
        key = (self.run_ids, self.status, self.epochs_done)
        return other is None or key != (other.run_ids, other.status, other.epochs_done)


@dataclass
class LiveView:
    """The live part of the page. ``changed`` False: keep the plots, log and class picker as shown."""

    progress: str = NO_RUN_HTML
    active: bool = False  # a run is queued or running: keep polling
    stamp: LiveStamp | None = None
    changed: bool = True
    metrics: go.Figure | None = None
    loss: go.Figure | None = None
    class_ap: go.Figure | None = None
    lr: go.Figure | None = None
    log_tail: str = ""
    log_changed: bool = True  # False: keep the download as it is (copying the log every tick is waste)
    log_path: Path | None = None
    class_names: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


def live_view(
    store: ProjectStore,
    run_id: Any,
    compare_id: Any,
    classes: list[str] | None,
    last: LiveStamp | None,
    force: bool,
) -> LiveView:
    """The live view of ``run_id`` (else the newest run), ``compare_id`` drawn beside it."""
    infos = runs.list_runs(store)
    info = next((r for r in infos if r.id == run_id), infos[0] if infos else None)
    if info is None:
        return LiveView()
    active = any(r.status in ACTIVE for r in infos)
    ids = [info.id] + ([int(compare_id)] if compare_id not in (None, "", info.id) else [])
    stamp = LiveStamp(
        tuple(ids),
        tuple(classes or ()),
        info.status_label,
        info.progress.get("step"),
        info.epochs_done,
        tuple((r.id, r.status_label) for r in infos),
    )
    if stamp == last and not force:
        return LiveView(progress_html(info), active, last, changed=False, log_changed=False)
    names = plots.class_ap_names(store, info.id)
    chosen = [c for c in (classes or []) if c in names]
    return LiveView(
        progress=progress_html(info),
        active=active,
        stamp=stamp,
        metrics=plots.metrics_figure(store, ids),
        loss=plots.loss_figure(store, ids),
        class_ap=plots.class_ap_figure(store, ids, chosen),
        lr=plots.lr_figure(store, ids),
        log_tail=runs.run_log_tail(store, info.id),
        log_changed=force or stamp.log_differs(last),
        log_path=runs.log_file(store, info.id),
        class_names=names,
        classes=chosen,
    )


def latest_run_id(store: ProjectStore) -> int | None:
    """The newest run's id, without the liveness check (the live view does that next)."""
    return next((r.id for r in runs.list_runs(store, check_liveness=False)), None)
