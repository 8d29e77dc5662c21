"""Stored predictions for the Review page: run a trained checkpoint ONCE over a split, keep every
detection in SQLite, and load ground truth + predictions as :class:`ReviewData` arrays on demand.

Why predictions are made exactly like the run's validation (same network config from the checkpoint,
the eval transform of ``rfdetr_core.data``, the run's eval batch size and image order, the model's
``num_select``, every post-processed detection whose label is a real class): so that the mAP computed
from the stored rows equals the mAP the run recorded for that checkpoint. The page then re-scores
TP/FP/FN at any confidence or IoU from the stored rows without calling the model again. No score
threshold and no cut to 100 per image: pycocotools keeps the top 100 per image *per class*.

Why ground truth is read at load time from the project's current ``gt`` annotations (and not from
the run's frozen dataset snapshot): after the user fixes a box on the Label page, reloading re-scores
against the corrected labels without rerunning the model.

Storage is one transaction at the end (old rows of the same run/checkpoint/images out, new rows in
with one executemany, a :class:`PredictionSet` row describing the set), so a cancelled or failed
computation leaves the previous set intact. ``rfdetr_core`` is imported only inside
:func:`compute_predictions` so the app starts fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select

from studio.errors import StudioError
from studio.services.review.data import Boxes, ReviewData, ReviewImage
from studio.services.train import checkpoints
from studio.store.db import ProjectStore
from studio.store.models import Category, Image, Prediction, PredictionSet, Run, RunMetric, utcnow
from studio.text import quote

CHECKPOINTS = {"best": "best_checkpoint"}
DEFAULT_EVAL_BATCH = 4
_SQL_CHUNK = 900  # ids per IN (...) clause, well under SQLite's variable limit


class PredictionCancelled(StudioError):
    """The user stopped the computation; the previously stored predictions are unchanged."""


@dataclass(frozen=True)
class PredictionSetInfo:
    """What the page shows about a stored set; ``stale`` when the checkpoint file changed since, or
    images were added to / removed from the split since."""

    run_id: int
    split: str
    checkpoint: str
    n_images: int
    n_predictions: int
    created_at: datetime
    seconds: float
    stale: bool


# -- runs and splits --------------------------------------------------------------------------------


def _checkpoint_path(store: ProjectStore, run: Run, checkpoint: str) -> Path | None:
    if checkpoint not in CHECKPOINTS:
        raise StudioError(
            f"Unknown checkpoint {checkpoint!r}; the Review page uses {', '.join(CHECKPOINTS)}."
        )
    return checkpoints.checkpoint_path(store, run, checkpoint)


def reviewable_runs(store: ProjectStore) -> list[tuple[str, int]]:
    """(label, run_id) of the runs whose best checkpoint file exists, newest first."""
    out = []
    for c in checkpoints.runs_with_checkpoint(store, ("best",)):
        shown = f" · mAP {c.map_50_95:.3f}" if isinstance(c.map_50_95, int | float) else ""
        out.append((f"{c.run_name} ({c.model_size}, {c.status}){shown}", c.run_id))
    return out


def review_splits(store: ProjectStore, run_id: int) -> list[str]:
    """Splits the page offers: ``valid`` first, ``test`` when the project has test images."""
    with store.session(readonly=True) as s:
        if s.get(Run, run_id) is None:
            raise StudioError(f"Run {run_id} does not exist.")
        has_test = s.scalar(select(Image.id).where(Image.split == "test").limit(1)) is not None
    return ["valid", "test"] if has_test else ["valid"]


def _run_and_checkpoint(store: ProjectStore, run_id: int, checkpoint: str) -> tuple[Run, Path]:
    run, _ = checkpoints.run_checkpoint(store, run_id)  # raises when the run does not exist
    path = _checkpoint_path(store, run, checkpoint)
    if path is None:
        state = {
            "queued": "has not started",
            "running": "is still training and has not validated yet",
            "failed": "failed before saving a model",
        }.get(run.status, "has no saved model")
        raise StudioError(f"Run '{run.name}' {state}: there is no {checkpoint} checkpoint to review yet.")
    if not path.is_file():
        raise StudioError(
            f"The {checkpoint} checkpoint of run '{run.name}' is missing: {path} (moved or deleted?)."
        )
    return run, path


def _split_images(s: Any, split: str) -> list[Image]:
    return list(s.scalars(select(Image).where(Image.split == split).order_by(Image.id)))


# -- computing -------------------------------------------------------------------------------------


def _eval_batch_size(run: Run) -> int:
    """The run's validation batch size: equal batches keep the network's arithmetic identical."""
    overrides = (run.config or {}).get("train_overrides") or {}
    size = (
        overrides.get("eval_batch_size")
        or overrides.get("batch_size")
        or (run.config or {}).get("batch_size")
    )
    return int(size) if isinstance(size, int) and size > 0 else DEFAULT_EVAL_BATCH


def _load_network(path: Path, device: str):
    """The network exactly as the run validated it (the checkpoint's own ``model_config``: resolution,
    queries, ``num_select``), with its config and class names."""
    model = checkpoints.load_run_model(path, device=device)
    return model.model.model.eval(), model.model_config, list(model.model.class_names or [])


def _autocast(run: Run, config: Any, device: str):
    """Mixed precision on a GPU exactly when training validated under it (fp32 on CPU)."""
    import contextlib

    import torch

    amp = ((run.config or {}).get("train_overrides") or {}).get("amp_dtype", "auto")
    if not device.startswith("cuda") or amp is None or not config.amp:
        return contextlib.nullcontext()
    dtype = torch.float16 if amp == "fp16" or not torch.cuda.is_bf16_supported() else torch.bfloat16
    return torch.autocast("cuda", dtype=dtype)


def _device(run: Run) -> str:
    import torch

    wanted = (run.config or {}).get("device")
    if wanted == "cpu" or not torch.cuda.is_available():
        return "cpu"
    return "cuda"


def _predict(
    store: ProjectStore,
    images: Sequence[Image],
    network: Any,
    config: Any,
    batch_size: int,
    context: Any,
    progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> list[np.ndarray]:
    """Per image an ``(n, 6)`` array ``class_index, x, y, w, h, score`` (post-processing order)."""
    import torch
    from PIL import Image as PILImage

    from rfdetr_core.data import AugmentPipeline
    from rfdetr_core.data.collate import pad_images
    from rfdetr_core.inference import postprocess

    transform = AugmentPipeline(None, config.resolution, config.block_size, train=False)
    device = next(network.parameters()).device
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    out: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        if should_stop is not None and should_stop():
            raise PredictionCancelled("Cancelled: the previously stored predictions are unchanged.")
        tensors, sizes = [], []
        for im in images[start : start + batch_size]:
            with PILImage.open(store.image_path(im)) as pil:
                rgb = pil.convert("RGB")
            sizes.append((rgb.height, rgb.width))
            tensors.append(transform(rgb, dict(empty))[0])
        batch = pad_images(tensors, config.block_size).to(device)
        with torch.inference_mode(), context:
            outputs = network(batch.tensors)
            results = postprocess(outputs, torch.tensor(sizes, device=device), config.num_select)
        for res in results:
            keep = res["labels"] < config.num_classes  # the head's extra "no object" slot is not a class
            labels, scores = res["labels"][keep].cpu().double(), res["scores"][keep].float().cpu().double()
            xyxy = res["boxes"][keep].float().cpu().double()
            xywh = torch.cat([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], dim=1)
            out.append(torch.cat([labels[:, None], xywh, scores[:, None]], dim=1).numpy())
        if progress is not None:
            progress(min(start + batch_size, len(images)), len(images))
    return out


def compute_predictions(
    store: ProjectStore,
    run_id: int,
    split: str = "valid",
    checkpoint: str = "best",
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PredictionSetInfo:
    """Run the checkpoint over the split's images (as they are in the project now) and store every
    detection, replacing the set computed before. ``progress(done, total)`` after each batch;
    ``should_stop()`` between batches raises :class:`PredictionCancelled` with nothing changed."""
    started = time.perf_counter()
    run, path = _run_and_checkpoint(store, run_id, checkpoint)
    stat = path.stat()
    with store.session(readonly=True) as s:
        images = _split_images(s, split)
        categories = {name: cid for cid, name in s.execute(select(Category.id, Category.name))}
    if not images:
        raise StudioError(f"The project has no images in the {quote(split)} split to review.")
    device = _device(run)
    network, config, ckpt_names = _load_network(path, device)
    class_names = _class_names(run, ckpt_names, config.num_classes)
    per_image = _predict(
        store,
        images,
        network,
        config,
        _eval_batch_size(run),
        _autocast(run, config, device),
        progress,
        should_stop,
    )
    rows = _rows(run_id, checkpoint, images, per_image, [categories.get(n) for n in class_names])
    image_ids = [im.id for im in images]
    with store.session() as s:
        _drop_previous_set(s, run_id, checkpoint, split, image_ids)
        if rows:
            s.connection().execute(insert(Prediction.__table__), rows)
        record = PredictionSet(
            run_id=run_id,
            checkpoint=checkpoint,
            split=split,
            checkpoint_path=str(path),
            checkpoint_mtime_ns=stat.st_mtime_ns,
            checkpoint_size=stat.st_size,
            class_names=class_names,
            image_ids=image_ids,
            n_images=len(images),
            n_predictions=len(rows),
            seconds=time.perf_counter() - started,
            created_at=utcnow(),
        )
        s.add(record)
    return _info(record, stale=False)


def _drop_previous_set(s: Any, run_id: int, checkpoint: str, split: str, image_ids: list[int]) -> None:
    """Inside the storing transaction: the split's earlier set and every prediction of this run and
    checkpoint on its images or on the images the earlier set covered (some may have left the split)."""
    old = s.scalar(
        select(PredictionSet).where(
            PredictionSet.run_id == run_id,
            PredictionSet.checkpoint == checkpoint,
            PredictionSet.split == split,
        )
    )
    stale_ids = sorted(set(image_ids) | set(old.image_ids if old is not None else []))
    for k in range(0, len(stale_ids), _SQL_CHUNK):
        s.execute(
            delete(Prediction).where(
                Prediction.run_id == run_id,
                Prediction.checkpoint == checkpoint,
                Prediction.image_id.in_(stale_ids[k : k + _SQL_CHUNK]),
            )
        )
    if old is not None:
        s.delete(old)
        s.flush()


def _class_names(run: Run, ckpt_names: list[str], num_classes: int) -> list[str]:
    """The model's class names (run record, else checkpoint), padded to the head size like validation."""
    names = [str(n) for n in (run.class_names or ckpt_names or [])][:num_classes]
    return names + [f"class_{i}" for i in range(len(names), num_classes)]


