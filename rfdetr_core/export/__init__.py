"""Export RF-DETR models to ONNX, TFLite and the Roboflow bundle — each verified after it is written.

Entry points used by the ``RFDETR`` façade and the ``rfdetr-core export`` command:

* :func:`export_model` — ``format="onnx"`` or ``"tflite"``; returns the artefact path and writes
  ``<artefact>.verification.json`` next to it (raises :class:`ExportVerificationError` when the
  artefact disagrees with PyTorch beyond tolerance, unless ``strict=False``).
* :func:`export_for_roboflow` / :func:`deploy_to_roboflow` — the upload bundle.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rfdetr_core.export.onnx import export_onnx, read_metadata
from rfdetr_core.export.report import BundleReport, VerificationReport
from rfdetr_core.export.roboflow import deploy_to_roboflow, export_for_roboflow, verify_bundle
from rfdetr_core.export.source import ExportSource, source_from_rfdetr
from rfdetr_core.export.tflite import export_tflite
from rfdetr_core.export.verify import timed, verify_export

logger = logging.getLogger(__name__)
FORMATS = ("onnx", "tflite")


class ExportVerificationError(RuntimeError):
    """The written artefact does not reproduce the PyTorch model; ``.report`` holds the details."""

    def __init__(self, report: VerificationReport) -> None:
        super().__init__(
            f"Export verification failed for {report.artefact}: {'; '.join(report.failures)} "
            f"(report: {report.report_path})"
        )
        self.report = report


def _check_arguments(
    source: ExportSource,
    format: str,
    patch_size: int | None,
    batch_size: int,
    dynamic_batch: bool,
    backbone_only: bool,
) -> None:
    if patch_size is not None and patch_size != source.patch_size:
        raise ValueError(f"patch_size={patch_size} does not match the model's patch_size={source.patch_size}")
    if format == "tflite" and (dynamic_batch or batch_size != 1):
        raise ValueError("TFLite export needs a static batch of 1 (export one file per batch size)")
    if backbone_only and format == "tflite":
        raise ValueError("backbone_only is supported for ONNX export only")


def _verify_images(verify_images: Any, infer_dir: Any, calibration_data: Any) -> Any:
    """What the artefact is compared on: the given images, else the sample / calibration folder."""
    images = verify_images or infer_dir
    if images is None and isinstance(calibration_data, (str, Path)) and Path(calibration_data).is_dir():
        images = calibration_data
    return images


def export_model(
    rf: Any,
    output_dir: str | Path = "output",
    *,
    format: str = "onnx",
    infer_dir: str | Path | None = None,
    backbone_only: bool = False,
    opset_version: int = 17,
    shape: tuple[int, int] | None = None,
    batch_size: int = 1,
    dynamic_batch: bool = False,
    patch_size: int | None = None,
    quantization: str | None = None,
    calibration_data: Any = None,
    max_images: int = 100,
    notes: object = None,
    verify: bool = True,
    validation: Any = None,
    verify_images: Any = None,
    strict: bool = True,
    verify_options: dict[str, Any] | None = None,
    progress=print,
) -> Path:
    """Export *rf* (an ``RFDETR`` or an :class:`ExportSource`) and verify the result.

    Arguments follow the reference ``RFDETR.export``. Additional ones: ``verify`` (run the artefact
    against PyTorch and save the report), ``validation`` (COCO-style labelled set for mAP side by side),
    ``verify_images`` (images to compare on; defaults to ``infer_dir`` / the calibration folder),
    ``strict`` (raise on a failed verification instead of only recording it), ``verify_options``
    (extra keyword arguments for :func:`verify_export`, e.g. ``max_images``, ``repeats``, ``tolerance``).
    """
    if format not in FORMATS:
        raise ValueError(f"Unsupported export format {format!r}. Choose from: {FORMATS}")
    source = source_from_rfdetr(rf)
    _check_arguments(source, format, patch_size, batch_size, dynamic_batch, backbone_only)
    images = _verify_images(verify_images, infer_dir, calibration_data)
    if format == "onnx":
        writer: Any = export_onnx
        options = {"batch_size": batch_size, "dynamic_batch": dynamic_batch, "backbone_only": backbone_only}
        options["sample_images"] = infer_dir
    else:
        writer = export_tflite
        options = {
            "quantization": quantization,
            "calibration_data": calibration_data,
            "max_images": max_images,
        }
        options["progress"] = progress
    options.update(shape=shape, opset_version=opset_version, notes=notes)
    path, seconds = timed(writer, source, output_dir, **options)
    progress(f"Exported {path} in {seconds:.1f} s")
    if verify and not backbone_only:
        _verify_and_record(source, path, seconds, images, validation, verify_options, strict, progress)
    return path


def _verify_and_record(
    source: ExportSource,
    path: Path,
    seconds: float,
    images: Any,
    validation: Any,
    verify_options: dict[str, Any] | None,
    strict: bool,
    progress,
) -> VerificationReport:
    """Verify *path*, add the export time to the saved report, and raise when *strict* and it failed."""
    report = verify_export(source, path, images=images, validation=validation, **(verify_options or {}))
    report.export_seconds = round(seconds, 2)
    if report.report_path:
        Path(report.report_path).write_text(report.to_json())
    progress(summarise(report))
    if strict and not report.passed:
        raise ExportVerificationError(report)
    return report


def summarise(report: VerificationReport) -> str:
    """One readable paragraph of a verification report (CLI and logs)."""
    diff, det, lat = report.max_abs_diff, report.detections, report.latency_ms
    lines = [
        f"Verification {report.status.upper()} for {Path(report.artefact).name} ({report.kind}, "
        f"{report.runtime}) on {report.images}",
        f"  max |diff| boxes {diff.boxes:.2e}  logits {diff.logits:.2e}  scores {diff.scores:.2e}",
        f"  top-{det.top_k} detections matched {det.matched}/{det.compared}"
        + (f", max box error {det.max_box_error_px:.3f} px" if det.max_box_error_px is not None else ""),
    ]
    if lat.pytorch:
        lines.append(
            f"  median latency ({lat.threads} threads): PyTorch {lat.pytorch:.1f} ms, "
            f"artefact {lat.artefact:.1f} ms (x{lat.ratio:.2f})"
        )
    if report.map:
        m = report.map
        lines.append(f"  mAP@50:95 PyTorch {m.pytorch.map50_95:.3f} vs artefact {m.artefact.map50_95:.3f}")
    lines += [f"  FAILED: {f}" for f in report.failures]
    lines += [f"  warning: {w}" for w in report.warnings]
    return "\n".join(lines)


__all__ = [
    "BundleReport",
    "ExportSource",
    "ExportVerificationError",
    "deploy_to_roboflow",
    "export_for_roboflow",
    "export_model",
    "export_onnx",
    "export_tflite",
    "read_metadata",
    "source_from_rfdetr",
    "summarise",
    "VerificationReport",
    "verify_bundle",
    "verify_export",
]
