"""Export a trained run as a deployable, verified bundle (the Export page's service).

Why it looks like this:
- Every export is checked right after it is written (the core's ``verify_export`` / ``verify_bundle``)
  on the run's own validation split — the labels it was validated on while training — so the page can
  show PyTorch and exported mAP and latency side by side and a broken export is caught before it ships.
- A failed verification is not an exception: the row is recorded as ``failed`` with the reasons in
  ``error`` and the zip is still written, with the report inside and a warning at the top of its
  README, so the user can see *why* (and judge, e.g., a small fp16 drift). Anything that stops the
  export itself (unreadable checkpoint, converter error) leaves a ``failed`` row with a one-line reason
  (never traceback text) and raises :class:`StudioError`.

The history (rows, table, deletion) is :mod:`.history`, the images :mod:`.export_images`, what the
page shows of a report :mod:`.verification`, the Roboflow upload :mod:`.roboflow`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rfdetr_core.export.report import BundleReport, Latency, MapComparison, MapScores, VerificationReport
from studio.errors import StudioError
from studio.services.deploy import verification
from studio.services.deploy.export_images import CALIBRATION_IMAGES, calibration_folder, validation_folder
from studio.services.deploy.history import EXPORTS_DIR, FORMATS, new_row, readable_error, update_row
from studio.services.deploy.snippets import snippets
from studio.services.train import checkpoints
from studio.store import ProjectStore

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
Report = VerificationReport | BundleReport
#: Model file name inside the zip, per format (the bundle keeps ``weights.pt``).
ZIP_NAMES = {
    "onnx": "model.onnx",
    "tflite_fp32": "model_fp32.tflite",
    "tflite_fp16": "model_fp16.tflite",
    "tflite_int8": "model_int8.tflite",
}


@dataclass
class ExportResult:
    """What one :func:`export_run` produced. ``status`` is ``done`` or ``failed`` (verification)."""

    export_id: int
    run_id: int
    fmt: str
    status: str
    folder: Path
    zip_path: Path
    model_files: list[Path]
    report: Report
    details: dict[str, Any]
    summary: str
    error: str | None = None


@dataclass(frozen=True)
class RunFacts:
    """The run an export starts from: its name, best checkpoint and frozen dataset snapshot."""

    name: str
    checkpoint: Path
    snapshot: Path | None


# -- choosing a run -------------------------------------------------------------------------------
def exportable_runs(store: ProjectStore) -> list[tuple[str, int]]:
    """``(label, run id)`` of runs whose best checkpoint exists on disk, newest first (dropdown choices)."""
    out = []
    for c in checkpoints.runs_with_checkpoint(store, ("best",)):
        score = c.map_50_95
        out.append((f"{c.run_name}" + (f" · mAP@50:95 {score:.3f}" if score is not None else ""), c.run_id))
    return out


def run_facts(store: ProjectStore, run_id: int) -> RunFacts:
    """The run's name, best checkpoint and snapshot folder, or a StudioError."""
    run, best = checkpoints.run_checkpoint(store, run_id, "best")
    if not best.exists:
        raise StudioError(
            f"Run '{run.name}' has no best checkpoint to export yet: let it finish at least one validated epoch."
        )
    snapshot = checkpoints.stored_path(store, (run.dataset_snapshot or {}).get("path"))
    return RunFacts(run.name, best.path, snapshot)


def load_model(ckpt: Path) -> Any:
    """The run's model; a file that is not a checkpoint raises the loader's own error (for the row)."""
    try:
        return checkpoints.load_run_model(ckpt)
    except checkpoints.CheckpointLoadError as exc:
        raise (exc.__cause__ or exc) from None


# -- exporting ------------------------------------------------------------------------------------
def export_run(
    store: ProjectStore, run_id: int, fmt: str, progress: Progress | None = None, max_verify_images: int = 16
) -> ExportResult:
    """Export run *run_id*'s best checkpoint as *fmt* (a key of :data:`FORMATS`), verify it, zip it.

    Writes ``<project>/exports/<export id>_<fmt>/`` and ``<…>.zip`` next to it and records an
    ``Export`` row (running → done/failed). Raises :class:`StudioError` when the export cannot be made.
    """
    if fmt not in FORMATS:
        raise StudioError(f"Unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}.")
    report_progress = progress or (lambda _f, _m: None)
    facts = run_facts(store, run_id)
    export_id = new_row(store, run_id, fmt, {"format": fmt, "run": facts.name})
    folder = store.path / EXPORTS_DIR / f"{export_id}_{fmt}"
    update_row(store, export_id, path=str(folder.relative_to(store.path)))
    job = _Job(store, fmt, facts, folder, max_verify_images, report_progress)
    try:
        result = job.run()
    except Exception as exc:
        error = f"{job.stage} failed: {readable_error(exc)}"
        update_row(store, export_id, status="failed", error=error)
        logger.warning("Export %s of run %s failed: %s", export_id, run_id, error)
        raise StudioError(error) from exc
    files, report, details, status, error = result
    details["size_mb"] = round(sum(p.stat().st_size for p in files) / 2**20, 2)
    update_row(store, export_id, status=status, error=error, details=details)
    summary = verification.summary(report)
    report_progress(1.0, summary.splitlines()[0])
    zip_path = folder.with_suffix(".zip")
    return ExportResult(
        export_id, int(run_id), fmt, status, folder, zip_path, files, report, details, summary, error
    )


