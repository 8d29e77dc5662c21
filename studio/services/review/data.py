"""The one data object the Review page's services pass around: ground truth and stored predictions of
a run on one split, as numpy arrays (pixel ``xyxy`` boxes, model class indices).

Why arrays and not ORM rows: moving the confidence slider re-scores every image of the split, which
must take well under a second for hundreds of images; that is only possible when nothing touches the
database or builds Python objects per box. :func:`studio.services.review.predictions.load_review_data`
builds a :class:`ReviewData` once; matching, metrics, plots, rendering and the FiftyOne hand-off all
read from it.

Class indices are positions in ``ReviewData.class_names`` (the run's model classes); ground-truth boxes
whose project class the model does not know are left out and counted in ``unknown_gt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Boxes:
    """Boxes of one image: ``xyxy`` (n, 4) float64 pixels, ``labels`` (n,) int64 class indices,
    ``scores`` (n,) float64 (None for ground truth) and ``ids`` (n,) int64 database ids (annotation id for
    ground truth, prediction id for predictions; None when the boxes did not come from the database)."""

    xyxy: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape ({n}, 4), got {self.xyxy.shape}")
        for name in ("scores", "ids"):
            value = getattr(self, name)
            if value is not None and value.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {value.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def empty(cls, with_scores: bool = False) -> Boxes:
        return cls(
            np.zeros((0, 4)),
            np.zeros(0, np.int64),
            np.zeros(0) if with_scores else None,
            np.zeros(0, np.int64),
        )

    @classmethod
    def from_xywh(
        cls,
        xywh: np.ndarray,
        labels: np.ndarray,
        scores: np.ndarray | None = None,
        ids: np.ndarray | None = None,
    ) -> Boxes:
        """From top-left ``x, y, w, h`` pixel boxes (how the store keeps them)."""
        xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        return cls(
            xyxy,
            np.asarray(labels, np.int64).reshape(-1),
            None if scores is None else np.asarray(scores, np.float64).reshape(-1),
            None if ids is None else np.asarray(ids, np.int64).reshape(-1),
        )

    def xywh(self) -> np.ndarray:
        return np.concatenate([self.xyxy[:, :2], self.xyxy[:, 2:] - self.xyxy[:, :2]], axis=1)


@dataclass(frozen=True)
class ReviewImage:
    """One image of the reviewed split: database id, file on disk, size, its boxes, and the name the user
    knows it by (``Image.original_name``; the file on disk has an internal content-hash name)."""

    image_id: int
    path: Path
    width: int
    height: int
    gt: Boxes
    preds: Boxes
    name: str = ""

    @property
    def shown_name(self) -> str:
        """The user's own file name, else the stored file's (never an id or a hash when one is known)."""
        return self.name or self.path.name


@dataclass(frozen=True)
class ReviewData:
    """Ground truth + predictions of run ``run_id`` (model ``checkpoint``) on ``split``, one entry per image
    in a stable order (by image id)."""

    run_id: int
    split: str
    checkpoint: str
    class_names: list[str]
    images: list[ReviewImage]
    unknown_gt: int = 0  # ground-truth boxes of classes the model was not trained on (left out)
    meta: dict = field(default_factory=dict)  # e.g. when / from which file the predictions were computed

    def __len__(self) -> int:
        return len(self.images)

    def index_of(self, image_id: int) -> int:
        for k, im in enumerate(self.images):
            if im.image_id == image_id:
                return k
        raise KeyError(image_id)
