"""Stop latency of a studio training run (issue 16 §3): from the stop to the run's final status.

A real project (the shapes dataset through the real importer), real trainer processes, a tiny Nano at
64 px. Each repeat starts a run, lets it train for a varying time (so stops land in training steps and
in validation passes alike), then stops it and times until the trainer has written ``stopped`` and
exited. Two kinds of stop:

- ``button``: what the Train page's Stop does (``stop_requested`` in SQLite, seen by the trainer's
  heartbeat thread, which polls every ``HEARTBEAT_S`` = 3 s, so up to 3 s of the figure is polling);
- ``sigterm``: the signal (what ``kill_run`` sends); the trainer's own latency without the polling.

    .venv/bin/python bench/stop_latency.py [--repeats 5] [--images 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _wait(predicate, timeout_s: float = 900.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("run did not get there in time")
        time.sleep(0.05)


def one_stop(store, settings: dict, kind: str, delay_s: float) -> tuple[float, int]:
    """Seconds from the stop to the final status, and the epochs the run finished."""
    from sqlalchemy import select

    from studio.services.train import runs
    from studio.store import RunMetric

    def stepped() -> bool:
        with store.session(readonly=True) as s:
            return s.scalar(select(RunMetric.id).where(RunMetric.run_id == run_id).limit(1)) is not None

    run_id = runs.create_run(store, settings)
    pid = runs.start_run(store, run_id)
    _wait(stepped)
    time.sleep(delay_s)
    t0 = time.perf_counter()
    if kind == "sigterm":
        os.kill(pid, 15)
    else:
        runs.request_stop(store, run_id)
    _wait(lambda: runs.get_run(store, run_id).status not in runs.ACTIVE)
    latency = time.perf_counter() - t0
    info = runs.get_run(store, run_id)
    assert info.status == "stopped", (info.status, info.error)
    _wait(lambda: not runs.runfolder.is_locked(runs.run_dir(store, run_id)))  # the process has exited
    return latency, info.epochs_done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    from tests.support.studio_run_fixtures import TINY_RUN, make_project

    settings = {**TINY_RUN, "epochs": 500, "batch_size": 1}
    with tempfile.TemporaryDirectory() as tmp:
        store = make_project(Path(tmp), n=args.images)
        try:
            for kind in ("button", "sigterm"):
                results = [one_stop(store, settings, kind, 1.5 * i) for i in range(args.repeats)]
                lat = [r[0] for r in results]
                print(
                    f"{kind:8s} stop -> final status: median {statistics.median(lat):.2f} s, "
                    f"min {min(lat):.2f} s, max {max(lat):.2f} s over {len(lat)} stops "
                    f"(epochs finished at the stop: {[r[1] for r in results]})",
                    flush=True,
                )
        finally:
            store.close()


if __name__ == "__main__":
    main()
