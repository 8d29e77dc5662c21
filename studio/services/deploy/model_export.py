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
- The Roboflow API key lives only in memory for the one ``deploy_to_roboflow`` call: it is scrubbed
  from error messages and log records and never written to the database or any file.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from studio.errors import StudioError
from studio.services.data.dataset_export import export_coco
from studio.services.deploy.snippets import snippets
from studio.store import ProjectStore
from studio.store.models import Export, Image, Run

logger = logging.getLogger(__name__)

FORMATS = {
    "onnx": "ONNX (onnxruntime)",
    "tflite_fp32": "TFLite FP32",
    "tflite_fp16": "TFLite FP16",
    "tflite_int8": "TFLite INT8",
    "roboflow": "Roboflow bundle (weights.pt + class_names.txt)",
}
DEPLOY_KIND = "roboflow_deploy"
EXPORTS_DIR = "exports"
CALIBRATION_IMAGES = 64  # enough for int8 ranges; more only slows the converter
TABLE_HEADERS = [
    "id",
    "date",
    "run",
    "format",
    "status",
    "PyTorch mAP",
    "exported mAP",
    "PyTorch ms",
    "exported ms",
    "size MB",
    "zip",
]
Progress = Callable[[float, str], None]


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
    report: dict[str, Any]
    details: dict[str, Any]
    summary: str
    error: str | None = None


@dataclass
class ExportRow:
    """One line of the export history."""

    id: int
    run_id: int | None
    run_name: str
    kind: str
    status: str
    path: Path
    details: dict[str, Any]
    error: str | None
    created_at: datetime

    @property
    def format_label(self) -> str:
        if self.kind == DEPLOY_KIND:
            d = self.details
            return f"Roboflow deploy → {d.get('workspace')}/{d.get('project')} v{d.get('version')}"
        return FORMATS.get(self.kind, self.kind)

    @property
    def zip_path(self) -> Path | None:
        rel = self.details.get("zip")
        return self.path.parent / Path(rel).name if rel else None


# -- choosing a run -------------------------------------------------------------------------------
def _abs(store: ProjectStore, path: str | None) -> Path | None:
    if not path:
        return None
    return Path(path) if os.path.isabs(path) else store.path / path


def exportable_runs(store: ProjectStore) -> list[tuple[str, int]]:
    """``(label, run id)`` of runs whose best checkpoint exists on disk, newest first (dropdown choices)."""
    with store.session(readonly=True) as s:
        runs = list(s.scalars(select(Run).order_by(Run.id.desc())))
    out = []
    for run in runs:
        ckpt = _abs(store, run.best_checkpoint)
        if ckpt is None or not ckpt.is_file():
            continue
        score = (run.best_metrics or {}).get("mAP_50_95")
        out.append((f"{run.name}" + (f" · mAP@50:95 {score:.3f}" if score is not None else ""), run.id))
    return out


def _run_facts(store: ProjectStore, run_id: int) -> tuple[str, Path, Path | None]:
    """(run name, best checkpoint, the run's dataset snapshot folder) or a StudioError."""
    with store.session(readonly=True) as s:
        run = s.get(Run, int(run_id))
        if run is None:
            raise StudioError(f"Run {run_id} does not exist.")
        name, best, snap = run.name, run.best_checkpoint, (run.dataset_snapshot or {}).get("path")
    ckpt = _abs(store, best)
    if ckpt is None or not ckpt.is_file():
        raise StudioError(
            f"Run '{name}' has no best checkpoint to export yet: let it finish at least one validated epoch."
        )
    return name, ckpt, _abs(store, snap)


def _load_model(ckpt: Path) -> Any:
    from rfdetr_core import RFDETR

    return RFDETR.from_checkpoint(ckpt)


# -- the images the export is calibrated and verified on --------------------------------------------
def validation_folder(store: ProjectStore, snapshot: Path | None, scratch: Path) -> Path | None:
    """The run's frozen ``valid`` split (COCO layout); else the project's current one, written to *scratch*.

    ``None`` when neither exists (verification then compares on training images without mAP).
    """
    if snapshot is not None and (snapshot / "valid" / "_annotations.coco.json").is_file():
        return snapshot / "valid"
    with store.session(readonly=True) as s:
        has_valid = s.scalar(select(Image.id).where(Image.split == "valid").limit(1)) is not None
    if not has_valid:
        return None
    export_coco(store, scratch)
    return scratch / "valid"


