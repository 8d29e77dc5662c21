"""A run's checkpoint files: which exist, and the model loaded from one.

Why one module: the Label tab (proposals), the Review tab (stored predictions), and the Export tab
(export, Roboflow deploy) all start from "the best checkpoint of run N". Before this module each one
resolved the stored path, checked that the file was there, and loaded the model in its own way. Now
there is one rule for a stored path (absolute, or relative to the project folder), one meaning of
"runs whose checkpoint exists", and one loader that builds the network the way the run validated it.
``RFDETR.from_checkpoint`` restores the ``model_config`` the trainer saved (resolution, queries,
``num_select``).

``rfdetr_core`` is imported only inside :func:`load_run_model` so the app starts fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from studio.errors import StudioError
from studio.store import ProjectStore, Run

if TYPE_CHECKING:
    from rfdetr_core import RFDETR

#: Checkpoint kind -> the ``Run`` column that stores its path.
KINDS = {"best": "best_checkpoint", "last": "last_checkpoint"}


class CheckpointLoadError(StudioError):
    """The file exists but is not a checkpoint we can load. ``__cause__`` holds the loader's error."""


@dataclass(frozen=True)
class RunCheckpoint:
    """One checkpoint file of a run and the run facts that pickers show next to it."""

    run_id: int
    run_name: str
    kind: str
    path: Path | None
    model_size: str
    status: str
    map_50_95: Any = None

    @property
    def exists(self) -> bool:
        return self.path is not None and self.path.is_file()


def stored_path(store: ProjectStore, value: str | None) -> Path | None:
    """A path from a ``Run`` row: absolute as stored, otherwise relative to the project folder."""
    if not value:
        return None
    return Path(value) if os.path.isabs(value) else store.path / value


def checkpoint_path(store: ProjectStore, run: Run, kind: str = "best") -> Path | None:
    """Where run *run* keeps its *kind* checkpoint (``None`` before one was saved)."""
    return stored_path(store, getattr(run, KINDS[kind]))


def _entry(store: ProjectStore, run: Run, kind: str) -> RunCheckpoint:
    return RunCheckpoint(
        run_id=run.id,
        run_name=run.name,
        kind=kind,
        path=checkpoint_path(store, run, kind),
        model_size=run.model_size,
        status=run.status,
        map_50_95=(run.best_metrics or {}).get("mAP_50_95"),
    )


def runs_with_checkpoint(store: ProjectStore, kinds: tuple[str, ...] = ("best",)) -> list[RunCheckpoint]:
    """The checkpoints of the given kinds whose files exist, newest run first (*kinds* order inside a run)."""
    with store.session(readonly=True) as s:
        runs = list(s.scalars(select(Run).order_by(Run.id.desc())))
    entries = (_entry(store, run, kind) for run in runs for kind in kinds)
    return [entry for entry in entries if entry.exists]


def run_checkpoint(store: ProjectStore, run_id: int, kind: str = "best") -> tuple[Run, RunCheckpoint]:
    """The run row and its *kind* checkpoint, which may not exist yet (callers say why in their words).

    Raises :class:`StudioError` when the run does not exist.
    """
    with store.session(readonly=True) as s:
        run = s.get(Run, int(run_id))
    if run is None:
        raise StudioError(f"Run {run_id} does not exist.")
    return run, _entry(store, run, kind)


def load_run_model(path: str | os.PathLike[str], device: str | None = None) -> RFDETR:
    """The RF-DETR model in checkpoint *path* (on *device*, default the config's), as the run validated it.

    Raises :class:`StudioError` when the file is missing and :class:`CheckpointLoadError` when it
    cannot be read as a checkpoint.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise StudioError(f"Checkpoint '{path}' does not exist.")
    from rfdetr_core import RFDETR

    kwargs = {} if device is None else {"device": device}
    try:
        return RFDETR.from_checkpoint(path, **kwargs)
    except Exception as exc:  # a corrupt file fails anywhere in unpickling (even IndexError)
        raise CheckpointLoadError(f"Cannot load checkpoint '{path.name}': {exc}") from exc


__all__ = [
    "KINDS",
    "CheckpointLoadError",
    "RunCheckpoint",
    "checkpoint_path",
    "load_run_model",
    "run_checkpoint",
    "runs_with_checkpoint",
    "stored_path",
]
