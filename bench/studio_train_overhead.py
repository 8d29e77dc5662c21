"""Overhead of training through the studio vs calling ``train()`` directly, and the UI's poll cost.

1. Wall time of the same tiny run (tiny Nano at 64 px, from scratch, same dataset snapshot, same
   ``train()`` arguments) started two ways, each in a fresh subprocess so both pay the same imports:
   - direct: ``python -c`` that builds the model and calls ``train()`` (no callbacks of ours);
   - studio: ``runs.start_run`` -> ``python -m studio.services.train.worker`` (progress callback,
     SQLite metric writes, heartbeat thread, final status), timed until the run's status is final.
   Alternated ``--repeats`` times; medians and the ratio studio / direct are printed. The label
   snapshot (``create_run``) is timed separately: it happens once per run, before training.
2. ``--poll``: CPU use of the app process while a run trains and a headless Chromium shows the Train
   page (the ``gr.Timer`` polls SQLite every 2 s): app CPU seconds / wall seconds over ``--poll-s``.

    .venv/bin/python bench/studio_train_overhead.py [--repeats 3] [--epochs 2] [--images 8] [--poll]

``--repeats 0`` skips part 1's full runs (only the per-step cost of the reporter is measured).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT))

DIRECT = """
import sys, json, time
sys.path.insert(0, {root!r})
from studio.services.train.worker import build_model, train_kwargs
from pathlib import Path
settings = json.loads({settings!r})
model = build_model(settings)
model.train(**train_kwargs(settings, Path({data!r}), Path({out!r})))
"""


def _settings(epochs: int) -> dict:
    from tests.support.studio_run_fixtures import TINY_RUN

    return {**TINY_RUN, "epochs": epochs}


def _direct(settings: dict, data: Path, out: Path) -> float:
    code = DIRECT.format(root=str(ROOT), settings=json.dumps(settings), data=str(data), out=str(out))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - t0


def _studio(store, run_id: int) -> float:
    from studio.services.train import runs

    t0 = time.perf_counter()
    runs.start_run(store, run_id)
    while runs.get_run(store, run_id).status in runs.ACTIVE:
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    status = runs.get_run(store, run_id).status
    if status != "completed":
        raise RuntimeError(f"run {run_id} ended {status}:\n{runs.run_log_tail(store, run_id)}")
    return elapsed


def overhead(args: argparse.Namespace, work: Path) -> None:
    from studio.services.train import runs
    from tests.support.studio_run_fixtures import make_project

    store = make_project(work, n=args.images)
    settings = _settings(args.epochs)
    direct, studio, snapshots = [], [], []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        run_id = runs.create_run(store, settings)
        snapshots.append(time.perf_counter() - t0)
        data = runs.run_dir(store, run_id) / "dataset"
        direct.append(_direct(settings, data, work / f"direct{i}"))
        studio.append(_studio(store, run_id))
        print(
            f"repeat {i}: direct {direct[-1]:.2f} s, studio {studio[-1]:.2f} s, snapshot {snapshots[-1]:.3f} s",
            flush=True,
        )
    d, s, snap = statistics.median(direct), statistics.median(studio), statistics.median(snapshots)
    print(f"\n{args.epochs} epochs, {args.images} train + {args.images} valid images, tiny Nano 64 px, CPU")
    print(f"direct train() median {d:.2f} s | studio run median {s:.2f} s | ratio {s / d:.3f}x")
    print(f"label snapshot (create_run) median {snap:.3f} s | ratio incl. snapshot {(s + snap) / d:.3f}x")
    store.close()


def reporter_cost(work: Path, steps: int = 2000, epochs: int = 20) -> None:
    """What the trainer process adds per step, measured alone (immune to a busy machine's noise):
    the real ``RunReporter`` writing into a real project database, fed synthetic progress events."""
    from rfdetr_core.training.callbacks import ProgressEvent
    from studio.services.train import runs
    from studio.services.train.worker import LearningRate, RunReporter
    from tests.support.studio_run_fixtures import make_project

    store = make_project(work, n=2, size=32)
    run_id = runs.create_run(store, _settings(epochs))
    lr = LearningRate()
    lr.value = 1e-4
    reporter = RunReporter(store, run_id, runs.run_dir(store, run_id) / "output", lr)
    per_epoch = steps // epochs
    metrics = {
        "val/mAP_50": 0.5,
        "val/mAP_50_95": 0.3,
        "val/F1": 0.4,
        "val/precision": 0.5,
        "val/recall": 0.4,
        "val/AP/bar": 0.2,
        "val/AP/square": 0.4,
        "train/loss": 3.0,
    }

    def event(kind: str, step: int, **extra) -> ProgressEvent:
        return ProgressEvent(
            kind=kind,
            epoch=(step - 1) // per_epoch,
            max_epochs=epochs,
            step=step,
            total_steps=steps,
            elapsed_s=1.0,
            eta_s=1.0,
            **extra,
        )

    reporter(event("start", 0))
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        reporter(event("step", step, loss=3.0))
        if step % per_epoch == 0:
            reporter(event("epoch", step, metrics=metrics))
    elapsed = time.perf_counter() - t0
    store.close()
    print(
        f"RunReporter: {steps} steps + {epochs} epochs in {elapsed:.3f} s = {1e3 * elapsed / steps:.3f} ms per step "
        f"(incl. SQLite writes; flushes at most once a second, so mostly buffering)"
    )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def poll_cost(args: argparse.Namespace, work: Path) -> None:
    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    work.mkdir(parents=True, exist_ok=True)
    tiny = {"model_overrides": _settings(1)["model_overrides"], "num_workers": 0}
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", STUDIO_RUN_OVERRIDES=json.dumps(tiny))
    log = open(work / "server.log", "w")
    app = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "launch.py"),
            "--no-browser",
            "--port",
            str(port),
            "--projects-dir",
            str(work / "projects"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"], headless=True
            )
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("tab", name="Train").click()
            page.locator("#train-advanced").get_by_text("Advanced settings").click()
            for elem_id, value in (("train-epochs", "50"), ("train-batch", "4"), ("train-resolution", "64")):
                box = page.locator(f"#{elem_id} input").first
                box.fill(value)
                box.press("Tab")
            page.locator("#train-pretrained").get_by_text("From scratch").click()
            page.locator("#train-start").click()
            page.locator("#train-progress .train-status", has_text="running").wait_for(timeout=300_000)
            c0, t0 = _cpu_seconds(app.pid), time.perf_counter()
            time.sleep(args.poll_s)
            c1, t1 = _cpu_seconds(app.pid), time.perf_counter()
            page.locator("#train-stop").click()
            page.locator("#train-progress .train-status", has_text="stopped").wait_for(timeout=300_000)
            browser.close()
        print(
            f"app process CPU while training with the Train page open: {100 * (c1 - c0) / (t1 - t0):.2f} % "
            f"of one core over {t1 - t0:.0f} s (poll every 2 s)"
        )
    finally:
        app.terminate()
        app.wait(timeout=30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--poll", action="store_true", help="also measure the UI poll cost")
    parser.add_argument("--poll-s", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="studio-overhead-") as tmp:
        reporter_cost(Path(tmp) / "reporter")
        if args.repeats:
            overhead(args, Path(tmp) / "overhead")
        if args.poll:
            poll_cost(args, Path(tmp) / "poll")


if __name__ == "__main__":
    main()