def _rows(
    run_id: int,
    checkpoint: str,
    images: Sequence[Image],
    per_image: list[np.ndarray],
    category_of_class: list[int | None],
) -> list[dict[str, Any]]:
    now = utcnow()
    rows = []
    for im, det in zip(images, per_image, strict=True):
        for label, x, y, w, h, score in det.tolist():
            c = int(label)
            rows.append(
                {
                    "run_id": run_id,
                    "image_id": im.id,
                    "category_id": category_of_class[c],
                    "class_index": c,
                    "checkpoint": checkpoint,
                    "x": x,
                    "y": y,
                    "w": w,
                    "h": h,
                    "score": score,
                    "created_at": now,
                }
            )
    return rows


# -- status and loading ----------------------------------------------------------------------------


def _info(record: PredictionSet, stale: bool) -> PredictionSetInfo:
    return PredictionSetInfo(
        run_id=record.run_id,
        split=record.split,
        checkpoint=record.checkpoint,
        n_images=record.n_images,
        n_predictions=record.n_predictions,
        created_at=record.created_at,
        seconds=record.seconds,
        stale=stale,
    )


def _is_stale(record: PredictionSet, path: Path | None, image_ids: list[int]) -> bool:
    if path is None or not path.is_file():
        return True
    stat = path.stat()
    if (stat.st_mtime_ns, stat.st_size) != (record.checkpoint_mtime_ns, record.checkpoint_size):
        return True
    return list(record.image_ids) != image_ids