def calibration_folder(
    store: ProjectStore, dest: Path, max_images: int = CALIBRATION_IMAGES, snapshot: Path | None = None
) -> Path:
    """A folder of up to *max_images* images of the project's train split (unassigned images train too).

    TFLite INT8 ranges must come from the data the model will see, never from the validation images
    it is judged on. Falls back to the run's frozen train split when the project has none left.
    """
    with store.session(readonly=True) as s:
        in_train = (Image.split == "train") | Image.split.is_(None)
        images = list(s.scalars(select(Image).where(in_train).order_by(Image.id).limit(max_images)))
    sources = [store.image_path(im) for im in images if store.image_path(im).is_file()]
    if not sources and snapshot is not None and (snapshot / "train").is_dir():
        from rfdetr_core.export.images import IMAGE_SUFFIXES

        sources = sorted(p for p in (snapshot / "train").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        sources = sources[:max_images]
    if not sources:
        raise StudioError(
            "TFLite export needs calibration images: the project has no images in the train split."
        )
    dest.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(sources):
        target = dest / f"{i:04d}{src.suffix.lower()}"
        try:
            os.link(src, target)  # no copy of the bytes when the file system allows it
        except OSError:
            shutil.copyfile(src, target)
    return dest


# -- exporting ------------------------------------------------------------------------------------
def _new_row(store: ProjectStore, run_id: int, kind: str, details: dict[str, Any]) -> int:
    with store.session() as s:
        row = Export(run_id=int(run_id), kind=kind, path="", status="running", details=details)
        s.add(row)
        s.flush()
        return row.id


def _update(store: ProjectStore, export_id: int, **values: Any) -> None:
    with store.session() as s:
        row = s.get(Export, export_id)
        if row is not None:
            for key, value in values.items():
                setattr(row, key, value)


def _readable(exc: BaseException) -> str:
    """One or two lines for a person: the error's first line and, for tool output, its last."""
    if isinstance(exc, StudioError):
        return str(exc)
    skip = ("Traceback", "File ", "^", "During handling", "The above exception")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith(skip)]
    if not lines:
        return type(exc).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"
    if type(exc).__name__ not in text and not isinstance(exc, RuntimeError):
        text = f"{type(exc).__name__}: {text}"
    return text[:600]


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
    run_name, ckpt, snapshot = _run_facts(store, run_id)
    export_id = _new_row(store, run_id, fmt, {"format": fmt, "run": run_name})
    folder = store.path / EXPORTS_DIR / f"{export_id}_{fmt}"
    zip_path = folder.with_suffix(".zip")
    _update(store, export_id, path=str(folder.relative_to(store.path)))
    stage = "Loading the checkpoint"
    try:
        shutil.rmtree(folder, ignore_errors=True)  # a leftover of an earlier export with a reused id
        zip_path.unlink(missing_ok=True)
        folder.mkdir(parents=True)
        report_progress(0.02, f"{stage} of '{run_name}'…")
        rf = _load_model(ckpt)
        stage = "Preparing the validation images"
        valid = validation_folder(store, snapshot, folder / "_validation")
        stage = f"Exporting to {FORMATS[fmt]}"
        report_progress(0.1, f"{stage}…")
        model_files, report, seconds = _export_and_verify(
            store, rf, fmt, folder, valid, snapshot, max_verify_images, report_progress
        )
        stage = "Writing the zip"
        report_progress(0.9, "Packing the zip (model, class names, report, usage snippet)…")
        details = _details(report, fmt, run_name, seconds, model_files, zip_path, store)
        status = "done" if report["status"] == "passed" else "failed"
        error = None if status == "done" else "Verification failed: " + "; ".join(report["failures"])
        _write_zip(zip_path, fmt, rf, model_files, report, status)
        shutil.rmtree(folder / "_validation", ignore_errors=True)
    except Exception as exc:
        error = f"{stage} failed: {_readable(exc)}"
        _update(store, export_id, status="failed", error=error)
        logger.warning("Export %s of run %s failed: %s", export_id, run_id, error)
        raise StudioError(error) from exc
    details["size_mb"] = round(sum(p.stat().st_size for p in model_files) / 2**20, 2)
    _update(store, export_id, status=status, error=error, details=details)
    summary = _summary(report, fmt)
    report_progress(1.0, summary.splitlines()[0])
    return ExportResult(
        export_id, int(run_id), fmt, status, folder, zip_path, model_files, report, details, summary, error
    )


