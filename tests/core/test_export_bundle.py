"""Roboflow bundle: the files, their contents, reload-and-predict identity, and deploy's clear errors."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from rfdetr_core.export import deploy_to_roboflow, export_for_roboflow, verify_bundle
from rfdetr_core.export.cli import main as export_cli
from rfdetr_core.variants import RFDETRNano
from tests.support.export_fixtures import write_images

CLASSES = ["cat", "dog", "bird"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    rf = RFDETRNano(pretrain_weights=None, num_classes=len(CLASSES))
    rf.model.class_names = list(CLASSES)
    return rf


def test_bundle_files_and_contents(model, tmp_path):
    out = export_for_roboflow(model, tmp_path / "bundle")
    assert sorted(p.name for p in out.iterdir()) == ["class_names.txt", "weights.pt"]
    assert (out / "class_names.txt").read_text(encoding="utf-8") == "cat\ndog\nbird"
    payload = torch.load(out / "weights.pt", map_location="cpu", weights_only=False)
    assert set(payload) == {"model", "args"}
    assert isinstance(payload["args"], argparse.Namespace)
    assert payload["args"].class_names == CLASSES
    state = model.model.model.state_dict()
    assert payload["model"].keys() == state.keys()
    assert all(torch.equal(payload["model"][k], state[k]) for k in state)
    assert getattr(model.model.args, "class_names", None) in (None, CLASSES)  # live args untouched in kind


def test_bundle_reloads_and_predicts_identically(model, tmp_path):
    images = write_images(tmp_path / "images", 2)
    out = export_for_roboflow(model, tmp_path / "bundle")
    report = verify_bundle(model, out, images=images)
    assert report["status"] == "passed", report
    assert report["max_abs_diff"] == 0.0 and report["reloaded_class_names_match"]
    assert json.loads((out / "verification.json").read_text())["status"] == "passed"
    reloaded = type(model).from_checkpoint(out / "weights.pt")
    first = sorted(images.iterdir())[0]
    a = model.predict(str(first), threshold=0.0, include_source_image=False)
    b = reloaded.predict(str(first), threshold=0.0, include_source_image=False)
    assert np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.confidence, b.confidence)
    assert list(a.data["class_name"]) == list(b.data["class_name"])


def test_bundle_overwrites_existing_files(model, tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "class_names.txt").write_text("stale")
    export_for_roboflow(model, out)
    assert (out / "class_names.txt").read_text() == "cat\ndog\nbird"


def test_deploy_without_key_fails_clearly(model, monkeypatch):
    monkeypatch.delenv("ROBOFLOW_API_KEY", raising=False)
    with pytest.raises(ValueError, match="ROBOFLOW_API_KEY"):
        deploy_to_roboflow(model, "ws", "proj", 1)


def test_deploy_custom_architecture_needs_size(model, monkeypatch):
    monkeypatch.setenv("ROBOFLOW_API_KEY", "not-a-real-key")
    monkeypatch.setattr(model, "size", None)
    with pytest.raises(ValueError, match="Must set size"):
        deploy_to_roboflow(model, "ws", "proj", 1)


def test_cli_writes_bundle(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt.pth"
    rf = RFDETRNano(pretrain_weights=None, num_classes=2)
    rf.model.class_names = ["a", "b"]
    rf.save_checkpoint(ckpt)
    code = export_cli(
        ["export", "--weights", str(ckpt), "--format", "roboflow", "--output", str(tmp_path / "o")]
    )
    assert code == 0
    assert (tmp_path / "o" / "class_names.txt").read_text() == "a\nb"