@dataclass
class _Job:
    """One export in stages; ``stage`` names the one running, for the failure message."""

    store: ProjectStore
    fmt: str
    facts: RunFacts
    folder: Path
    max_images: int
    progress: Progress
    stage: str = "Loading the checkpoint"

    def run(self) -> tuple[list[Path], Report, dict[str, Any], str, str | None]:
        folder, zip_path = self.folder, self.folder.with_suffix(".zip")
        shutil.rmtree(folder, ignore_errors=True)  # a leftover of an earlier export with a reused id
        zip_path.unlink(missing_ok=True)
        folder.mkdir(parents=True)
        self.progress(0.02, f"{self.stage} of '{self.facts.name}'…")
        rf = load_model(self.facts.checkpoint)
        self.stage = "Preparing the validation images"
        valid = validation_folder(self.store, self.facts.snapshot, folder / "_validation")
        self.stage = f"Exporting to {FORMATS[self.fmt]}"
        self.progress(0.1, f"{self.stage}…")
        files, report, seconds = _export_and_verify(self, rf, valid)
        self.stage = "Writing the zip"
        self.progress(0.9, "Packing the zip (model, class names, report, usage snippet)…")
        details = verification.row_details(
            report, self.fmt, self.facts.name, seconds, files, zip_path, self.store
        )
        status = "done" if report.passed else "failed"
        error = None if status == "done" else "Verification failed: " + "; ".join(report.failures)
        _write_zip(zip_path, self.fmt, rf, files, report, status)
        shutil.rmtree(folder / "_validation", ignore_errors=True)
        return files, report, details, status, error


def _export_and_verify(job: _Job, rf: Any, valid: Path | None) -> tuple[list[Path], Report, dict]:
    """Write the artefact(s), verify them; return (files to ship, report, {"export_s", "verify_s"})."""
    start = time.perf_counter()
    if job.fmt == "roboflow":
        from rfdetr_core.export import export_for_roboflow

        export_for_roboflow(rf, job.folder)
        exported = time.perf_counter()
        job.progress(
            0.5, f"Reloading the bundle and comparing it with the run's model on {job.max_images} images…"
        )
        report: Report = _verify_bundle(rf, job.folder, valid, job.max_images)
        files = [job.folder / "weights.pt", job.folder / "class_names.txt"]
    else:
        path = _export_artefact(job, rf, valid)
        exported = time.perf_counter()
        report = _verify_artefact(job, rf, path, valid)
        files = [path]
    seconds = {"export_s": round(exported - start, 2), "verify_s": round(time.perf_counter() - exported, 2)}
    report.export_seconds = seconds["export_s"]
    _save_report(job.folder, files[0], report)
    return files, report, seconds


def _export_artefact(job: _Job, rf: Any, valid: Path | None) -> Path:
    """The ONNX or TFLite file (TFLite calibrated on train images), not yet verified."""
    from rfdetr_core.export import export_model

    extra: dict[str, Any] = {"format": "onnx"}
    if job.fmt.startswith("tflite"):
        calib = calibration_folder(job.store, job.folder / "_calibration", snapshot=job.facts.snapshot)
        extra = {
            "format": "tflite",
            "quantization": job.fmt.split("_")[1],
            "calibration_data": calib,
            "max_images": CALIBRATION_IMAGES,
        }
    path = export_model(
        rf, job.folder, infer_dir=valid, verify=False, progress=lambda m: job.progress(0.2, m), **extra
    )
    shutil.rmtree(job.folder / "_calibration", ignore_errors=True)
    return path


def _verify_artefact(job: _Job, rf: Any, path: Path, valid: Path | None) -> VerificationReport:
    from rfdetr_core.export import source_from_rfdetr, verify_export

    job.progress(
        0.5, f"Verifying on up to {job.max_images} validation images (PyTorch vs {FORMATS[job.fmt]})…"
    )
    images = None if valid is not None else job.store.images_dir
    return verify_export(
        source_from_rfdetr(rf), path, validation=valid, images=images, max_images=job.max_images
    )


