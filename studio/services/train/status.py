"""The one status vocabulary of a training run, for every page that shows one.

Why: the database keeps the trainer's own words (``completed`` for a run that reached its last epoch),
while people read "finished"; a run asked to stop is still ``running`` in the database until the
trainer has written its checkpoints, but people should see "stopping"; a run stopped before its first
validation has no checkpoint at all and says so ("stopped — no checkpoint"), because Review, Export
and Label cannot offer it. Pages show
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
NO_CHECKPOINT = "stopped — no checkpoint"
#: every word a page may show, in the order a run goes through them
VOCABULARY = ("queued", "running", "stopping", "finished", "stopped", NO_CHECKPOINT, "failed", "interrupted")


def status_label(status: str, stop_requested: bool = False, has_checkpoint: bool = True) -> str:
    """The word shown for a run in ``status`` (``stopping`` while a requested stop is under way;
    ``has_checkpoint``: does its best checkpoint file exist)."""
    if stop_requested and status in ACTIVE:
        return "stopping"
    if status == "stopped" and not has_checkpoint:
        return NO_CHECKPOINT
    return LABELS.get(status, status)