def _record(s: Any, run_id: int, split: str, checkpoint: str) -> PredictionSet | None:
    return s.scalar(
        select(PredictionSet).where(
            PredictionSet.run_id == run_id,
            PredictionSet.checkpoint == checkpoint,
            PredictionSet.split == split,
        )
    )


def prediction_status(
    store: ProjectStore, run_id: int, split: str = "valid", checkpoint: str = "best"
) -> PredictionSetInfo | None:
    """The stored set's description, or None when it was not computed yet."""
    with store.session(readonly=True) as s:
        run = s.get(Run, run_id)
        if run is None:
            raise StudioError(f"Run {run_id} does not exist.")
        record = _record(s, run_id, split, checkpoint)
        if record is None:
            return None
        ids = list(s.scalars(select(Image.id).where(Image.split == split).order_by(Image.id)))
    return _info(record, _is_stale(record, _checkpoint_path(store, run, checkpoint), ids))


def load_review_data(
    store: ProjectStore, run_id: int, split: str = "valid", checkpoint: str = "best"
) -> ReviewData:
    """Current ground truth + stored predictions of the split as arrays (one query per table)."""
    with store.session(readonly=True) as s:
        run = s.get(Run, run_id)
        if run is None:
            raise StudioError(f"Run {run_id} does not exist.")
        record = _record(s, run_id, split, checkpoint)
        if record is None:
            raise StudioError(
                f"No predictions of run {quote(run.name)} on {quote(split)} yet: compute them first."
            )
        images = _split_images(s, split)
        names = {cid: name for cid, name in s.execute(select(Category.id, Category.name))}
        gt_arr = _fetch(
            s,
            "SELECT a.image_id, a.id, a.category_id, a.x, a.y, a.w, a.h FROM annotation a "
            "JOIN image i ON i.id = a.image_id WHERE i.split = ? AND a.source = 'gt' "
            "ORDER BY a.image_id, a.id",
            (split,),
            7,
        )
        pred_arr = _fetch(
            s,
            "SELECT image_id, id, class_index, x, y, w, h, score FROM prediction "
            "WHERE run_id = ? AND checkpoint = ? ORDER BY image_id, id",
            (run_id, checkpoint),
            8,
        )
    class_names = list(record.class_names)
    index_of = {n: i for i, n in enumerate(class_names)}
    cat_class = {cid: index_of.get(name, -1) for cid, name in names.items()}
    gt_cls = np.array([cat_class.get(int(c), -1) for c in gt_arr[:, 2]], dtype=np.int64)
    known = gt_cls >= 0
    unknown = int((~known).sum())
    gt_arr, gt_cls = gt_arr[known], gt_cls[known]
    image_list = _review_images(store, images, gt_arr, gt_cls, pred_arr)
    meta = {
        "created_at": record.created_at,
        "checkpoint_path": record.checkpoint_path,
        "seconds": record.seconds,
        "stale": _is_stale(record, _checkpoint_path(store, run, checkpoint), [im.id for im in images]),
    }
    return ReviewData(
        run_id=run_id,
        split=split,
        checkpoint=checkpoint,
        class_names=class_names,
        images=image_list,
        unknown_gt=unknown,
        meta=meta,
    )


