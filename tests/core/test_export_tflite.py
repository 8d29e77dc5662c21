"""TFLite export through onnx2tf in the private converter venv, checked in the LiteRT interpreter.

One conversion of a reduced Nano (2 ViT blocks, 100 queries, 384 px) with ``quantization="int8"``
writes the fp32, fp16 and int8 files; each is then verified against PyTorch on real images.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from rfdetr_core.export import converter_env, export_model, source_from_rfdetr, verify_export
from rfdetr_core.export.tflite import load_calibration
from rfdetr_core.export.tflite_rewrites import prepare_for_tflite
from rfdetr_core.variants import RFDETRNano
from tests.support.export_fixtures import perturb_box_head, write_images

CLASSES = ["square", "circle", "triangle"]  # 3 classes -> 4 logits: boxes and logits both end in 4
FAST = {"max_images": 3, "repeats": 3}


def _small_nano():
    torch.manual_seed(0)
    rf = RFDETRNano(
        pretrain_weights=None,
        num_classes=len(CLASSES),
        out_feature_indexes=[1, 2],
        vit_encoder_num_layers=2,
        num_queries=100,
        num_select=100,
    )
    rf.model.class_names = list(CLASSES)
    perturb_box_head(rf)
    return rf


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite")
    images = write_images(root / "images", 4)
    rf = _small_nano()
    path = export_model(
        rf,
        root / "out",
        format="tflite",
        quantization="int8",
        calibration_data=images,
        max_images=4,
        verify_images=images,
        verify_options=FAST,
        strict=False,
        progress=lambda _: None,
    )
    return rf, path, images


@pytest.mark.slow
def test_int8_model_is_written_and_runs_in_litert(exported):
    rf, path, _ = exported
    assert path.name == "rfdetr-nano_int8.tflite" and path.is_file()
    report = json.loads(path.with_name(path.name + ".verification.json").read_text())
    assert report["kind"] == "tflite-int8"
    assert report["tflite"]["runtime"] == "ai_edge_litert" and report["tflite"]["flex_ops"] == []
    assert np.isfinite(report["max_abs_diff"]["boxes"]) and np.isfinite(report["max_abs_diff"]["logits"])
    assert report["detections"]["compared"] == 3 * 10
    assert report["status"] == "passed" and report["tflite"]["input_shape"] == [1, 384, 384, 3]
    assert (path.parent / "rfdetr-nano.onnx").is_file()
    assert path.stat().st_size < (path.parent / "rfdetr-nano_fp32.tflite").stat().st_size / 2


@pytest.mark.slow
def test_fp32_matches_pytorch_within_a_pixel(exported):
    rf, path, images = exported
    fp32 = path.with_name("rfdetr-nano_fp32.tflite")
    report = verify_export(source_from_rfdetr(rf), fp32, images=images, **FAST)
    assert report.status == "passed", report.failures
    assert report.runtime == "ai_edge_litert" and report.tflite.flex_ops == []  # no Flex ops
    assert report.tflite.input_shape == [1, 384, 384, 3]
    assert report.detections.match_rate == 1.0
    assert report.detections.max_box_error_px <= 1.0
    assert report.max_abs_diff.logits <= 1e-3


@pytest.mark.slow
def test_fp16_matches_pytorch_detections(exported):
    rf, path, images = exported
    fp16 = path.with_name("rfdetr-nano_fp16.tflite")
    assert fp16.stat().st_size < path.with_name("rfdetr-nano_fp32.tflite").stat().st_size * 0.6
    report = verify_export(source_from_rfdetr(rf), fp16, images=images, **FAST)
    assert report.status == "passed", report.failures
    assert report.runtime == "ai_edge_litert"
    assert report.detections.match_rate >= 0.8
    assert report.detections.max_box_error_px <= 4.0


def test_calibration_accepts_folder_npy_and_array(tmp_path):
    images = write_images(tmp_path / "imgs", 3)
    from_folder = load_calibration(images, (64, 96), max_images=2)
    assert from_folder.shape == (2, 64, 96, 3) and from_folder.dtype == np.float32
    assert 0.0 <= from_folder.min() and from_folder.max() <= 1.0
    np.save(tmp_path / "calib.npy", from_folder)
    assert np.array_equal(load_calibration(tmp_path / "calib.npy", (64, 96), 10), from_folder)
    assert load_calibration(from_folder, (32, 32), 10).shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="scaled to \\[0, 1\\]"):
        load_calibration(from_folder * 255, (64, 96), 10)
    with pytest.raises(FileNotFoundError):
        load_calibration(tmp_path / "missing", (64, 96), 10)


def test_tflite_rewrites_keep_outputs_identical(tmp_path):
    class Probe(torch.nn.Module):
        """6-D last-axis slices and a grid_sample with samples outside the image, as in RF-DETR."""

        def forward(self, x):
            ref = x[:, :4, 0, :5].permute(0, 2, 1)[:, :, None, None, None, :]  # (1, 5, 1, 1, 1, 4)
            loc = ref[..., :2] + 0.3 * ref[..., 2:]
            grid = torch.tanh(loc).reshape(1, 5, 1, 2) * 1.4
            return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    x = torch.randn(1, 6, 7, 9)
    src, dst = tmp_path / "probe.onnx", tmp_path / "probe_rw.onnx"
    torch.onnx.export(Probe(), (x,), str(src), input_names=["input"], opset_version=17, dynamo=False)
    counts = prepare_for_tflite(src, dst, gridsample=True)
    assert counts == {"high_rank_slices": 2, "gridsample": 1}
    assert not {n.op_type for n in onnx.load(str(dst)).graph.node} & {"GridSample"}
    before = ort.InferenceSession(str(src)).run(None, {"input": x.numpy()})[0]
    after = ort.InferenceSession(str(dst)).run(None, {"input": x.numpy()})[0]
    assert np.abs(before - Probe()(x).numpy()).max() < 1e-5
    assert np.abs(after - before).max() < 1e-5


def test_converter_env_errors_are_clear(tmp_path, monkeypatch):
    not_env = tmp_path / "some-folder"
    not_env.mkdir()
    (not_env / "notes.txt").write_text("mine")
    with pytest.raises(converter_env.ConverterEnvError, match="not a converter environment"):
        converter_env.ensure_env(not_env, progress=lambda _: None)
    assert (not_env / "notes.txt").read_text() == "mine"  # never deletes a folder it did not create
    monkeypatch.setattr(converter_env, "PINS", ("onnx2tf==not a version",))
    with pytest.raises(converter_env.ConverterEnvError, match="Could not install onnx2tf"):
        converter_env.ensure_env(tmp_path / "fresh", progress=lambda _: None)
    assert not converter_env.is_ready(tmp_path / "fresh")


def test_tflite_rejects_dynamic_batch_and_bad_quantization(tmp_path):
    rf = _small_nano()
    with pytest.raises(ValueError, match="static batch of 1"):
        export_model(rf, tmp_path, format="tflite", dynamic_batch=True)
    with pytest.raises(ValueError, match="quantization must be one of"):
        export_model(rf, tmp_path, format="tflite", quantization="int4")
