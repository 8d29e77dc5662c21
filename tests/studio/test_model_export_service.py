"""The Export page's service on a real tiny trained run: ONNX / TFLite / Roboflow bundle exports, each
verified on the run's validation split, zipped with a working usage snippet, recorded in the history;
failures leave readable rows; the Roboflow key never reaches the disk or the logs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from rfdetr_core import RFDETR
from studio.errors import StudioError
from studio.services.deploy import history as hist
from studio.services.deploy import model_export as me
from studio.services.deploy import roboflow
from studio.services.review.predictions import recorded_map
from studio.store import Category, Image, Run
from studio.store.models import Export
from tests.support.review_fixtures import best_checkpoint, copy_project


@pytest.fixture(scope="module")
def exported(finished_run_template, tmp_path_factory):
    """One project copy with an ONNX and a Roboflow-bundle export of the finished run (read-only for tests)."""
    project, run_id = finished_run_template
    store = copy_project(project, tmp_path_factory.mktemp("model_export") / "project")
    seen: list[tuple[float, str]] = []
    onnx = me.export_run(store, run_id, "onnx", progress=lambda f, m: seen.append((f, m)))
    bundle = me.export_run(store, run_id, "roboflow", max_verify_images=4)
    yield store, run_id, onnx, bundle, seen
    store.close()


def _row(store, export_id: int) -> Export:
    with store.session(readonly=True) as s:
        return s.get(Export, export_id)


def test_onnx_export_is_verified_and_recorded(exported):
    store, run_id, onnx, _, seen = exported
    assert me.exportable_runs(store)[0][1] == run_id
    row = _row(store, onnx.export_id)
    assert (row.kind, row.status, row.error, row.run_id) == ("onnx", "done", None, run_id)
    d = row.details
    assert d["verification"] == "passed" and d["failures"] == []
    assert d["map_images"] == 10 and d["detections_matched"] == d["detections_compared"] > 0
    assert d["map_pytorch"] > 0 and abs(d["map_pytorch"] - d["map_exported"]) < 1e-3  # fp32: same accuracy
    # the PyTorch side is the run's model as trained (its resolution, all 10 valid images): the same mAP
    # the run reported for its validation
    assert d["map_pytorch"] == pytest.approx(recorded_map(store, run_id)["mAP_50_95"], abs=1e-6)
    assert d["latency_pytorch_ms"] > 0 and d["latency_exported_ms"] > 0 and d["latency_ratio"] > 0
    assert d["max_abs_diff"] < 1e-3 and d["size_mb"] > 1 and d["export_seconds"] > 0
    assert "runs/" in d["images"] and "/valid" in d["images"]  # the run's own frozen validation split
    assert row.path == f"exports/{onnx.export_id}_onnx" and (store.path / d["zip"]) == onnx.zip_path
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 4
    assert any("Verifying" in m for _, m in seen) and any("zip" in m for _, m in seen)


def test_onnx_zip_contents(exported):
    store, run_id, onnx, _, _ = exported
    with zipfile.ZipFile(onnx.zip_path) as zf:
        assert sorted(zf.namelist()) == [
            "README.md",
            "class_names.txt",
            "model.onnx",
            "usage.py",
            "verification.json",
        ]
        names = zf.read("class_names.txt").decode().splitlines()
        report = json.loads(zf.read("verification.json"))
        readme = zf.read("README.md").decode()
        model_bytes = zf.read("model.onnx")
    model = RFDETR.from_checkpoint(best_checkpoint(store, run_id))
    with store.session(readonly=True) as s:
        cats = s.execute(select(Category.id, Category.name, Category.parent_id)).all()
    project_classes = {name for cid, name, _ in cats if cid not in {p for *_, p in cats}}  # leaves only
    assert names == list(model.class_names) and set(names) == project_classes
    assert report["status"] == "passed" and report["map"]["images"] == 10
    assert (
        "dets" in readme and "labels" in readme and "WARNING" not in readme.upper().split("VERIFICATION")[0]
    )
    assert model_bytes == onnx.model_files[0].read_bytes()


#: The layout verification.json always had (keys in this order; nested sections too): the typed report
#: must write the same file, so consumers of the zip see no change.
ONNX_REPORT_KEYS = [
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
    "report_path",
    "export_seconds",
]
BUNDLE_REPORT_KEYS = [
    "artefact",
    "kind",
    "status",
    "images",
    "files",
    "payload_keys",
    "class_names_txt_match",
    "args_class_names_match",
    "reloaded_class_names_match",
    "max_abs_diff",
    "failures",
    "map",
    "latency_ms",
    "export_seconds",
    "report_path",
]
DETAILS_KEYS = [
    "format",
    "run",
    "verification",
    "failures",
    "warnings",
    "max_abs_diff",
    "detections_matched",
    "detections_compared",
    "map_pytorch",
    "map_exported",
    "map50_pytorch",
    "map50_exported",
    "map_images",
    "latency_pytorch_ms",
    "latency_exported_ms",
    "latency_ratio",
    "export_seconds",
    "verify_seconds",
    "images",
    "model_files",
    "zip",
    "size_mb",
]


def test_zip_report_keeps_its_layout_and_round_trips(exported):
    from rfdetr_core.export.report import BundleReport, VerificationReport

    store, _, onnx, bundle, _ = exported
    for result, cls, keys, map_keys in (
        (onnx, VerificationReport, ONNX_REPORT_KEYS, ["pytorch", "artefact", "images"]),
        (bundle, BundleReport, BUNDLE_REPORT_KEYS, ["images", "pytorch", "artefact"]),
    ):
        with zipfile.ZipFile(result.zip_path) as zf:
            text = zf.read("verification.json").decode()
        data = json.loads(text)
        assert list(data) == keys and list(data["map"]) == map_keys
        assert list(data["latency_ms"]) == ["threads", "pytorch", "artefact", "ratio"]
        assert list(data["map"]["pytorch"]) == ["map50_95", "map50"]
        assert cls.from_json(text).to_json() == text == result.report.to_json()
        assert Path(data["report_path"]).read_text() == text  # the copy next to the model file
        assert list(_row(store, result.export_id).details) == DETAILS_KEYS == list(result.details)
    onnx_data = json.loads(onnx.report.to_json())
    assert list(onnx_data["detections"]) == [
        "top_k",
        "compared",
        "matched",
        "match_rate",
        "max_box_error_px",
        "max_score_error",
    ]
    assert list(onnx_data["max_abs_diff"]) == ["boxes", "logits", "scores"]
    assert onnx.details["detections_matched"] == onnx.report.detections.matched
    assert bundle.details["detections_matched"] is None and bundle.details["warnings"] == []


def test_onnx_usage_snippet_runs_and_matches_pytorch(exported, tmp_path):
    store, run_id, onnx, _, _ = exported
    with zipfile.ZipFile(onnx.zip_path) as zf:
        zf.extractall(tmp_path / "bundle")
    valid = store.path / "runs" / str(run_id) / "dataset" / "valid"
    image = sorted(valid.glob("*.jpg"))[0] if list(valid.glob("*.jpg")) else sorted(valid.glob("*.png"))[0]
    proc = subprocess.run(
        [sys.executable, "usage.py", str(image), "0.0"],
        cwd=tmp_path / "bundle",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    count = int(lines[0].split()[0])
    assert count > 0 and len(lines) == count + 1
    parsed = [ln.split() for ln in lines[1:6]]
    model = RFDETR.from_checkpoint(best_checkpoint(store, run_id))
    det = model.predict(str(image), threshold=0.0, include_source_image=False)
    order = np.argsort(-det.confidence, kind="stable")[:5]
    for (name, score, *box), i in zip(parsed, order, strict=True):
        assert name == det.data["class_name"][i]
        assert abs(float(score) - float(det.confidence[i])) < 1e-3
        assert np.abs(np.array(box, dtype=float) - det.xyxy[i]).max() < 0.5  # printed with one decimal


def test_roboflow_bundle_zip_reloads_and_predicts(exported, tmp_path):
    store, run_id, _, bundle, _ = exported
    row = _row(store, bundle.export_id)
    assert (row.kind, row.status) == ("roboflow", "done")
    assert row.details["max_abs_diff"] == 0.0 and row.details["map_pytorch"] == row.details["map_exported"]
    with zipfile.ZipFile(bundle.zip_path) as zf:
        assert {"weights.pt", "class_names.txt", "verification.json", "README.md", "usage.py"} == set(
            zf.namelist()
        )
        zf.extractall(tmp_path / "zip")
    from rfdetr_core.export import verify_bundle

    model = RFDETR.from_checkpoint(best_checkpoint(store, run_id))
    valid = store.path / "runs" / str(run_id) / "dataset" / "valid"
    report = verify_bundle(model, tmp_path / "zip", images=valid, max_images=2, save=False)
    assert report["status"] == "passed" and report["max_abs_diff"] == 0.0
    assert "from_checkpoint" in (tmp_path / "zip" / "usage.py").read_text()


def test_history_lists_newest_first(exported):
    store, run_id, onnx, bundle, _ = exported
    rows = hist.list_exports(store)
    assert [r.id for r in rows] == [bundle.export_id, onnx.export_id]
    assert rows[1].format_label == me.FORMATS["onnx"] and rows[1].zip_path == onnx.zip_path
    table = hist.export_table(store)
    assert len(table) == 2 and all(len(r) == len(hist.TABLE_HEADERS) for r in table)
    onnx_row = table[1]
    assert onnx_row[0] == onnx.export_id and onnx_row[3] == "ONNX (onnxruntime)" and onnx_row[4] == "done"
    assert onnx_row[5] == round(onnx.details["map_pytorch"], 3) and onnx_row[6] == round(
        onnx.details["map_exported"], 3
    )
    assert onnx_row[7] > 0 and onnx_row[8] > 0 and onnx_row[9] > 1 and onnx_row[10] == str(onnx.zip_path)


def test_delete_export_removes_row_and_files(finished_run_template, tmp_path):
    project, run_id = finished_run_template
    store = copy_project(project, tmp_path / "project")
    try:
        first = me.export_run(store, run_id, "roboflow", max_verify_images=2)
        second = me.export_run(store, run_id, "roboflow", max_verify_images=2)
        hist.delete_export(store, first.export_id)
        assert [r.id for r in hist.list_exports(store)] == [second.export_id]
        assert not first.folder.exists() and not first.zip_path.exists()
        assert second.folder.is_dir() and second.zip_path.is_file()
        with pytest.raises(StudioError, match="does not exist"):
            hist.delete_export(store, first.export_id)
    finally:
        store.close()


def test_run_without_checkpoint_leaves_no_row(finished_run_template, tmp_path):
    project, run_id = finished_run_template
    store = copy_project(project, tmp_path / "project")
    try:
        with store.session() as s:
            s.get(Run, run_id).best_checkpoint = None
        assert me.exportable_runs(store) == []
        with pytest.raises(StudioError, match="no best checkpoint"):
            me.export_run(store, run_id, "onnx")
        with pytest.raises(StudioError, match="Unknown export format"):
            me.export_run(store, run_id, "coreml")
        with store.session(readonly=True) as s:
            assert list(s.scalars(select(Export))) == []
    finally:
        store.close()


def test_corrupt_checkpoint_gives_failed_row_with_readable_error(finished_run_template, tmp_path):
    project, run_id = finished_run_template
    store = copy_project(project, tmp_path / "project")
    try:
        best_checkpoint(store, run_id).write_bytes(b"this is not a checkpoint" * 10)
        with pytest.raises(StudioError, match="Loading the checkpoint failed") as info:
            me.export_run(store, run_id, "onnx")
        rows = hist.list_exports(store)
        assert len(rows) == 1 and rows[0].status == "failed" and rows[0].error == str(info.value)
        assert (
            "Traceback" not in rows[0].error and 'File "' not in rows[0].error and "\n" not in rows[0].error
        )
        assert hist.export_table(store)[0][4] == "failed"
    finally:
        store.close()


def test_deploy_with_fake_key_fails_without_leaking_it(finished_run_template, tmp_path, caplog):
    project, run_id = finished_run_template
    store = copy_project(project, tmp_path / "project")
    key = "rf_TESTKEY_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:20]
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(StudioError, match="API key"):
            roboflow.deploy_run(store, run_id, "  ", "ws", "proj", 1)
        with pytest.raises(StudioError, match="whole number"):
            roboflow.deploy_run(store, run_id, key, "ws", "proj", "v2")
        with pytest.raises(StudioError, match="workspace"):
            roboflow.deploy_run(store, run_id, key, "", "proj", 1)
        with pytest.raises(StudioError, match="Deploy to Roboflow failed") as info:
            roboflow.deploy_run(store, run_id, key, "my-ws", "my-proj", "3")  # no network here
        assert key not in str(info.value) and info.value.__cause__ is None
        rows = hist.list_exports(store)
        assert len(rows) == 1 and rows[0].kind == hist.DEPLOY_KIND and rows[0].status == "failed"
        assert rows[0].details["workspace"] == "my-ws" and rows[0].details["version"] == 3
        assert key not in (rows[0].error or "") and "Roboflow deploy" in hist.export_table(store)[0][3]
    finally:
        store.close()
    assert key not in caplog.text
    leaked = [p for p in store.path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert leaked == []


class _InsideDeploy(logging.Handler):
    """Runs in the deploying thread on the SDK's first HTTP log record (inside the redaction window): it
    prints, writes to stderr and warns with the key there, and lets a second thread print meanwhile."""

    def __init__(self, key: str, go: threading.Event, done: threading.Event) -> None:
        super().__init__(logging.DEBUG)
        self.key, self.go, self.done, self.fired = key, go, done, False

    def emit(self, record: logging.LogRecord) -> None:
        if self.fired:
            return
        self.fired = True
        print(f"sdk says {self.key}")
        print(f"sdk complains {self.key}", file=sys.stderr)
        warnings.warn(f"sdk warns {self.key}", UserWarning, stacklevel=1)
        self.go.set()
        self.done.wait(30)


def test_deploy_leaves_other_threads_output_alone_and_masks_its_own(
    finished_run_template, tmp_path, caplog, capsys, recwarn
):
    project, run_id = finished_run_template
    store = copy_project(project, tmp_path / "project")
    key = "rf_TESTKEY_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:20]
    caplog.set_level(logging.DEBUG)
    go, done = threading.Event(), threading.Event()

    def other_thread() -> None:
        go.wait(120)
        for i in range(20):
            print(f"training log line {i}")
        done.set()

    hook = _InsideDeploy(key, go, done)
    logging.getLogger("urllib3").addHandler(hook)
    printer = threading.Thread(target=other_thread)
    printer.start()
    try:
        with pytest.raises(StudioError, match="Deploy to Roboflow failed"):
            roboflow.deploy_run(store, run_id, key, "my-ws", "my-proj", 3)  # no network here
    finally:
        logging.getLogger("urllib3").removeHandler(hook)
        go.set()
        printer.join(30)
        store.close()
    out, err = capsys.readouterr()
    assert hook.fired and done.is_set()  # the second thread printed while the deploy was running
    assert [ln for ln in out.splitlines() if ln.startswith("training log")] == [
        f"training log line {i}" for i in range(20)
    ]
    assert "sdk says" not in out and "sdk complains" not in err  # the deploy's own output goes to the log
    assert "sdk says ***" in caplog.text and "sdk complains ***" in caplog.text
    assert [str(w.message) for w in recwarn if "sdk warns" in str(w.message)] == ["sdk warns ***"]
    assert key not in out + err + caplog.text + "".join(str(w.message) for w in recwarn)
    leaked = [p for p in store.path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert leaked == []


def test_calibration_images_come_from_the_train_split(finished_run_template, tmp_path):
    project, _ = finished_run_template
    store = copy_project(project, tmp_path / "project")
    try:
        folder = me.calibration_folder(store, tmp_path / "calib")
        with store.session(readonly=True) as s:
            images = list(s.scalars(select(Image)))
        digest = {im.split: set() for im in images}
        for im in images:
            digest[im.split].add(hashlib.sha256(store.image_path(im).read_bytes()).hexdigest())
        got = {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
        assert got == digest["train"] and not got & digest["valid"]
        assert len(list(me.calibration_folder(store, tmp_path / "few", max_images=3).iterdir())) == 3
    finally:
        store.close()


@pytest.mark.slow
def test_tflite_fp32_export_through_the_service(finished_run_template, tmp_path):
    """One real onnx2tf conversion of the tiny run (~1.5 min here), verified in LiteRT on the valid split."""
    project, run_id = finished_run_template
    store = copy_project(project, tmp_path / "project")
    try:
        result = me.export_run(store, run_id, "tflite_fp32", max_verify_images=4)
    finally:
        store.close()
    report = result.report
    assert result.model_files[0].name.endswith("_fp32.tflite")
    assert report.kind == "tflite-fp32" and report.runtime == "ai_edge_litert"
    assert (result.status, report.status, report.failures) == ("done", "passed", [])
    d = result.details
    assert d["map_images"] == 4 and abs(d["map_pytorch"] - d["map_exported"]) < 0.02
    assert d["latency_pytorch_ms"] > 0 and d["latency_exported_ms"] > 0
    assert report.detections.match_rate >= 0.9
    with zipfile.ZipFile(result.zip_path) as zf:
        assert sorted(zf.namelist()) == [
            "README.md",
            "class_names.txt",
            "model_fp32.tflite",
            "usage.py",
            "verification.json",
        ]
        usage = zf.read("usage.py").decode()
    assert "ai_edge_litert" in usage and "NHWC" in usage
    assert not (result.folder / "_calibration").exists()  # calibration copies are not shipped


def test_bundle_usage_snippet_runs_with_our_core(exported, tmp_path):
    """The bundle's usage.py loads weights.pt with rfdetr_core (this repository on PYTHONPATH) and prints
    the same top detection as the run's model."""
    store, run_id, _, bundle, _ = exported
    with zipfile.ZipFile(bundle.zip_path) as zf:
        zf.extractall(tmp_path / "bundle")
    image = sorted((store.path / "runs" / str(run_id) / "dataset" / "valid").glob("*.png"))[0]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run(
        [sys.executable, "usage.py", str(image), "0.0"],
        cwd=tmp_path / "bundle",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    det = RFDETR.from_checkpoint(best_checkpoint(store, run_id)).predict(str(image), threshold=0.0)
    assert int(lines[0].split()[0]) == len(det) > 0
    name, score, *_ = lines[1].split()
    best = int(np.argmax(det.confidence))
    assert (name, float(score)) == (
        det.data["class_name"][best],
        pytest.approx(float(det.confidence[best]), abs=1e-4),
    )
