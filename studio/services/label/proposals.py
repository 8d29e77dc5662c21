"""Model-assisted labeling: a model's detections become *proposals* the user accepts, fixes or rejects.

Why proposals are ``Annotation`` rows with ``source='proposal'``: they sit on the image the user is
editing, so they share the image's version (adding or accepting proposals is a change another tab
must notice), yet every reader of labels (class counts, gallery, export, training, review) filters
``source == 'gt'``, so a proposal never counts as ground truth until accepted.

Why the model is a plain callable (:data:`Predictor`): the storage, class mapping and accept/reject
logic do not care which model produced the boxes; :func:`checkpoint_predictor` adapts an RF-DETR
checkpoint (``rfdetr_core`` is imported only there, so the app starts fast).

Class names are matched by name (exactly, then ignoring case); detections of classes the project
does not have are skipped and the user is told which ones.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import delete, select

from studio.errors import StudioError
from studio.services.label.labeling import ImageState, VersionConflict, _conflict, _state, load_image
from studio.services.train import checkpoints
from studio.store.db import ProjectStore
from studio.store.models import Annotation, Category, Image

#: image (RGB uint8 HxWx3) -> (boxes xyxy [N,4] in pixels, scores [N], class names [N])
Predictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, Sequence[str]]]
Progress = Callable[[float, str], None]
#: At most this many proposals per image (highest scores first): more is noise nobody reviews.
MAX_PROPOSALS = 100


@dataclass
class ClassMapping:
    """Model class name -> project category id; ``unknown`` model classes are skipped."""

    to_category: dict[str, int]
    unknown: list[str]
    not_in_model: list[str]

    @property
    def message(self) -> str:
        """Empty when the classes match; otherwise a sentence for the user."""
        parts = []
        if self.unknown:
            parts.append(
                f"{len(self.unknown)} model class(es) are not in this project and their boxes are skipped: "
                + ", ".join(f"'{n}'" for n in self.unknown)
                + "."
            )
        if self.not_in_model:
            parts.append(
                "Project classes the model does not know (no proposals for them): "
                + ", ".join(f"'{n}'" for n in self.not_in_model)
                + "."
            )
        return " ".join(parts)


def map_classes(store: ProjectStore, model_classes: Iterable[str]) -> ClassMapping:
    """Match the model's class names to the project's. Raises when not a single name matches."""
    model_classes = list(dict.fromkeys(str(n) for n in model_classes))
    with store.session(readonly=True) as s:
        cats = s.execute(select(Category.name, Category.id, Category.parent_id)).all()
    parents = {pid for _, _, pid in cats if pid is not None}
    exact = {name: cid for name, cid, _ in cats}
    folded = {name.casefold(): cid for name, cid, _ in cats}
    mapping, unknown = {}, []
    for name in model_classes:
        cid = exact.get(name, folded.get(name.casefold()))
        (unknown.append(name) if cid is None else mapping.__setitem__(name, cid))
    if not mapping:
        project = ", ".join(f"'{n}'" for n, cid, _ in cats if cid not in parents) or "none yet"
        raise StudioError(
            "The model's classes do not match this project's: the model knows "
            + ", ".join(f"'{n}'" for n in model_classes[:20])
            + (" …" if len(model_classes) > 20 else "")
            + f"; the project has {project}. Pick a model trained on this project, or rename classes."
        )
    mapped = set(mapping.values())
    not_in_model = [n for n, cid, _ in cats if cid not in mapped and cid not in parents]
    return ClassMapping(mapping, unknown, not_in_model)


# -- producing proposals --------------------------------------------------------------------------


def _read_rgb(path: str) -> np.ndarray:
    with PILImage.open(path) as im:
        return np.array(im.convert("RGB"))  # a writable copy (torch warns on read-only arrays)


def _rows(
    image: Image, pred: tuple, mapping: ClassMapping, threshold: float, run_id: int | None
) -> list[Annotation]:
    xyxy, scores, names = pred
    out: list[Annotation] = []
    boxes, scores = np.asarray(xyxy, float).reshape(-1, 4), np.asarray(scores, float).reshape(-1)
    for i in np.argsort(-scores, kind="stable"):
        (x0, y0, x1, y1), score, name = boxes[i], scores[i], names[i]
        if len(out) >= MAX_PROPOSALS:
            break
        cid = mapping.to_category.get(str(name))
        if cid is None or float(score) < threshold:
            continue
        x0, y0 = max(0.0, float(x0)), max(0.0, float(y0))
        x1, y1 = min(float(image.width), float(x1)), min(float(image.height), float(y1))
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        out.append(
            Annotation(
                image_id=image.id,
                category_id=cid,
                x=x0,
                y=y0,
                w=x1 - x0,
                h=y1 - y0,
                source="proposal",
                score=float(score),
                run_id=run_id,
            )
        )
    return out


def propose(
    store: ProjectStore,
    image_id: int,
    predictor: Predictor,
    mapping: ClassMapping,
    threshold: float,
    *,
    run_id: int | None = None,
    base_version: int | None = None,
) -> ImageState:
    """Replace the image's proposals with the model's detections at ``threshold`` or above.

    The model runs outside the write transaction (it is slow). With ``base_version`` the write is
    refused if the image changed meanwhile; either way the image version goes up, so an editor that
    still shows the old proposals must reload before saving.
    """
    state = load_image(store, image_id)
    pred = predictor(_read_rgb(state.path))
    with store.session() as s:
        image = s.get(Image, image_id)
        if image is None:
            raise StudioError(f"Image #{image_id} does not exist (it may have been deleted).")
        if base_version is not None and image.version != base_version:
            s.rollback()
            raise _conflict(store, image_id, "someone else")
        s.execute(delete(Annotation).where(Annotation.image_id == image_id, Annotation.source == "proposal"))
        s.add_all(_rows(image, pred, mapping, threshold, run_id))
        image.version += 1
        s.flush()
        return _state(store, s, image_id)


@dataclass
class BatchResult:
    done: int
    total: int
    n_proposals: int
    cancelled: bool = False
    skipped: list[int] = field(default_factory=list)  # labeled meanwhile, or changed under us

    def summary(self) -> str:
        head = "Cancelled" if self.cancelled else "Finished"
        return f"{head}: {self.done} / {self.total} image(s) pre-labeled, {self.n_proposals} proposal(s)."


def unlabeled_images(store: ProjectStore) -> list[int]:
    with store.session(readonly=True) as s:
        return list(s.scalars(select(Image.id).where(Image.status == "unlabeled").order_by(Image.id)))


def prelabel(
    store: ProjectStore,
    image_ids: Sequence[int],
    predictor: Predictor,
    mapping: ClassMapping,
    threshold: float,
    *,
    run_id: int | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BatchResult:
    """Propose boxes for many images, one transaction each, so cancelling keeps the finished ones.

    Images that got labeled since the batch started are skipped (their owner is working on them).
    """
    result = BatchResult(0, len(image_ids), 0)
    for i, image_id in enumerate(image_ids):
        if should_stop is not None and should_stop():
            result.cancelled = True
            break
        if progress is not None:
            progress(i / max(1, len(image_ids)), f"image {i + 1} / {len(image_ids)}")
        state = load_image(store, image_id)
        if state.status != "unlabeled":
            result.skipped.append(image_id)
            continue
        try:
            new = propose(
                store, image_id, predictor, mapping, threshold, run_id=run_id, base_version=state.version
            )
        except VersionConflict:
            result.skipped.append(image_id)
            continue
        result.done += 1
        result.n_proposals += len(new.proposals)
    if progress is not None and not result.cancelled:
        progress(1.0, "done")
    return result


# -- reviewing proposals --------------------------------------------------------------------------


def _review(
    store: ProjectStore, image_id: int, base_version: int, ids: Iterable[int] | None, accept: bool
) -> ImageState:
    with store.session() as s:
        image = s.get(Image, image_id)
        if image is None:
            raise StudioError(f"Image #{image_id} does not exist (it may have been deleted).")
        if image.version != base_version:
            s.rollback()
            raise _conflict(store, image_id, "someone else")
        stmt = select(Annotation).where(Annotation.image_id == image_id, Annotation.source == "proposal")
        rows = list(s.scalars(stmt))
        if ids is not None:
            wanted = set(ids)
            rows = [a for a in rows if a.id in wanted]
        if not rows:
            raise StudioError("No proposals to " + ("accept" if accept else "reject") + " on this image.")
        for a in rows:
            if accept:
                a.source, a.score = "gt", None
            else:
                s.delete(a)
        image.version += 1
        if accept and image.status == "unlabeled":
            image.status = "labeled"
        s.flush()
        return _state(store, s, image_id)


def accept_proposals(
    store: ProjectStore, image_id: int, base_version: int, ids: Iterable[int] | None = None
) -> ImageState:
    """Turn proposals (all, or ``ids``) into ground truth; version-checked like a save."""
    return _review(store, image_id, base_version, ids, accept=True)


def reject_proposals(
    store: ProjectStore, image_id: int, base_version: int, ids: Iterable[int] | None = None
) -> ImageState:
    """Delete proposals (all, or ``ids``); version-checked like a save."""
    return _review(store, image_id, base_version, ids, accept=False)


# -- models ---------------------------------------------------------------------------------------


def list_checkpoints(store: ProjectStore) -> list[tuple[str, str]]:
    """(label, path) of the runs' best/last checkpoints that exist on disk, newest run first."""
    return [
        (f"{c.run_name} · {c.kind} ({c.model_size})", str(c.path))
        for c in checkpoints.runs_with_checkpoint(store, ("best", "last"))
    ]