def _review_images(
    store: ProjectStore, images: list[Image], gt_arr: np.ndarray, gt_cls: np.ndarray, pred_arr: np.ndarray
) -> list[ReviewImage]:
    """One :class:`ReviewImage` per image from the split's box rows (sorted by image id), named by the
    user's own file name."""
    out = []
    for im, (g0, g1), (p0, p1) in zip(
        images, _groups(gt_arr[:, 0], images), _groups(pred_arr[:, 0], images), strict=True
    ):
        g, p = gt_arr[g0:g1], pred_arr[p0:p1]
        gt_boxes = _clipped_gt(g[:, 3:7], gt_cls[g0:g1], g[:, 1], im.width, im.height)
        pred_boxes = Boxes.from_xywh(p[:, 3:7], p[:, 2].astype(np.int64), p[:, 7], p[:, 1].astype(np.int64))
        path = store.image_path(im)
        out.append(ReviewImage(im.id, path, im.width, im.height, gt_boxes, pred_boxes, im.original_name))
    return out


def _fetch(s: Any, sql: str, params: tuple, columns: int) -> np.ndarray:
    """Rows of a numeric query as one float64 array, through the driver's cursor: SQLAlchemy ``Row``
    objects cost ~10 us each to build and numpy probes them slowly, which made a 150,000-prediction
    reload take seconds instead of a fraction of one."""
    cursor = s.connection().connection.dbapi_connection.cursor()
    try:
        return np.array(cursor.execute(sql, params).fetchall(), dtype=np.float64).reshape(-1, columns)
    finally:
        cursor.close()


