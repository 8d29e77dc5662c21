"""The typed verification report: a real ONNX verification and a real Roboflow bundle check written
as JSON and read back unchanged, the file's layout as it always was, and the summary in words."""

from __future__ import annotations

import json

import pytest
import torch

from rfdetr_core.export import (
    BundleReport,
    ExportVerificationError,
    VerificationReport,
    export_for_roboflow,
    export_model,
    source_from_rfdetr,
    summarise,
    verify_bundle,
    verify_export,
)
from rfdetr_core.variants import RFDETRNano
from tests.support.export_fixtures import perturb_box_head, write_coco, write_images

pytestmark = pytest.mark.slow
CLASSES = ["square", "circle", "triangle"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    torch.manual_seed(0)
    rf = RFDETRNano(pretrain_weights=None, num_classes=len(CLASSES))
    rf.model.class_names = list(CLASSES)
    perturb_box_head(rf, seed=0)
    images, valid = write_images(root / "images", 2), write_coco(root / "valid", 2)
    path = export_model(rf, root / "onnx", format="onnx", verify=False)
    return rf, path, images, valid


def test_onnx_report_round_trips_and_keeps_the_file_layout(exported):
    rf, path, _, valid = exported
    report = verify_export(source_from_rfdetr(rf), path, validation=valid, max_images=2, repeats=2)
    assert isinstance(report, VerificationReport) and report.passed and report.map.images == 2
    text = path.with_name(path.name + ".verification.json").read_text()
    saved = json.loads(text)
    assert list(saved) == [
        "artefact",
        "kind",
        "images",
        "input_shape",
        "runtime",
        "max_abs_diff",
        "detections",
        "latency_ms",
        "tolerance",
        "map",
        "status",
        "failures",
        "warnings",
    ]  # report_path is not inside the file it names
    assert list(saved["map"]) == ["pytorch", "artefact", "images"]
    assert saved["tolerance"] == {
        "boxes_atol": 1e-3,
        "logits_atol": 1e-3,
        "min_match_rate": 0.95,
        "max_map_drop": 0.01,
    }
    assert VerificationReport.from_json(text).to_json() == text
    assert report.report_path == str(path.with_name(path.name + ".verification.json"))
    again = VerificationReport.from_json(report.to_json())
    assert again == report and list(json.loads(report.to_json()))[-1] == "report_path"
    lines = summarise(report).splitlines()
    assert lines[0].startswith(
        "Verification PASSED for rfdetr-nano.onnx (onnx, onnxruntime) on validation set"
    )
    assert "matched 20/20" in lines[2] and lines[-1].startswith("  mAP@50:95 PyTorch")


def test_failed_report_raises_with_its_reasons(exported):
    rf, path, images, _ = exported
    report = verify_export(
        source_from_rfdetr(rf),
        path,
        images=images,
        max_images=1,
        repeats=0,
        save=False,
        tolerance={"boxes_atol": -1.0},
    )
    assert report.status == "failed" and report.failures[0].startswith("max abs diff of boxes")
    assert report.report_path is None and "report_path" not in json.loads(report.to_json())
    assert (
        report.latency_ms.pytorch is None and report.map is None and "map" not in json.loads(report.to_json())
    )
    error = ExportVerificationError(report)
    assert error.report is report and "max abs diff of boxes" in str(error)
    assert "FAILED: max abs diff of boxes" in summarise(report)


def test_bundle_report_round_trips(exported, tmp_path):
    rf, _, images, _ = exported
    export_for_roboflow(rf, tmp_path)
    checks = verify_bundle(rf, tmp_path, images=images, max_images=1, save=False)
    report = BundleReport.from_dict(checks)
    assert report.passed and report.max_abs_diff == 0.0 and report.files == ["class_names.txt", "weights.pt"]
    assert json.loads(report.to_json()) == {**checks, "failures": []}
    assert list(json.loads(report.to_json()))[: len(checks)] == list(checks)
    assert BundleReport.from_json(report.to_json()) == report