def _export_and_verify(
    store: ProjectStore,
    rf: Any,
    fmt: str,
    folder: Path,
    valid: Path | None,
    snapshot: Path | None,
    max_images: int,
    progress: Progress,
) -> tuple[list[Path], dict, dict]:
    """Write the artefact(s), verify them; return (files to ship, report, {"export_s", "verify_s"})."""
    from rfdetr_core.export import export_for_roboflow, export_model, source_from_rfdetr, verify_export

    start = time.perf_counter()
    if fmt == "roboflow":
        export_for_roboflow(rf, folder)
        exported = time.perf_counter()
        progress(0.5, f"Reloading the bundle and comparing it with the run's model on {max_images} images…")
        report = _verify_roboflow(rf, folder, valid, max_images)
        files = [folder / "weights.pt", folder / "class_names.txt"]
    else:
        extra: dict[str, Any] = {"format": "onnx"}
        if fmt.startswith("tflite"):
            calib = calibration_folder(store, folder / "_calibration", snapshot=snapshot)
            extra = {
                "format": "tflite",
                "quantization": fmt.split("_")[1],
                "calibration_data": calib,
                "max_images": CALIBRATION_IMAGES,
            }
        path = export_model(
            rf, folder, infer_dir=valid, verify=False, progress=lambda m: progress(0.2, m), **extra
        )
        exported = time.perf_counter()
        shutil.rmtree(folder / "_calibration", ignore_errors=True)
        progress(0.5, f"Verifying on up to {max_images} validation images (PyTorch vs {FORMATS[fmt]})…")
        images = None if valid is not None else store.images_dir
        report = verify_export(
            source_from_rfdetr(rf), path, validation=valid, images=images, max_images=max_images
        )
        files = [path]
    seconds = {"export_s": round(exported - start, 2), "verify_s": round(time.perf_counter() - exported, 2)}
    report["export_seconds"] = seconds["export_s"]
    _save_report(folder, files[0], report)
    return files, report, seconds


def _save_report(folder: Path, model_file: Path, report: dict) -> None:
    name = "verification.json" if model_file.suffix == ".pt" else model_file.name + ".verification.json"
    report["report_path"] = str(folder / name)
    (folder / name).write_text(json.dumps(report, indent=2))


