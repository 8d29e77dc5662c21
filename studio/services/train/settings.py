"""The Train page's settings as one typed object, their rules, and the page's use cases.

Why here and not in the page: the rules (a resolution must be a multiple of the model's block size; a
finished or running run cannot be resumed; the chosen weights must be obtainable) are facts about
training, not about widgets. Keeping them in plain Python lets tests check them without a browser,
and keeps ``studio/pages/train.py`` to layout and wiring.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from studio.errors import StudioError
from studio.services.train import augment, runs
from studio.services.train.defaults import MODEL_SIZES, count_train_images, default_settings, detect_hardware
from studio.services.train.status import ACTIVE
from studio.store import ProjectStore


class SettingsError(StudioError):
    """A setting the user must change before a run can start."""


@dataclass(frozen=True)
class TrainSettings:
    """What the Train page's form holds (the same keys are saved in the project and on each run)."""

    model_size: str = "Nano"
    epochs: int = 50
    batch_size: int = 2
    grad_accum_steps: int = 1
    lr: float = 1e-4
    resolution: int = 384
    early_stopping: bool = False
    use_ema: bool = True
    seed: int = 0
    pretrained: str = "official"
    weights_path: str = ""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Field names in form order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> TrainSettings:
        """Settings from form or saved values (unknown keys ignored, missing ones defaulted)."""
        known = {k: v for k, v in values.items() if k in cls.names()}
        return replace(cls(), **known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> TrainSettings:
        """``self`` when it can start a run; otherwise :class:`SettingsError` saying what to change."""
        size = MODEL_SIZES.get(self.model_size)
        if size is None:
            raise SettingsError("Choose a model size.")
        for name, label in (("epochs", "Epochs"), ("batch_size", "Batch size"), ("lr", "Learning rate")):
            if not isinstance(getattr(self, name), int | float):
                raise SettingsError(f"{label} must be a number.")
        if int(self.resolution or 0) % size.block_size:
            raise SettingsError(f"Resolution must be a multiple of {size.block_size} for {self.model_size}.")
        return self


def default_resolution(model_size: str) -> int:
    """The resolution the form switches to when another model size is picked."""
    return MODEL_SIZES[model_size].resolution


def suggested(store: ProjectStore) -> tuple[str, TrainSettings]:
    """``(why, settings)`` the form opens with: the defaults for this data and machine, overridden by
    the settings of the last run started from the page."""
    settings, text = default_settings(count_train_images(store), detect_hardware())
    saved = runs.load_train_settings(store)
    if saved:
        settings = {**settings, **{k: v for k, v in saved.items() if k in TrainSettings.names()}}
        text += " (Showing the settings of your last run.)"
    return f"**Suggested:** {text}", TrainSettings.from_values(settings)


@dataclass(frozen=True)
class Started:
    run_id: int
    source: str  # where the weights come from, in words

    @property
    def message(self) -> str:
        return (
            f"Started run #{self.run_id} ({self.source}); training runs in its own process — "
            "you can reload the page."
        )


def start_training(store: ProjectStore, settings: TrainSettings) -> Started:
    """Check the settings and the weights, remember the settings, snapshot the labels, start a run."""
    settings.validate()
    source = runs.check_pretrained(settings.to_dict())
    runs.save_train_settings(store, settings.to_dict())
    full = {**settings.to_dict(), "augment": augment.load_settings(store), **runs.hidden_overrides()}
    run_id = runs.create_run(store, full)
    runs.start_run(store, run_id)
    return Started(run_id, source)


def check_resumable(info: runs.RunInfo) -> None:
    """Refuse a resume that cannot make sense (the run is going, or already did all its epochs)."""
    if info.status in ACTIVE:
        raise SettingsError(f"Run #{info.id} is still running.")
    if info.status == "completed":
        raise SettingsError(f"Run #{info.id} has finished all its epochs; start a new run instead.")


def resume_training(store: ProjectStore, run_id: int | None) -> str:
    """Resume a stopped, failed or interrupted run from its ``last.ckpt``; the message to show."""
    if not run_id:
        raise SettingsError("No run selected.")
    check_resumable(runs.get_run(store, int(run_id)))
    runs.start_run(store, int(run_id), resume=True)
    return f"Resuming run #{run_id} from its last checkpoint."


def stop_training(store: ProjectStore, run_id: int | None) -> str:
    """Ask a run to stop after the current step; the message to show."""
    if not run_id:
        raise SettingsError("No run selected.")
    runs.request_stop(store, int(run_id))
    return f"Stop requested for run #{run_id}: it ends after the current step and keeps its best checkpoint."