def _groups(sorted_image_ids: np.ndarray, images: Sequence[Image]) -> list[tuple[int, int]]:
    """Row range of each image in rows sorted by image id (rows of other images are skipped)."""
    ids = np.array([im.id for im in images], dtype=np.float64)
    lo = np.searchsorted(sorted_image_ids, ids, side="left")
    hi = np.searchsorted(sorted_image_ids, ids, side="right")
    return list(zip(lo.tolist(), hi.tolist(), strict=True))


def _clipped_gt(xywh: np.ndarray, labels: np.ndarray, ids: np.ndarray, width: int, height: int) -> Boxes:
    """Ground truth clipped to the image, degenerate boxes dropped: what validation scored against."""
    boxes = Boxes.from_xywh(xywh, labels, None, ids.astype(np.int64))
    xyxy = boxes.xyxy.copy()
    xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, height)
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return Boxes(xyxy[keep], boxes.labels[keep], None, boxes.ids[keep])


# -- what training reported ------------------------------------------------------------------------


def _best_total_source(path: Path) -> str | None:
    """``best_total_source`` of a best-total checkpoint (memory-mapped: the weights are not read)."""
    import torch

    from rfdetr_core.checkpoint import SAFE_GLOBALS

    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    source = raw.get("best_total_source") if isinstance(raw, dict) else None
    return source if source in ("ema", "regular") else None


def recorded_map(store: ProjectStore, run_id: int) -> dict[str, float]:
    """What training reported for the model saved in the best checkpoint: ``mAP_50_95``, ``mAP_50``,
    ``epoch`` (1-based) and ``model`` (``"ema"``/``"regular"``) -- the EMA metrics of the epoch the EMA
    model was best when the checkpoint holds the EMA weights, the live model's otherwise."""
    run, path = _run_and_checkpoint(store, run_id, "best")
    with store.session(readonly=True) as s:
        rows = s.execute(
            select(RunMetric.name, RunMetric.epoch, RunMetric.value)
            .where(
                RunMetric.run_id == run_id,
                RunMetric.name.in_(("val/mAP_50_95", "val/mAP_50", "val/ema_mAP_50_95", "val/ema_mAP_50")),
            )
            .order_by(RunMetric.epoch, RunMetric.id)
        ).all()
    series: dict[str, dict[int, float]] = {}
    for name, epoch, value in rows:
        series.setdefault(name, {})[epoch] = value

    def best(prefix: str) -> tuple[int, float] | None:
        values = series.get(f"val/{prefix}mAP_50_95", {})
        if not values:
            return None
        epoch = max(values, key=lambda e: (values[e], -e))  # the first epoch reaching the maximum
        return epoch, values[epoch]

    source = _best_total_source(path)
    if source is None:  # older file: the EMA model wins only when strictly better, like BestModelCallback
        ema, regular = best("ema_"), best("")
        source = "ema" if ema and (regular is None or ema[1] > regular[1]) else "regular"
    prefix = "ema_" if source == "ema" else ""
    found = best(prefix)
    if found is None:
        raise StudioError(f"Run {quote(run.name)} recorded no validation mAP for its {source} model.")
    epoch, value = found
    return {
        "mAP_50_95": float(value),
        "mAP_50": float(series.get(f"val/{prefix}mAP_50", {}).get(epoch, float("nan"))),
        "epoch": epoch,
        "model": source,
    }


__all__ = [
    "PredictionCancelled",
    "PredictionSetInfo",
    "compute_predictions",
    "load_review_data",
    "prediction_status",
    "recorded_map",
    "review_splits",
    "reviewable_runs",
]