def _verify_roboflow(rf: Any, folder: Path, valid: Path | None, max_images: int) -> dict[str, Any]:
    """``verify_bundle`` (reload → identical outputs) plus mAP/latency of both models on the valid split."""
    from rfdetr_core.export import source_from_rfdetr, verify_bundle
    from rfdetr_core.export.backends import run_torch
    from rfdetr_core.export.images import normalise_nchw, resolve_images, to_unit_nhwc
    from rfdetr_core.export.metrics import category_for_labels, coco_map, decode, load_coco

    report = verify_bundle(rf, folder, images=valid, max_images=min(4, max_images), save=False)
    failures = [
        text
        for key, text in (
            ("class_names_txt_match", "class_names.txt differs from the model's classes"),
            ("args_class_names_match", "weights.pt args carry other class names"),
            ("reloaded_class_names_match", "the reloaded model has other class names"),
        )
        if not report[key]
    ]
    if report["max_abs_diff"] != 0.0:
        failures.append(f"the reloaded weights predict differently (max |diff| {report['max_abs_diff']:.3g})")
    report["failures"] = failures
    if valid is None:
        return report
    reloaded = type(rf).from_checkpoint(folder / "weights.pt")
    image_dir, coco = load_coco(valid)
    entries = coco["images"][:max_images]
    pil = resolve_images([image_dir / e["file_name"] for e in entries])
    src = source_from_rfdetr(rf)
    nchw = normalise_nchw(to_unit_nhwc(pil, (src.resolution, src.resolution)), src.means, src.stds)
    report["map"], times = {"images": len(entries)}, {}
    for name, model in (("pytorch", src.model), ("artefact", source_from_rfdetr(reloaded).model)):
        boxes, logits, times[name] = run_torch(model, nchw, repeats=10)
        cats = category_for_labels(src.class_names, coco, src.class_ids, logits.shape[-1])
        dets = {
            e["id"]: decode(boxes[i], logits[i], (pil[i].height, pil[i].width)) for i, e in enumerate(entries)
        }
        report["map"][name] = coco_map(coco, dets, cats)
    median = {k: sorted(v)[len(v) // 2] * 1000 for k, v in times.items()}
    report["latency_ms"] = {
        "threads": 2,
        "pytorch": round(median["pytorch"], 2),
        "artefact": round(median["artefact"], 2),
        "ratio": round(median["artefact"] / median["pytorch"], 3),
    }
    return report


def _details(
    report: dict,
    fmt: str,
    run_name: str,
    seconds: dict,
    files: list[Path],
    zip_path: Path,
    store: ProjectStore,
) -> dict[str, Any]:
    """The key figures of a verification report, as stored on the row (and shown by the table)."""
    mp, lat, det = report.get("map") or {}, report.get("latency_ms") or {}, report.get("detections") or {}
    diff = report.get("max_abs_diff")
    return {
        "format": fmt,
        "run": run_name,
        "verification": report["status"],
        "failures": report.get("failures", []),
        "warnings": report.get("warnings", []),
        "max_abs_diff": max(diff["boxes"], diff["logits"]) if isinstance(diff, dict) else diff,
        "detections_matched": det.get("matched"),
        "detections_compared": det.get("compared"),
        "map_pytorch": (mp.get("pytorch") or {}).get("map50_95"),
        "map_exported": (mp.get("artefact") or {}).get("map50_95"),
        "map50_pytorch": (mp.get("pytorch") or {}).get("map50"),
        "map50_exported": (mp.get("artefact") or {}).get("map50"),
        "map_images": mp.get("images"),
        "latency_pytorch_ms": lat.get("pytorch"),
        "latency_exported_ms": lat.get("artefact"),
        "latency_ratio": lat.get("ratio"),
        "export_seconds": seconds["export_s"],
        "verify_seconds": seconds["verify_s"],
        "images": report.get("images"),
        "model_files": [str(p.relative_to(store.path)) for p in files],
        "zip": str(zip_path.relative_to(store.path)),
    }


def _summary(report: dict, fmt: str) -> str:
    if fmt != "roboflow":
        from rfdetr_core.export import summarise

        return summarise(report)
    lines = [
        f"Verification {report['status'].upper()} for the Roboflow bundle: reloaded weights.pt, "
        f"max |diff| {report['max_abs_diff']:.2e} on {report['images']} images"
    ]
    if report.get("map"):
        m = report["map"]
        lines.append(
            f"  mAP@50:95 run model {m['pytorch']['map50_95']:.3f} vs bundle {m['artefact']['map50_95']:.3f}"
        )
    return "\n".join(lines + [f"  FAILED: {f}" for f in report["failures"]])


def _write_zip(zip_path: Path, fmt: str, rf: Any, files: list[Path], report: dict, status: str) -> None:
    """Model file(s) under stable names, ``class_names.txt``, the report, ``README.md`` and ``usage.py``."""
    names = list(rf.class_names)
    arc = {
        "onnx": "model.onnx",
        "tflite_fp32": "model_fp32.tflite",
        "tflite_fp16": "model_fp16.tflite",
        "tflite_int8": "model_int8.tflite",
    }
    readme, usage = snippets(
        fmt, FORMATS[fmt], rf, arc.get(fmt, "weights.pt"), report, status, _summary(report, fmt)
    )
    tmp = zip_path.with_name(f".{zip_path.name}.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            if path.name == "class_names.txt":
                continue
            zf.write(path, arc.get(fmt, path.name), compress_type=zipfile.ZIP_STORED)
        zf.writestr("class_names.txt", "\n".join(names))  # as the core writes it: no trailing newline
        zf.writestr("verification.json", json.dumps(report, indent=2))
        zf.writestr("README.md", readme)
        zf.writestr("usage.py", usage)
    os.replace(tmp, zip_path)  # never a half-written zip under the real name


# -- history --------------------------------------------------------------------------------------
def list_exports(store: ProjectStore) -> list[ExportRow]:
    """Model exports and deploys of this project, newest first."""
    kinds = [*FORMATS, DEPLOY_KIND]
    with store.session(readonly=True) as s:
        rows = list(s.scalars(select(Export).where(Export.kind.in_(kinds)).order_by(Export.id.desc())))
        run_names = dict(s.execute(select(Run.id, Run.name)).all())
    return [
        ExportRow(
            r.id,
            r.run_id,
            run_names.get(r.run_id, (r.details or {}).get("run") or "(deleted run)"),
            r.kind,
            r.status,
            store.path / r.path if r.path else store.path,
            dict(r.details or {}),
            r.error,
            r.created_at,
        )
        for r in rows
    ]


def _num(value: Any, digits: int) -> Any:
    return round(float(value), digits) if isinstance(value, (int, float)) else ""


def export_table(store: ProjectStore) -> list[list]:
    """Rows for a ``gr.Dataframe`` with :data:`TABLE_HEADERS` columns."""
    out = []
    for row in list_exports(store):
        d = row.details
        zip_path = row.zip_path
        out.append(
            [
                row.id,
                row.created_at.strftime("%Y-%m-%d %H:%M"),
                row.run_name,
                row.format_label,
                row.status,
                _num(d.get("map_pytorch"), 3),
                _num(d.get("map_exported"), 3),
                _num(d.get("latency_pytorch_ms"), 1),
                _num(d.get("latency_exported_ms"), 1),
                _num(d.get("size_mb"), 1),
                str(zip_path) if zip_path and zip_path.is_file() else "",
            ]
        )
    return out


def delete_export(store: ProjectStore, export_id: int) -> None:
    """Delete an export's row, its folder and its zip (files outside ``exports/`` are never touched)."""
    with store.session() as s:
        row = s.get(Export, int(export_id))
        if row is None:
            raise StudioError(f"Export {export_id} does not exist.")
        rel = row.path
        s.delete(row)
    root = (store.path / EXPORTS_DIR).resolve()
    folder = (store.path / rel).resolve() if rel else None
    if folder is not None and folder.is_relative_to(root) and folder != root:
        shutil.rmtree(folder, ignore_errors=True)
        folder.with_suffix(".zip").unlink(missing_ok=True)


# -- Roboflow deploy ------------------------------------------------------------------------------
@contextlib.contextmanager
def _redacted(secret: str) -> Iterator[io.StringIO]:
    """While active, every log record (and captured stdout) has *secret* replaced by ``***``."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return record
        if record.exc_info and record.exc_info[1] is not None and secret in str(record.exc_info[1]):
            text, record.exc_info = f"{text} ({_readable(record.exc_info[1])})", None
        if secret in text:
            record.msg, record.args = text.replace(secret, "***"), ()
        return record

    logging.setLogRecordFactory(factory)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    finally:
        logging.setLogRecordFactory(previous)


def deploy_run(
    store: ProjectStore,
    run_id: int,
    api_key: str,
    workspace: str,
    project_id: str,
    version: int | str,
    model_type: str | None = None,
) -> str:
    """Upload run *run_id*'s model to a Roboflow project version; returns a message for the user.

    The key is used for this call only: it is not stored, logged or put in any message.
    """
    key = (api_key or "").strip()
    workspace, project_id = (workspace or "").strip(), (project_id or "").strip()
    if not key:
        raise StudioError("Enter your Roboflow API key (Roboflow → Settings → API Keys).")
    if not workspace or not project_id:
        raise StudioError("Enter the Roboflow workspace and project ids (as in the project's URL).")
    try:
        number = int(str(version).strip())
    except ValueError:
        raise StudioError(
            f"The version must be a whole number, got '{str(version).replace(key, '***')}'."
        ) from None
    if number < 1:
        raise StudioError("The version must be 1 or more.")
    run_name, ckpt, _ = _run_facts(store, run_id)
    target = {
        "workspace": workspace,
        "project": project_id,
        "version": number,
        "model_type": model_type,
        "run": run_name,
    }
    export_id = _new_row(store, run_id, DEPLOY_KIND, target)
    _update(store, export_id, path=f"roboflow:{workspace}/{project_id}/{number}")
    try:
        from rfdetr_core.export import deploy_to_roboflow

        rf = _load_model(ckpt)
        with _redacted(key) as out:
            deploy_to_roboflow(rf, workspace, project_id, number, api_key=key, size=model_type)
    except Exception as exc:
        error = f"Deploy to Roboflow failed: {_readable(exc)}".replace(key, "***")
        _update(store, export_id, status="failed", error=error)
        logger.warning("Deploy of run %s failed: %s", run_id, error)
        raise StudioError(error) from None  # no chained exception: its text may hold the key
    logger.info("Roboflow deploy output: %s", out.getvalue().replace(key, "***").strip())
    _update(store, export_id, status="done")
    return f"Uploaded '{run_name}' to Roboflow {workspace}/{project_id} version {number}."


__all__ = [
    "FORMATS",
    "TABLE_HEADERS",
    "ExportResult",
    "ExportRow",
    "calibration_folder",
    "delete_export",
    "deploy_run",
    "export_run",
    "export_table",
    "exportable_runs",
    "list_exports",
    "validation_folder",
]
