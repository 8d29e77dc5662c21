"""``RFDETR.predict()`` against the reference ``rfdetr`` package (oracle) with the same weights."""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy.optimize import linear_sum_assignment

from rfdetr_core import RFDETRNano, RFDETRSmall
from rfdetr_core.coco_classes import COCO_CLASS_NAMES, COCO_CLASSES

pytestmark = pytest.mark.oracle


def synthetic_image(height: int, width: int, seed: int) -> np.ndarray:
    """A textured background with a few filled shapes, so features are not uniform."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * (1 + seed % 3)) % 256, (yy * 2) % 256, ((xx + yy) // 2) % 256], -1).astype(
        np.uint8
    )
    img = Image.fromarray(base)
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        x1, y1 = x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
    return np.asarray(img)


def save_reference(ref, path: Path) -> Path:
    """The official layout: ``model`` state dict + ``args`` as an ``argparse.Namespace``."""
    torch.save(
        {"model": ref.model.model.state_dict(), "args": argparse.Namespace(**vars(ref.model.args))}, path
    )
    return path


def assert_same_detections(ours, ref, box_tol: float = 1e-2, score_tol: float = 1e-4) -> None:
    """Same set of detections; rows are matched one-to-one so near-ties in order do not matter."""
    assert len(ours) == len(ref) > 0
    box_gap = np.abs(ours.xyxy[:, None, :] - ref.xyxy[None, :, :]).max(-1)
    score_gap = np.abs(ours.confidence[:, None] - ref.confidence[None, :])
    same_class = ours.class_id[:, None] == ref.class_id[None, :]
    cost = box_gap / max(box_tol, 1e-9) + score_gap / max(score_tol, 1e-9) + np.where(same_class, 0.0, 1e6)
    rows, cols = linear_sum_assignment(cost)
    assert np.all(same_class[rows, cols]), "class ids differ"
    assert box_gap[rows, cols].max() <= box_tol, f"boxes differ by {box_gap[rows, cols].max()} px"
    assert score_gap[rows, cols].max() <= score_tol, f"scores differ by {score_gap[rows, cols].max()}"
    assert list(ours.data["class_name"][rows]) == list(ref.data["class_name"][cols])


@pytest.fixture(scope="module")
def nano_pair(tmp_path_factory):
    """(reference Nano with random weights, our Nano loaded from its saved checkpoint)."""
    from rfdetr import RFDETRNano as RefNano

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = RefNano(pretrain_weights=None)
    path = save_reference(ref, tmp_path_factory.mktemp("w") / "nano-random.pth")
    return ref, RFDETRNano(pretrain_weights=str(path))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("img")
    arrays = [synthetic_image(480, 640, 1), synthetic_image(333, 517, 2), synthetic_image(700, 300, 3)]
    paths = []
    for i, arr in enumerate(arrays):
        paths.append(folder / f"img{i}.png")
        Image.fromarray(arr).save(paths[-1])
    return arrays, paths


def test_predict_matches_reference(nano_pair, images) -> None:
    ref, ours = nano_pair
    arrays, paths = images
    for arr, path in zip(arrays, paths, strict=True):
        expected = ref.predict(arr, threshold=0.0)
        got = ours.predict(str(path), threshold=0.0)
        assert_same_detections(got, expected)
        assert got.data["source_shape"].tolist() == [list(arr.shape[:2])] * len(got)
        np.testing.assert_array_equal(got.metadata["source_image"], arr)


def test_batched_list_matches_reference_and_single(nano_pair, images) -> None:
    ref, ours = nano_pair
    arrays, _ = images
    got = ours.predict(arrays, threshold=0.05)
    expected = ref.predict(arrays, threshold=0.05)
    assert isinstance(got, list) and len(got) == 3
    for g, e, arr in zip(got, expected, arrays, strict=True):
        assert_same_detections(g, e)
        assert_same_detections(g, ours.predict(arr, threshold=0.05), box_tol=1e-3, score_tol=1e-5)


def test_input_kinds_agree(nano_pair, images) -> None:
    _, ours = nano_pair
    arrays, paths = images
    arr = arrays[1]
    base = ours.predict(arr, threshold=0.0)
    for kind in (
        str(paths[1]),
        paths[1],
        Image.open(paths[1]),
        torch.from_numpy(arr).permute(2, 0, 1) / 255.0,
        arr.astype(np.float32) / 255.0,
        arr / 255.0,
    ):
        assert_same_detections(ours.predict(kind, threshold=0.0), base, box_tol=1e-3, score_tol=1e-5)
    rgba = Image.fromarray(arr).convert("RGBA")  # non-RGB PIL images are converted, as in the reference
    assert_same_detections(ours.predict(rgba, threshold=0.0), base, box_tol=1e-3, score_tol=1e-5)


def test_shape_override_matches_reference(nano_pair, images) -> None:
    ref, ours = nano_pair
    arr = images[0][0]
    assert_same_detections(
        ours.predict(arr, threshold=0.0, shape=(320, 448)), ref.predict(arr, threshold=0.0, shape=(320, 448))
    )


def test_threshold_and_source_image_flag(nano_pair, images) -> None:
    _, ours = nano_pair
    arr = images[0][0]
    every = ours.predict(arr, threshold=0.0)
    some = ours.predict(arr, threshold=float(np.median(every.confidence)), include_source_image=False)
    assert 0 < len(some) < len(every)
    assert np.all(some.confidence > np.median(every.confidence))
    assert "source_image" not in some.metadata and "source_image" not in some.data


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (torch.full((3, 64, 64), 1.5), {}, "above 1"),
        (torch.full((3, 64, 64), -0.1), {}, "below 0"),
        (torch.rand(4, 64, 64), {}, "Invalid tensor image shape"),
        (torch.rand(64, 64, 3), {}, "Invalid tensor image shape"),
        (torch.rand(1, 3, 64, 64), {}, "Invalid tensor image shape"),
        (np.zeros((64, 64), dtype=np.uint8), {}, "Invalid tensor image shape"),
        (np.full((64, 64, 3), 2.0, dtype=np.float32), {}, "above 1"),
        (torch.rand(3, 64, 64), {"shape": (100, 128)}, "divisible by 32"),
        (torch.rand(3, 64, 64), {"shape": (128.0, 128)}, "must be an integer"),
        (torch.rand(3, 64, 64), {"shape": (True, 128)}, "must be an integer"),
        (torch.rand(3, 64, 64), {"shape": (0, 128)}, "positive integers"),
        (torch.rand(3, 64, 64), {"shape": 128}, "sequence of two"),
        (torch.rand(3, 64, 64), {"patch_size": 14}, "does not match"),
        (torch.rand(3, 64, 64), {"patch_size": 0}, "positive integer"),
    ],
)
def test_input_validation_errors(nano_pair, image, kwargs, message) -> None:
    _, ours = nano_pair
    with pytest.raises(ValueError, match=message):
        ours.predict(image, **kwargs)


def test_coco_sparse_ids_for_coco_head(nano_pair, images) -> None:
    _, ours = nano_pair
    assert ours.class_names == COCO_CLASS_NAMES  # no names in the checkpoint: the 90-slot COCO head
    det = ours.predict(images[0][0], threshold=0.0)
    for cid, name in zip(det.class_id, det.data["class_name"], strict=True):
        assert name == COCO_CLASSES.get(int(cid), "")


def test_finetuned_names_match_reference(tmp_path: Path, images) -> None:
    from rfdetr import RFDETRNano as RefNano

    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = RefNano(pretrain_weights=None, num_classes=3)
    args = argparse.Namespace(**vars(ref.model.args))
    args.class_names = ["bolt", "nut", "washer"]
    path = tmp_path / "finetuned.pth"
    torch.save({"model": ref.model.model.state_dict(), "args": args}, path)
    ref_loaded = RefNano(pretrain_weights=str(path))
    ours = RFDETRNano(pretrain_weights=str(path))
    assert ours.class_names == ["bolt", "nut", "washer"] and ours.model_config.num_classes == 3
    arr = images[0][0]
    got, expected = ours.predict(arr, threshold=0.0), ref_loaded.predict(arr, threshold=0.0)
    assert_same_detections(got, expected)
    assert set(got.data["class_name"]) <= {"bolt", "nut", "washer", "__background__"}


def test_optimize_for_inference_and_guards(nano_pair, images) -> None:
    _, ours = nano_pair
    arr = images[0][0]
    plain = ours.predict(arr, threshold=0.0)
    try:
        ours.optimize_for_inference(compile=False, dtype="float32")
        assert ours._is_optimized_for_inference and not ours._optimized_has_been_compiled
        assert_same_detections(ours.predict(arr, threshold=0.0), plain, box_tol=1e-3, score_tol=1e-5)
        assert len(ours.predict([arr, arr], threshold=0.0)) == 2  # eager copy: any batch size
        with pytest.raises(ValueError, match="Resolution mismatch"):
            ours.predict(arr, shape=(320, 320))

        ours.optimize_for_inference(compile=True, batch_size=1)
        assert ours._optimized_has_been_compiled and ours._optimized_batch_size == 1
        assert_same_detections(ours.predict(arr, threshold=0.0), plain, box_tol=1e-2, score_tol=1e-4)
        with pytest.raises(ValueError, match="Batch size mismatch"):
            ours.predict([arr, arr])
        with pytest.raises(ValueError, match="Resolution mismatch"):
            ours.predict(arr, shape=(320, 320))
        for bad in ("not_a_dtype", 3):
            with pytest.raises(TypeError, match="dtype"):
                ours.optimize_for_inference(dtype=bad)
            assert ours._optimized_has_been_compiled  # rejected before touching the optimised model
    finally:
        ours.remove_optimized_model()
    assert ours.model.inference_model is None and ours._optimized_dtype is None
    assert ours._optimized_resolution is None and not ours._optimized_has_been_compiled
    assert_same_detections(ours.predict(arr, threshold=0.0), plain, box_tol=0, score_tol=1e-7)


def test_optimize_with_another_dtype(nano_pair, images) -> None:
    """The dtype path casts weights and inputs; float64 keeps the check about casting, not rounding."""
    _, ours = nano_pair
    arr = images[0][0]
    plain = ours.predict(arr, threshold=0.0)
    try:
        ours.optimize_for_inference(compile=False, dtype="float64")
        assert ours._optimized_dtype is torch.float64
        assert next(ours.model.inference_model.parameters()).dtype is torch.float64
        assert next(ours.model.model.parameters()).dtype is torch.float32  # the original stays untouched
        det = ours.predict(arr, threshold=0.0)
        assert det.xyxy.dtype == np.float32
        assert_same_detections(det, plain, box_tol=1e-2, score_tol=1e-4)
    finally:
        ours.remove_optimized_model()


def test_optimize_with_bfloat16(nano_pair, images) -> None:
    """bfloat16 end to end: finite float32 detections, the strongest ones found again.

    Rounded scores reorder near-tied candidates (random weights give many), so only most of the
    float32 top 20 must reappear with the same class within 2 px; the once-seen failure was NaN.
    """
    _, ours = nano_pair
    arr = images[0][0]
    plain = ours.predict(arr, threshold=0.0)
    try:
        ours.optimize_for_inference(compile=False, dtype=torch.bfloat16)
        det = ours.predict(arr, threshold=0.0)
    finally:
        ours.remove_optimized_model()
    assert len(det) == len(plain) and det.xyxy.dtype == np.float32
    assert np.isfinite(det.xyxy).all() and np.isfinite(det.confidence).all()
    top = np.argsort(-plain.confidence)[:20]
    gap = np.abs(plain.xyxy[top][:, None] - det.xyxy[None]).max(-1)
    same_class = plain.class_id[top][:, None] == det.class_id[None]
    found = (np.where(same_class, gap, np.inf).min(1) <= 2.0).mean()
    assert found >= 0.7, found


def test_not_optimized_warning_once(nano_pair, images, caplog) -> None:
    ref, _ = nano_pair
    model = RFDETRNano(pretrain_weights=None)
    with caplog.at_level(logging.WARNING, logger="rfdetr_core.detr"):
        model.predict(images[0][0])
        model.predict(images[0][0])
    assert sum("not optimized for inference" in r.message for r in caplog.records) == 1


@pytest.mark.slow
def test_small_matches_reference(tmp_path: Path, images) -> None:
    from rfdetr import RFDETRSmall as RefSmall

    torch.manual_seed(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = RefSmall(pretrain_weights=None)
    ours = RFDETRSmall(pretrain_weights=str(save_reference(ref, tmp_path / "small.pth")))
    arr = images[0][1]
    assert_same_detections(ours.predict(arr, threshold=0.0), ref.predict(arr, threshold=0.0))


def test_cli_predict_writes_json(nano_pair, images, tmp_path: Path, capsys) -> None:
    import json

    from rfdetr_core.cli import main

    ref, ours = nano_pair
    weights = tmp_path / "cli-nano.pth"
    ours.save_checkpoint(weights)
    out = tmp_path / "out.json"
    _, paths = images
    assert (
        main(
            [
                "predict",
                str(paths[0]),
                str(paths[1]),
                "--weights",
                str(weights),
                "--threshold",
                "0.1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    records = json.loads(out.read_text())
    assert [r["image"] for r in records] == [str(paths[0]), str(paths[1])]
    expected = ours.predict(str(paths[0]), threshold=0.1)
    assert len(records[0]["detections"]) == len(expected) > 0
    first = records[0]["detections"][0]
    assert set(first) == {"class_id", "class_name", "confidence", "xyxy"} and len(first["xyxy"]) == 4
    assert main(["predict", str(paths[0]), "--weights", str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth" in capsys.readouterr().err


def test_predict_from_url(nano_pair, images) -> None:
    """http(s) inputs are fetched; served here by a local server on 127.0.0.1."""
    import functools
    import http.server
    import threading

    _, ours = nano_pair
    arrays, paths = images
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(paths[1].parent))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{paths[1].name}"
        got = ours.predict(url, threshold=0.0)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert_same_detections(got, ours.predict(arrays[1], threshold=0.0), box_tol=1e-3, score_tol=1e-5)


def test_configs_and_train_arguments(nano_pair) -> None:
    _, ours = nano_pair
    assert ours.get_model_config().resolution == 384 and ours.model_config.patch_size == 16
    cfg = ours.get_train_config(dataset_dir="data", epochs=5, batch_size="auto")
    assert cfg.epochs == 5 and cfg.lr == 1e-4 and cfg.batch_size == "auto" and cfg.grad_accum_steps == 1
    with pytest.raises(ValueError, match="Unknown training parameter.*epoch.*Valid parameters"):
        ours.get_train_config(dataset_dir="data", epoch=5)
    with pytest.raises(ValueError, match="Unknown training parameter"):
        ours.train(dataset_dir="data", epoch=1)  # train() validates its keywords before any work
    with pytest.raises(Exception, match="Dataset folder not found"):
        ours.train(dataset_dir="/nonexistent/dataset", epochs=1)


def degenerate_outputs(seed: int) -> dict[str, torch.Tensor]:
    """Raw outputs with the boxes an untrained head produces: exact zeros, negative and huge sizes."""
    generator = torch.Generator().manual_seed(seed)
    boxes = torch.rand(2, 40, 4, generator=generator) * 1.6 - 0.3  # centres and sizes outside [0, 1]
    boxes[0, :5] = 0.0
    boxes[1, :5, 2:] = -torch.rand(5, 2, generator=generator)  # negative width and height
    boxes[1, 5:8, 2] = 0.0
    logits = torch.randn(2, 40, 7, generator=generator)
    logits[:, :8] += 4.0  # rank the degenerate queries first, so every one is selected
    return {"pred_logits": logits, "pred_boxes": boxes}


@pytest.mark.parametrize("seed", range(3))
def test_postprocess_of_degenerate_boxes_is_bit_exact_with_the_reference(seed: int) -> None:
    from rfdetr.models.postprocess import PostProcess

    from rfdetr_core.inference import postprocess

    outputs = degenerate_outputs(seed)
    sizes = torch.tensor([[480, 640], [333, 517]])
    ours = postprocess(outputs, sizes, num_select=60)
    theirs = PostProcess(num_select=60)(outputs, sizes)
    for mine, ref in zip(ours, theirs, strict=True):
        for key in ("scores", "labels", "boxes"):
            assert torch.equal(mine[key], ref[key]), key
        assert (mine["boxes"][:, 2:] >= mine["boxes"][:, :2]).all()  # never reversed