def _save_report(folder: Path, model_file: Path, report: Report) -> None:
    name = "verification.json" if model_file.suffix == ".pt" else model_file.name + ".verification.json"
    report.report_path = str(folder / name)
    (folder / name).write_text(report.to_json())


_BUNDLE_CHECKS = (
    ("class_names_txt_match", "class_names.txt differs from the model's classes"),
    ("args_class_names_match", "weights.pt args carry other class names"),
    ("reloaded_class_names_match", "the reloaded model has other class names"),
)


def _verify_bundle(rf: Any, folder: Path, valid: Path | None, max_images: int) -> BundleReport:
    """``verify_bundle`` (reload → identical outputs) plus mAP/latency of both models on the valid split."""
    from rfdetr_core.export import verify_bundle

    report = BundleReport.from_dict(
        verify_bundle(rf, folder, images=valid, max_images=min(4, max_images), save=False)
    )
    failures = [text for key, text in _BUNDLE_CHECKS if not getattr(report, key)]
    if report.max_abs_diff != 0.0:
        failures.append(f"the reloaded weights predict differently (max |diff| {report.max_abs_diff:.3g})")
    report.failures = failures
    if valid is not None:
        report.map, report.latency_ms = _bundle_map_and_latency(rf, folder, valid, max_images)
    return report


def _bundle_map_and_latency(
    rf: Any, folder: Path, valid: Path, max_images: int
) -> tuple[MapComparison, Latency]:
    """mAP and median latency of the run's model and of the reloaded bundle on the same valid images."""
    from rfdetr_core.export import source_from_rfdetr
    from rfdetr_core.export.backends import run_torch
    from rfdetr_core.export.images import normalise_nchw, resolve_images, to_unit_nhwc
    from rfdetr_core.export.metrics import category_for_labels, coco_map, decode, load_coco

    reloaded = type(rf).from_checkpoint(folder / "weights.pt")
    image_dir, coco = load_coco(valid)
    entries = coco["images"][:max_images]
    pil = resolve_images([image_dir / e["file_name"] for e in entries])
    src = source_from_rfdetr(rf)
    nchw = normalise_nchw(to_unit_nhwc(pil, (src.resolution, src.resolution)), src.means, src.stds)
    scores, times = {}, {}
    for name, model in (("pytorch", src.model), ("artefact", source_from_rfdetr(reloaded).model)):
        boxes, logits, times[name] = run_torch(model, nchw, repeats=10)
        cats = category_for_labels(src.class_names, coco, src.class_ids, logits.shape[-1])
        dets = {
            e["id"]: decode(boxes[i], logits[i], (pil[i].height, pil[i].width)) for i, e in enumerate(entries)
        }
        scores[name] = MapScores(**coco_map(coco, dets, cats))
    median = {k: sorted(v)[len(v) // 2] * 1000 for k, v in times.items()}
    latency = Latency(
        threads=2,
        pytorch=round(median["pytorch"], 2),
        artefact=round(median["artefact"], 2),
        ratio=round(median["artefact"] / median["pytorch"], 3),
    )
    return MapComparison(scores["pytorch"], scores["artefact"], len(entries)), latency


def _write_zip(zip_path: Path, fmt: str, rf: Any, files: list[Path], report: Report, status: str) -> None:
    """Model file(s) under stable names, ``class_names.txt``, the report, ``README.md`` and ``usage.py``."""
    names = list(rf.class_names)
    model_name = ZIP_NAMES.get(fmt, "weights.pt")
    readme, usage = snippets(fmt, FORMATS[fmt], rf, model_name, report, status, verification.summary(report))
    tmp = zip_path.with_name(f".{zip_path.name}.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            if path.name == "class_names.txt":
                continue
            zf.write(path, ZIP_NAMES.get(fmt, path.name), compress_type=zipfile.ZIP_STORED)
        zf.writestr("class_names.txt", "\n".join(names))  # as the core writes it: no trailing newline
        zf.writestr("verification.json", report.to_json())
        zf.writestr("README.md", readme)
        zf.writestr("usage.py", usage)
    os.replace(tmp, zip_path)  # never a half-written zip under the real name


__all__ = [
    "EXPORTS_DIR",
    "FORMATS",
    "ExportResult",
    "RunFacts",
    "calibration_folder",
    "export_run",
    "exportable_runs",
    "load_model",
    "run_facts",
    "validation_folder",
]
