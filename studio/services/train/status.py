"""The one status vocabulary of a training run, for every page that shows one.

Why: the database keeps the trainer's own words (``completed`` for a run that reached its last epoch),
while people read "finished"; a run asked to stop is still ``running`` in the database until the
trainer has written its checkpoints, but people should see "stopping". Pages show
:func:`status_label` and never the raw column, so the Train table, the Run picker and Review agree.
"""

from __future__ import annotations

ACTIVE = ("queued", "running")  # a trainer process is (or is about to be) working on the run

#: database status -> the word shown to people
LABELS = {
    "queued": "queued",
    "running": "running",
    "completed": "finished",
    "stopped": "stopped",
    "failed": "failed",
    "interrupted": "interrupted",
}
#: every word a page may show, in the order a run goes through them
VOCABULARY = ("queued", "running", "stopping", "finished", "stopped", "failed", "interrupted")


def status_label(status: str, stop_requested: bool = False) -> str:
    """The word shown for a run in ``status`` (``stopping`` while a requested stop is under way)."""
    if stop_requested and status in ACTIVE:
        return "stopping"
    return LABELS.get(status, status)