def checkpoint_predictor(path: str | os.PathLike[str]) -> tuple[Predictor, list[str]]:
    """An RF-DETR checkpoint as a :data:`Predictor` (threshold 0: the caller filters) + its classes."""
    model = checkpoints.load_run_model(path)

    def predict(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        det = model.predict(rgb, threshold=0.0, include_source_image=False)
        names = det.data.get("class_name")
        names = (
            [str(n) for n in names]
            if names is not None
            else [model.class_names[int(c)] for c in det.class_id]
        )
        return det.xyxy, det.confidence, names

    return predict, list(model.class_names)


@functools.lru_cache(maxsize=2)
def _cached(path: str, mtime_ns: int) -> tuple[Predictor, list[str]]:
    del mtime_ns  # part of the cache key: a rewritten checkpoint is loaded again
    return checkpoint_predictor(path)


def cached_checkpoint_predictor(path: str | os.PathLike[str]) -> tuple[Predictor, list[str]]:
    """:func:`checkpoint_predictor`, keeping the last two models loaded (loading takes seconds)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise StudioError(f"Checkpoint '{p}' does not exist.")
    return _cached(str(p.resolve()), p.stat().st_mtime_ns)


__all__ = [
    "BatchResult",
    "ClassMapping",
    "Predictor",
    "accept_proposals",
    "cached_checkpoint_predictor",
    "checkpoint_predictor",
    "list_checkpoints",
    "map_classes",
    "prelabel",
    "propose",
    "reject_proposals",
    "unlabeled_images",
]
