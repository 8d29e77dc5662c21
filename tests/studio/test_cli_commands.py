"""``rfdetr-studio <command>`` end to end: each subcommand in a subprocess, on a real small project.

What is checked is what a script relies on: the JSON on stdout, the exit code (0 ok, 1 user error with
its message on stderr, 2 usage), progress on stderr only, and that the command's effect is the page's
(the project, run or export is there for the pages' services to read afterwards).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from studio.services.deploy.history import find_export
from studio.services.projects.catalog import list_projects, open_store
from studio.services.train import augment
from studio.services.train import runs as run_service
from tests.support import datagen
from tests.support.review_fixtures import copy_project, train_finished_run
from tests.support.studio_run_fixtures import TINY_RUN, make_project

REPO = Path(__file__).resolve().parents[2]


def studio(
    root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``launch.py <args> --projects-dir root`` as a user types it (``rfdetr-studio`` is the same main)."""
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "launch.py"), *args, "--projects-dir", str(root)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok_json(proc: subprocess.CompletedProcess) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_projects_import_export_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    truth = datagen.coco_roboflow(tmp_path / "ds", {"train": 3, "valid": 2, "test": 1})
    n_boxes = sum(len(v) for v in truth.values())

    created = ok_json(studio(root, "projects", "create", "My Widgets", "--json"))
    assert created["slug"] == "my-widgets" and created["images"] == 0
    assert studio(root, "projects", "create", "my widgets").returncode == 1  # same folder: refused

    imported = studio(root, "import", "my-widgets", str(tmp_path / "ds"), "--json")
    report = ok_json(imported)
    assert report["format"].startswith("coco") and report["counts"]["images_imported"] == 6
    assert "import" in imported.stderr  # the progress bar, on stderr

    listed = ok_json(studio(root, "projects", "list", "--json"))
    assert [(p["slug"], p["images"], p["boxes"], p["classes"]) for p in listed] == [
        ("my-widgets", 6, n_boxes, 5)
    ]
    assert [(p.slug, p.n_images, p.n_boxes) for p in list_projects(root)] == [("my-widgets", 6, n_boxes)]

    coco = ok_json(
        studio(root, "export", "My Widgets", "--format", "coco", str(tmp_path / "out" / "c.zip"), "--json")
    )
    with zipfile.ZipFile(coco["path"]) as zf:
        docs = [json.loads(zf.read(n)) for n in zf.namelist() if n.endswith("_annotations.coco.json")]
    assert sum(len(d["annotations"]) for d in docs) == n_boxes and coco["bytes"] > 0
    (tmp_path / "yolo").mkdir()
    yolo = ok_json(studio(root, "export", "my-widgets", "--format", "yolo", str(tmp_path / "yolo"), "--json"))
    assert yolo["path"] == str((tmp_path / "yolo" / "my-widgets-yolo.zip").resolve())
    with zipfile.ZipFile(yolo["path"]) as zf:
        names = yaml.safe_load(zf.read("data.yaml"))["names"]
    assert "circle" in (names.values() if isinstance(names, dict) else names)

    voc = ok_json(studio(root, "export", "my-widgets", "--format", "voc", str(tmp_path / "v"), "--json"))
    with zipfile.ZipFile(voc["path"]) as zf:
        assert (
            voc["path"].endswith("v.zip")
            and sum(n.startswith("Annotations/") and n.endswith(".xml") for n in zf.namelist()) == 6
        )

    missing = studio(root, "export", "nope", "--format", "coco", str(tmp_path / "x.zip"), "--json")
    assert missing.returncode == 1 and "No project 'nope'" in missing.stderr
    assert "nope" in json.loads(missing.stdout)["error"]
    bad = studio(root, "import", "my-widgets", str(tmp_path / "does-not-exist"))
    assert bad.returncode == 1 and "error" in bad.stderr and "Traceback" not in bad.stderr
    assert studio(root, "export", "my-widgets", "--format", "pdf", "x.zip").returncode == 2
    assert studio(root, "review", "my-widgets").returncode == 2  # --run is required

    refused = studio(root, "projects", "delete", "my-widgets")
    assert refused.returncode == 1 and "--yes" in refused.stderr and list_projects(root)
    assert ok_json(studio(root, "projects", "delete", "my-widgets", "--yes", "--json")) == {
        "deleted": "my-widgets"
    }
    assert list_projects(root) == [] and ok_json(studio(root, "projects", "list", "--json")) == []


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A finished run of 2 epochs on 4 + 4 images: the commands need a finished run with a best
    checkpoint, not a good one (the session's ``finished_run_template`` trains 40 epochs)."""
    return train_finished_run(tmp_path_factory.mktemp("short_run"), n=4, epochs=2)


@pytest.mark.slow
def test_runs_review_and_export_model_of_a_finished_run(short_run: tuple, tmp_path: Path) -> None:
    template, run_id = short_run
    root = tmp_path / "projects"
    copy_project(template, root / "tiny").close()

    (run,) = ok_json(studio(root, "runs", "tiny", "--json"))
    assert (run["id"], run["status"], run["status_label"]) == (run_id, "completed", "finished")
    assert run["best_map50_95"] is not None and run["epochs_done"] == run["total_epochs"]

    review = ok_json(studio(root, "review", "tiny", "--run", str(run_id), "--json"))
    assert review["predictions"]["n_images"] > 0 and review["conf_is_f1_optimal"]
    assert review["mAP_50_95"] == pytest.approx(review["recorded"]["mAP_50_95"], abs=0.01)
    row = review["per_class"][0]
    assert {"name", "AP_50_95", "AP_50", "precision", "recall", "tp", "fp", "fn", "num_gt"} <= set(row)
    assert sum(r["num_gt"] for r in review["per_class"]) == review["totals"]["num_gt"] > 0
    again = ok_json(studio(root, "review", "tiny", "--run", str(run_id), "--conf", "0.0", "--json"))
    assert again["predictions"]["created_at"] == review["predictions"]["created_at"]  # reused, not recomputed
    assert again["conf"] == 0.0 and again["totals"]["recall"] >= review["totals"]["recall"]
    assert studio(root, "review", "tiny", "--run", "999").returncode == 1

    out = tmp_path / "model.zip"
    exported = ok_json(
        studio(root, "export-model", "tiny", "--run", str(run_id), "--format", "onnx", str(out), "--json")
    )
    assert exported["status"] == "done" and exported["path"] == str(out.resolve())
    with zipfile.ZipFile(out) as zf:
        assert "model.onnx" in zf.namelist()
    with open_store(root, "tiny") as store:  # the Export page lists it
        assert find_export(store, exported["export_id"]) is not None


@pytest.mark.slow
def test_train_wait_makes_a_run_the_train_page_shows(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    store = make_project(root, n=4)
    augment.save_settings(store, TINY_RUN["augment"])
    store.close()
    (root / "project").rename(root / "tiny")
    overrides = {"model_overrides": TINY_RUN["model_overrides"], "num_workers": 0}
    proc = studio(
        root,
        *("train", "tiny", "--size", "nano", "--epochs", "1", "--resolution", "64", "--batch", "2"),
        *("--pretrained", "scratch", "--wait", "--json"),
        env={run_service.OVERRIDES_ENV: json.dumps(overrides)},
    )
    doc = ok_json(proc)
    assert (doc["status"], doc["epochs_done"], doc["model_size"]) == ("completed", 1, "Nano")
    assert doc["settings"]["resolution"] == 64 and doc["settings"]["pretrained"] == "scratch"
    assert "run #" in proc.stderr  # the progress bar followed it
    with open_store(root, "tiny") as store:
        (info,) = run_service.list_runs(store)
        assert info.id == doc["id"] and info.status == "completed"
        assert run_service.load_train_settings(store)["epochs"] == 1  # the page now proposes these

    bad = studio(root, "train", "tiny", "--size", "Huge", "--pretrained", "scratch")
    assert bad.returncode == 1 and "Unknown model size" in bad.stderr


def test_bare_command_still_launches_and_the_parser_stays_light() -> None:
    """No command = the app (launch options as before); ``--projects-dir`` goes before or after the
    command; building the parser imports no service (``--help`` and the app's start stay fast)."""
    from studio import cli

    bare = cli.build_parser().parse_args(["--port", "9000", "--no-demo"])
    assert (bare.command, bare.port, bare.no_demo, bare.projects_dir) == (None, 9000, True, None)
    before = cli.build_parser().parse_args(["--projects-dir", "/a", "runs", "p"])
    after = cli.build_parser().parse_args(["runs", "p", "--projects-dir", "/b", "--json"])
    assert (str(before.projects_dir), before.project, before.json) == ("/a", "p", False)
    assert (str(after.projects_dir), after.json) == ("/b", True)
    probe = "import sys, studio.cli as c; c.build_parser(); print(sorted({'sqlalchemy', 'torch', 'gradio'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
