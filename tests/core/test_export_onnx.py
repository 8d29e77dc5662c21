"""ONNX export: parity with PyTorch on real images, dynamic batch, metadata, oracle, verification."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rfdetr_core.export import ExportVerificationError, export_model, read_metadata, source_from_rfdetr
from rfdetr_core.export.backends import run_torch
from rfdetr_core.export.images import normalise_nchw, resolve_images, to_unit_nhwc
from rfdetr_core.export.verify import verify_export
from rfdetr_core.variants import RFDETRNano, RFDETRSmall
from tests.support.export_fixtures import perturb_box_head, write_coco, write_images

CLASSES = ["square", "circle", "triangle"]
FAST = {"max_images": 4, "repeats": 3}


def _model(cls=RFDETRNano, seed: int = 0):
    torch.manual_seed(seed)
    rf = cls(pretrain_weights=None, num_classes=len(CLASSES))
    rf.model.class_names = list(CLASSES)
    perturb_box_head(rf, seed=seed)
    return rf


@pytest.fixture(scope="module")
def nano():
    return _model()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_data")
    return write_images(root / "images", 3), write_coco(root / "valid", 4)


def _batch(rf, folder, count):
    src = source_from_rfdetr(rf)
    pil = resolve_images(folder)[:count]
    while len(pil) < count:
        pil += pil
    return normalise_nchw(to_unit_nhwc(pil[:count], (src.resolution,) * 2), src.means, src.stds)


@pytest.mark.slow
@pytest.mark.parametrize("cls", [RFDETRNano, RFDETRSmall], ids=["nano", "small"])
def test_onnx_matches_pytorch_on_real_images(cls, data, tmp_path):
    images, valid = data
    rf = _model(cls)
    path = export_model(
        rf,
        tmp_path,
        format="onnx",
        verify_images=images,
        validation=valid,
        verify_options=FAST,
        progress=lambda _: None,
    )
    report = json.loads(path.with_name(path.name + ".verification.json").read_text())
    assert report["status"] == "passed", report["failures"]
    assert report["max_abs_diff"]["boxes"] <= 1e-4 and report["max_abs_diff"]["logits"] <= 1e-4
    assert report["detections"]["match_rate"] == 1.0
    assert report["map"]["images"] == 4
    assert abs(report["map"]["pytorch"]["map50_95"] - report["map"]["artefact"]["map50_95"]) <= 1e-3
    assert report["latency_ms"]["pytorch"] > 0 and report["latency_ms"]["artefact"] > 0
    assert "export_seconds" in report


@pytest.mark.slow
def test_dynamic_batch_runs_batches_of_1_and_3(nano, data, tmp_path):
    images, _ = data
    path = export_model(nano, tmp_path, format="onnx", dynamic_batch=True, verify=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    for count in (1, 3):
        x = _batch(nano, images, count)
        boxes, logits = session.run(["dets", "labels"], {"input": x})
        t_boxes, t_logits, _ = run_torch(nano.model.model, x)
        assert boxes.shape == (count, 300, 4) and logits.shape[:2] == (count, 300)
        assert np.abs(boxes - t_boxes).max() <= 1e-4
        assert np.abs(logits - t_logits).max() <= 1e-4


@pytest.mark.slow
def test_static_batch_and_metadata_round_trip(nano, tmp_path):
    notes = {"run": "r1", "epochs": 3, "tags": ["a", "b"]}
    path = export_model(nano, tmp_path, format="onnx", batch_size=2, notes=notes, verify=False)
    meta = read_metadata(path)
    assert meta["notes"] == notes
    assert meta["class_names"] == CLASSES
    assert meta["input_shape"] == [3, 384, 384] and meta["resolution"] == 384
    assert meta["means"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["stds"] == pytest.approx([0.229, 0.224, 0.225])
    assert meta["variant"] == "rfdetr-nano" and meta["box_format"] == "cxcywh_normalized"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "input" and session.get_inputs()[0].shape[0] == 2
    assert [o.name for o in session.get_outputs()] == ["dets", "labels"]
    # A plain-string note is stored verbatim.
    path = export_model(nano, tmp_path / "s", format="onnx", notes="trained on v3", verify=False)
    assert read_metadata(path)["notes"] == "trained on v3"


def test_shape_must_be_multiple_of_patch_times_windows(nano, tmp_path):
    with pytest.raises(ValueError, match="multiple of patch_size\\*num_windows = 16\\*2 = 32"):
        export_model(nano, tmp_path, format="onnx", shape=(384, 390), verify=False)
    with pytest.raises(ValueError, match="patch_size=14 does not match"):
        export_model(nano, tmp_path, format="onnx", patch_size=14, verify=False)
    with pytest.raises(ValueError, match="Unsupported export format"):
        export_model(nano, tmp_path, format="torchscript")


@pytest.mark.slow
def test_non_default_shape_exports_and_matches(nano, data, tmp_path):
    images, _ = data
    path = export_model(
        nano,
        tmp_path,
        format="onnx",
        shape=(320, 448),
        verify_images=images,
        verify_options=FAST,
        progress=lambda _: None,
    )
    report = json.loads(path.with_name(path.name + ".verification.json").read_text())
    assert report["input_shape"] == [320, 448]
    assert report["max_abs_diff"]["boxes"] <= 1e-4 and report["max_abs_diff"]["logits"] <= 1e-4


@pytest.mark.slow
def test_mismatching_artefact_is_reported_failed(nano, data, tmp_path):
    images, _ = data
    path = export_model(nano, tmp_path, format="onnx", verify=False)
    other = _model(seed=1)  # same architecture, different weights: must not pass as "the same model"
    report = verify_export(source_from_rfdetr(other), path, images=images, **FAST)
    assert report.status == "failed" and not report.passed
    assert any("max abs diff" in f for f in report.failures)
    saved = json.loads(path.with_name(path.name + ".verification.json").read_text())
    assert saved["status"] == "failed"
    with pytest.raises(ExportVerificationError, match="verification failed"):
        export_model(
            other,
            tmp_path / "strict",
            format="onnx",
            verify_images=images,
            verify_options={**FAST, "tolerance": {"boxes_atol": -1.0}},
            progress=lambda _: None,
        )


@pytest.mark.slow
def test_backbone_only_export_runs(nano, tmp_path):
    path = export_model(nano, tmp_path, format="onnx", backbone_only=True, verify=False)
    assert path.name == "rfdetr-nano-backbone.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "features"
    outs = session.run(None, {"input": np.zeros((1, 3, 384, 384), np.float32)})
    assert all(np.isfinite(o).all() for o in outs)


@pytest.mark.slow
@pytest.mark.oracle
def test_reference_onnx_of_same_weights_gives_same_outputs(nano, data, tmp_path):
    from rfdetr import RFDETRNano as RefNano

    images, _ = data
    ref = RefNano(pretrain_weights=None, num_classes=len(CLASSES))
    ref.model.model.load_state_dict(nano.model.model.state_dict())
    ref_path = ref.export(output_dir=str(tmp_path / "ref"), verbose=False)
    our_path = export_model(nano, tmp_path / "ours", format="onnx", verify=False)
    x = _batch(nano, images, 2)
    for i in range(len(x)):
        ours = ort.InferenceSession(str(our_path)).run(["dets", "labels"], {"input": x[i : i + 1]})
        theirs = ort.InferenceSession(str(ref_path)).run(["dets", "labels"], {"input": x[i : i + 1]})
        assert np.abs(ours[0] - theirs[0]).max() <= 1e-4
        assert np.abs(ours[1] - theirs[1]).max() <= 1e-4
