"""Suite-wide settings: deterministic, CPU-bounded, offline."""

from __future__ import annotations

import os

# The CI machine has 2 cores; more threads only add contention.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")


import pytest


@pytest.fixture(scope="session")
def finished_run_template(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(project folder, run id) of a tiny run trained to completion once per session. Do not modify it:
    copy it with ``review_fixtures.copy_project`` first."""
    from tests.support.review_fixtures import train_finished_run

    return train_finished_run(tmp_path_factory.mktemp("finished_run"))
