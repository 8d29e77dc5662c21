"""A project with a finished tiny training run (for the Review / Export / FiftyOne tests).

Training is the slow part (~10–30 s), so :func:`finished_run_template` trains once per test session
and :func:`copy_project` gives each test its own copy of the project folder to change.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from studio.services.train import runs
from studio.services.train import worker as trainer_process
from studio.store import ProjectStore, Run
from tests.support.studio_run_fixtures import TINY_RUN, make_project

#: Enough training (~25 s on 2 cores) for a tiny model to make real, imperfect detections on the
#: valid split (mAP@50 ≈ 0.3): true positives, false positives of every kind and misses all occur.
LEARNING = {"epochs": 40, "lr": 1e-3, "train_overrides": {"lr_encoder": 1e-3, "lr_scheduler": "cosine"}}


def train_finished_run(root: Path, n: int = 10, **settings) -> tuple[Path, int]:
    """Import a small shapes project under *root* (``n`` train + ``n`` valid images, 64 px) and train one
    tiny run in this process to completion. Returns the project folder and the run id (store closed)."""
    store = make_project(root, n=n)
    try:
        run_id = runs.create_run(store, {**TINY_RUN, **LEARNING, **settings})
        project = store.path
    finally:
        store.close()
    status = trainer_process.run(project.resolve(), run_id)
    if status != "completed":
        raise RuntimeError(f"the fixture's tiny run ended {status!r}")
    return project, run_id


def copy_project(template: Path, dest: Path) -> ProjectStore:
    """An independent copy of a project folder (SQLite file, images, runs), opened."""
    shutil.copytree(template, dest)
    return ProjectStore.open(dest)


def best_checkpoint(store: ProjectStore, run_id: int) -> Path:
    with store.session(readonly=True) as s:
        return store.path / s.get(Run, run_id).best_checkpoint
