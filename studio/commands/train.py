"""``rfdetr-studio train`` and ``runs``: a run started exactly as the Train page starts one, and the list.

``train`` opens on the page's suggested settings for this data and machine (the last run's settings when
the page started one before), changes only what is given on the command line, and starts the run through
the page's own service (:func:`studio.services.train.settings.start_training`): the same validation,
weights check, label snapshot and trainer process, so the run shows on the Train page like any other.
``--wait`` then follows the run through the project's SQLite file, as the page does, until it ends.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from studio.commands.common import EXIT_USER, CommandError, Outcome, add_common, progress_bar, project_store

NAMES = ("train", "runs")
POLL_S = 1.0
#: command-line option -> the Train page's setting
OPTIONS = {
    "size": "model_size",
    "epochs": "epochs",
    "resolution": "resolution",
    "batch": "batch_size",
    "grad_accum": "grad_accum_steps",
    "lr": "lr",
    "seed": "seed",
    "pretrained": "pretrained",
    "weights": "weights_path",
    "early_stopping": "early_stopping",
    "ema": "use_ema",
}


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("train", help="start a training run (as the Train page does)")
    p.add_argument("project", help="folder name (slug) or display name")
    p.add_argument("--size", help="model size: Nano, Small, Medium, Base, Large (default: the page's)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--resolution", type=int, help="input size in px (a multiple of the model's block size)")
    p.add_argument("--batch", type=int, help="batch size")
    p.add_argument("--grad-accum", type=int, help="gradient accumulation steps")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--seed", type=int)
    p.add_argument("--pretrained", choices=("official", "local", "scratch"), help="where the weights start")
    p.add_argument("--weights", help="a .pth file (with --pretrained local)")
    p.add_argument("--early-stopping", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None, help="keep an EMA model")
    p.add_argument("--wait", action="store_true", help="follow the run until it ends (progress on stderr)")
    add_common(p)
    p.set_defaults(handler=run_train)
    runs = sub.add_parser("runs", help="the project's training runs, newest first")
    runs.add_argument("project", help="folder name (slug) or display name")
    add_common(runs)
    runs.set_defaults(handler=run_runs)


def run_doc(info: Any) -> dict[str, Any]:
    """One run as the JSON documented in docs/cli.md."""
    return {
        "id": info.id,
        "name": info.name,
        "model_size": info.model_size,
        "status": info.status,
        "status_label": info.status_label,
        "epochs_done": info.epochs_done,
        "total_epochs": info.total_epochs,
        "best_map50_95": info.best_map50_95,
        "best_map50": info.best_map50,
        "dataset_hash": info.dataset_hash,
        "created_at": info.created_at,
        "duration_s": info.duration_s,
        "error": info.error,
        "settings": info.settings,
    }


def _line(doc: dict[str, Any]) -> str:
    best = "-" if doc["best_map50_95"] is None else f"{doc['best_map50_95']:.3f}"
    epochs = f"{doc['epochs_done']}/{doc['total_epochs'] or '?'}"
    return f"#{doc['id']:<4} {doc['status_label']:<12} epochs {epochs:<8} mAP@50:95 {best:<6} {doc['name']}"


def _settings(store: Any, args: argparse.Namespace) -> Any:
    """The page's suggestion with the options given on the command line."""
    from studio.services.train import settings as ts
    from studio.services.train.defaults import MODEL_SIZES

    _, suggested = ts.suggested(store)
    given = {OPTIONS[k]: v for k, v in vars(args).items() if k in OPTIONS and v is not None}
    if "model_size" in given:
        size = next((s for s in MODEL_SIZES if s.casefold() == str(given["model_size"]).casefold()), None)
        if size is None:
            raise CommandError(
                f"Unknown model size {given['model_size']!r}; choose {', '.join(MODEL_SIZES)}."
            )
        given["model_size"] = size
        given.setdefault("resolution", ts.default_resolution(size))  # as the page's size picker does
    return ts.TrainSettings.from_values({**suggested.to_dict(), **given})


def run_train(args: argparse.Namespace) -> Outcome:
    from studio.services.train import runs
    from studio.services.train import settings as ts

    with project_store(args) as store:
        started = ts.start_training(store, _settings(store, args))
        print(f"{started.message.split(';')[0]}.", file=sys.stderr)
        if args.wait:
            _follow(store, started.run_id)
        doc = {**run_doc(runs.get_run(store, started.run_id)), "weights": started.source}
    if args.wait and doc["status"] != "completed":
        why = f": {doc['error']}" if doc["error"] else ""
        return Outcome(doc, _line(doc), EXIT_USER, f"run #{doc['id']} ended {doc['status_label']}{why}")
    return Outcome(doc, _line(doc))


def _follow(store: Any, run_id: int) -> None:
    """Poll the run (liveness checked, as the page does) until it is no longer queued or running."""
    try:
        _poll(store, run_id)
    except KeyboardInterrupt:
        print(
            f"Run #{run_id} keeps training in its own process; `runs` or the Train page shows it.",
            file=sys.stderr,
        )
        raise


def _poll(store: Any, run_id: int) -> None:
    from studio.services.train import runs
    from studio.services.train.status import ACTIVE

    with progress_bar(f"run #{run_id}", 1.0, unit="step") as bar:
        while True:
            runs.refresh_liveness(store)
            info = runs.get_run(store, run_id)
            p = info.progress
            if p.get("total_steps"):
                bar.total = p["total_steps"]
                epoch = f"epoch {int(p.get('epoch', 0)) + 1}/{p.get('max_epochs') or info.total_epochs}"
                bar.to(p.get("step") or 0, f"{info.status_label} · {epoch}")
            if info.status not in ACTIVE:
                return
            time.sleep(POLL_S)


def run_runs(args: argparse.Namespace) -> Outcome:
    from studio.services.train import runs

    with project_store(args) as store:
        docs = [run_doc(r) for r in runs.list_runs(store)]
    return Outcome(docs, "\n".join(_line(d) for d in docs) or "No runs yet.")
