"""The FiftyOne hand-off against a real ``mongod`` and the real FiftyOne App server.

The mAP check is the point of the module: FiftyOne's COCO evaluation must agree with pycocotools (via
``rfdetr_core.evaluation.CocoEvaluator``) on the same boxes, otherwise the two numbers the user sees
on the Review page and in FiftyOne would contradict each other.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image, ImageDraw

from rfdetr_core.evaluation import CocoEvaluator
from studio.errors import StudioError
from studio.services.review import fiftyone_bridge as bridge
from studio.services.review.data import Boxes, ReviewData, ReviewImage

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["cat", "dog", "bird"]


def _write_image(path: Path, width: int, height: int, boxes: np.ndarray, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for box in boxes:
        draw.rectangle([float(v) for v in box], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    image.save(path)
    return path


def _jitter(box: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return box + rng.uniform(-amount, amount, 4) * np.array([w, h, w, h])


def _make_data(folder: Path, seed: int = 7) -> ReviewData:
    """Five images of different sizes, three classes: good and sloppy hits, a class confusion, duplicate
    detections, false positives, missed boxes, an image without ground truth and one without
    predictions. Scores are all distinct (see the module docstring of the bridge about ties)."""
    rng = np.random.default_rng(seed)
    sizes = [(64, 48), (96, 80), (120, 72), (80, 80), (72, 96)]
    images = []
    for k, (width, height) in enumerate(sizes):
        n_gt = [3, 4, 2, 0, 3][k]
        xy = rng.uniform(0, 0.6, (n_gt, 2)) * [width, height]
        wh = rng.uniform(0.15, 0.4, (n_gt, 2)) * [width, height]
        gt_xyxy = np.concatenate([xy, xy + wh], axis=1)
        gt_labels = rng.integers(0, len(CLASSES), n_gt)
        pred_xyxy, pred_labels, pred_scores = [], [], []
        for box, label in zip(gt_xyxy, gt_labels, strict=True):
            if k == 4:  # the image whose boxes are all missed
                continue
            roll = rng.uniform()
            if roll < 0.15:
                continue  # a miss
            pred_xyxy.append(_jitter(box, rng, 0.02 if roll < 0.6 else 0.12))
            pred_labels.append(label if roll < 0.9 else (label + 1) % len(CLASSES))
            pred_scores.append(rng.uniform(0.5, 0.99) if roll < 0.6 else rng.uniform(0.2, 0.8))
            if rng.uniform() < 0.25:  # a duplicate detection of the same object
                pred_xyxy.append(_jitter(box, rng, 0.06))
                pred_labels.append(label)
                pred_scores.append(rng.uniform(0.1, 0.7))
        if k != 4:
            for _ in range(2):  # background false positives
                corner = rng.uniform(0, 0.7, 2) * [width, height]
                pred_xyxy.append(
                    np.concatenate([corner, corner + rng.uniform(0.1, 0.3, 2) * [width, height]])
                )
                pred_labels.append(int(rng.integers(0, len(CLASSES))))
                pred_scores.append(rng.uniform(0.05, 0.6))
        pred_xyxy_arr = np.array(pred_xyxy, dtype=np.float64).reshape(-1, 4)
        preds = Boxes(pred_xyxy_arr, np.array(pred_labels, np.int64), np.array(pred_scores, np.float64))
        path = _write_image(folder / f"img_{k}.png", width, height, gt_xyxy, seed + k)
        images.append(
            ReviewImage(k + 1, path, width, height, Boxes(gt_xyxy, gt_labels.astype(np.int64)), preds)
        )
    known = _write_image(folder / "known.png", 64, 48, np.array([[8.0, 6.0, 40.0, 30.0]]), 0)
    images.append(
        ReviewImage(
            99,
            known,
            64,
            48,
            Boxes(np.array([[8.0, 6.0, 40.0, 30.0]]), np.array([1])),
            # a confident "cat" on the dog, then the right "dog", then a weak "bird" on the background, then a
            # box with reversed corners (negative width/height, as an untrained two-stage head can emit)
            Boxes(
                np.array(
                    [
                        [8.0, 6.0, 41.0, 30.0],
                        [8.0, 6.0, 40.0, 31.0],
                        [50.0, 30.0, 62.0, 46.0],
                        [30.0, 20.0, 25.0, 10.0],
                    ]
                ),
                np.array([0, 1, 2, 1]),
                np.array([0.955, 0.915, 0.25, 0.6]),
            ),
        )
    )
    all_scores = np.concatenate([im.preds.scores for im in images])
    assert len(np.unique(all_scores)) == len(all_scores)
    return ReviewData(run_id=3, split="val", checkpoint="best.pth", class_names=CLASSES, images=images)


def _pycocotools_map(data: ReviewData, conf: float = 0.0) -> float:
    evaluator = CocoEvaluator(data.class_names)
    for im in data.images:
        keep = im.preds.scores >= conf
        evaluator.update(
            [
                {
                    "boxes": im.preds.xyxy[keep],
                    "scores": im.preds.scores[keep],
                    "labels": im.preds.labels[keep],
                }
            ],
            [
                {
                    "boxes": im.gt.xyxy,
                    "labels": im.gt.labels,
                    "image_id": im.image_id,
                    "orig_size": [im.height, im.width],
                }
            ],
        )
    return float(evaluator.compute()["mAP_50_95"])


@pytest.fixture(scope="module")
def fo():
    """The real FiftyOne with its own ``mongod``; deletes every dataset this module created."""
    prefix = f"studiotest-{uuid.uuid4().hex[:8]}"
    module = bridge.connect()
    module.studio_test_prefix = prefix
    yield module
    bridge.close_app()
    module.delete_datasets(f"{prefix}*")


@pytest.fixture(scope="module")
def review_data(tmp_path_factory: pytest.TempPathFactory) -> ReviewData:
    return _make_data(tmp_path_factory.mktemp("fiftyone_images"))


def test_dataset_name_is_slug_safe_and_unique() -> None:
    assert bridge.dataset_name("shapes", 3, "val") == "studio-shapes-run3-val"
    names = {
        bridge.dataset_name(p, r, s)
        for p in ["Cats", "cats", "cats!", "Cats & Dogs", "cats-dogs"]
        for r in (1, 2)
        for s in ("val", "test")
    }
    assert len(names) == 5 * 2 * 2
    import re

    assert all(re.fullmatch(r"[a-z0-9-]+", n) for n in names)
    assert len(bridge.dataset_name("x" * 300, 1, "val")) < 80


def test_import_does_not_load_fiftyone() -> None:
    code = "import sys, studio.services.review.fiftyone_bridge; print('fiftyone' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_counts_boxes_and_conf_filter(fo, review_data: ReviewData) -> None:
    name = f"{fo.studio_test_prefix}-counts"
    calls: list[tuple[int, int]] = []
    summary = bridge.build_dataset(
        review_data, name, conf=0.3, progress=lambda done, total: calls.append((done, total))
    )
    n_gt = sum(len(im.gt) for im in review_data.images)
    n_pred = sum(int((im.preds.scores >= 0.3).sum()) for im in review_data.images)
    assert n_pred < sum(len(im.preds) for im in review_data.images)  # the filter removed something
    assert (summary.name, summary.n_samples, summary.n_gt, summary.n_predictions) == (
        name,
        len(review_data.images),
        n_gt,
        n_pred,
    )
    assert calls[-1] == (len(review_data.images), len(review_data.images))
    assert summary.tp + summary.fn == n_gt and summary.tp + summary.fp == n_pred and summary.tp > 0

    dataset = fo.load_dataset(name)
    assert dataset.persistent and dataset.count_sample_tags() == {"val": len(review_data.images)}
    assert dataset.count("predictions.detections") == n_pred
    assert min(dataset.values("predictions.detections.confidence", unwind=True)) >= 0.3
    assert set(dataset.distinct("ground_truth.detections.label")) <= set(CLASSES)
    sample = dataset.match(fo.ViewField("image_id") == 99).first()
    assert (sample.metadata.width, sample.metadata.height) == (64, 48)
    assert sample.filepath == str(review_data.images[-1].path)
    (gt,) = sample.ground_truth.detections
    assert gt.label == "dog"
    np.testing.assert_allclose(gt.bounding_box, [8 / 64, 6 / 48, 32 / 64, 24 / 48], atol=1e-12)
    wrong, pred, reversed_box = sample.predictions.detections  # the 0.25 "bird" is below conf
    assert (pred.label, pred.confidence) == ("dog", pytest.approx(0.915))
    np.testing.assert_allclose(pred.bounding_box, [8 / 64, 6 / 48, 32 / 64, 25 / 48], atol=1e-12)
    np.testing.assert_allclose(reversed_box.bounding_box, [30 / 64, 20 / 48, 0, 0], atol=1e-12)  # empty box
    # classwise matching, as in pycocotools: the confident "cat" cannot take the dog away from "dog"
    assert (sample.review_tp, sample.review_fp, sample.review_fn) == (1, 2, 0)
    assert (wrong.label, wrong.review, pred.review, gt.review) == ("cat", "fp", "tp", "tp")
    assert reversed_box.review == "fp"


@pytest.mark.slow
@pytest.mark.parametrize("conf", [0.0, 0.55])
def test_map_equals_pycocotools(fo, review_data: ReviewData, conf: float) -> None:
    summary = bridge.build_dataset(review_data, f"{fo.studio_test_prefix}-map{int(conf * 100)}", conf=conf)
    ours = _pycocotools_map(review_data, conf)
    assert 0.1 < ours < 0.95  # a case where misses, confusions and loose boxes all cost something
    assert summary.mAP == pytest.approx(ours, abs=1e-6)


@pytest.mark.slow
def test_rebuild_replaces(fo, review_data: ReviewData) -> None:
    name = f"{fo.studio_test_prefix}-rebuild"
    first = bridge.build_dataset(review_data, name)
    fewer = ReviewData(
        review_data.run_id,
        review_data.split,
        review_data.checkpoint,
        review_data.class_names,
        review_data.images[:2],
    )
    second = bridge.build_dataset(fewer, name)
    dataset = fo.load_dataset(name)
    assert first.n_samples == len(review_data.images)
    assert second.n_samples == len(dataset) == 2
    assert dataset.count("ground_truth.detections") == sum(len(im.gt) for im in fewer.images)
    assert fo.list_datasets(f"{name}*") == [name]


def _get(url: str, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _server_children() -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if "--51-service" in p.cmdline() and "server" in p.cmdline()
    ]


@pytest.mark.slow
def test_launch_app_serves_and_close_frees_port(fo, review_data: ReviewData) -> None:
    name = f"{fo.studio_test_prefix}-app"
    bridge.build_dataset(review_data, name)
    url = bridge.launch_app(name)
    assert url.startswith("http://127.0.0.1:") and url.endswith(f"/datasets/{fo.load_dataset(name).slug}")
    port = int(url.split(":")[2].split("/")[0])
    assert _get(url) == 200
    assert _get(bridge.app_url()) == 200
    assert bridge.launch_app(name) == url  # reused, not a second server
    assert len(_server_children()) == 1
    bridge.close_app()
    assert bridge.app_url() is None and _server_children() == []
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignores our own TIME_WAIT connections
        sock.bind(("127.0.0.1", port))
        sock.listen()  # fails while anything else listens on the port


@pytest.mark.slow
def test_second_launch_reuses_or_relaunches_never_raises(fo, review_data: ReviewData) -> None:
    """Issue 13 #15: the second "Open in FiftyOne" while FiftyOne's event client is not connected.

    First the state a busy machine produces: the App server answers but FiftyOne's client gave up on it
    for a while (FiftyOne sets ``_connected = False`` and retries 10 s later), where a dataset switch
    raises "Client is not connected"; the App must be reused. Then the App server is killed; the next
    launch must start a new one."""
    first, second = f"{fo.studio_test_prefix}-twice-a", f"{fo.studio_test_prefix}-twice-b"
    bridge.build_dataset(review_data, first)
    bridge.build_dataset(review_data, second)
    url = bridge.launch_app(first)
    assert _get(url) == 200
    session = bridge._session
    session._client._connected = False  # what FiftyOne's client does after its pings time out
    with pytest.raises(RuntimeError, match="Client is not connected"):
        session.dataset = fo.load_dataset(first)  # FiftyOne itself refuses a switch
    switched = bridge.launch_app(second)
    assert switched == url.rsplit("/datasets/", 1)[0] + f"/datasets/{fo.load_dataset(second).slug}"
    assert bridge._session is session and session.dataset.name == second  # reused, state updated
    assert len(_server_children()) == 1

    (service,) = _server_children()
    doomed = [service, *service.children(recursive=True)]
    for proc in doomed:
        proc.kill()
    psutil.wait_procs(doomed, timeout=30)
    again = bridge.launch_app(first)  # the server is gone: a new App, no exception
    assert _get(again) == 200 and bridge._session is not session
    assert len(_server_children()) == 1
    bridge.close_app()
    assert bridge.app_url() is None and _server_children() == []


def test_unknown_dataset_is_a_studio_error(fo) -> None:
    with pytest.raises(StudioError, match="build it first"):
        bridge.launch_app(f"{fo.studio_test_prefix}-missing")


@pytest.mark.slow
def test_database_failure_is_a_readable_studio_error() -> None:
    """A MongoDB URI on a port nobody listens on: the real connection attempt fails in a fresh process."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIFTYONE_")}
    env["FIFTYONE_DATABASE_URI"] = f"mongodb://127.0.0.1:{closed_port}/?serverSelectionTimeoutMS=300"
    code = (
        "from studio.services.review import fiftyone_bridge as b\n"
        "from studio.errors import StudioError\n"
        "try:\n    b.connect()\nexcept StudioError as e:\n    print('MESSAGE:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    message = out.stdout.split("MESSAGE:", 1)[1]
    assert "FiftyOne's database could not start or be reached" in message
    assert f"127.0.0.1:{closed_port}" in message and "start that MongoDB server" in message
