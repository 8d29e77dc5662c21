"""Check an exported artefact against the PyTorch model it came from, and say so in a JSON report.

Run after every export: the artefact and the PyTorch model see the same real images (same resize and
normalisation), and the report gives the max abs difference of the raw outputs, how many of PyTorch's
detections the artefact reproduces, mAP@50:95 of both when a labelled validation set is given, and the
median latency of both. The export is ``"passed"`` only if every check is inside its tolerance — a broken
export is reported as failed instead of shipping silently. The report is saved next to the artefact as
``<artefact>.verification.json``.
"""

from __future__ import annotations

import logging
import math
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rfdetr_core.export import backends, metrics
from rfdetr_core.export.images import normalise_nchw, resolve_images, synthetic_images, to_unit_nhwc
from rfdetr_core.export.report import (
    DetectionAgreement,
    Latency,
    MapComparison,
    MapScores,
    OutputDiff,
    TfliteInfo,
    VerificationReport,
)
from rfdetr_core.export.source import ExportSource

logger = logging.getLogger(__name__)

# Per artefact kind. ONNX (same kernels' arithmetic) must agree numerically. TFLite fp32 runs other
# kernels: its ~1e-6 drift can swap two near-tied two-stage proposals, and the query fed by the swapped
# proposal then differs entirely (measured on a tiny trained model: max |diff| 0.16 while the top
# detections matched 100 % within 0.1 px and mAP agreed to 1e-3), so it is judged like reduced precision:
# on detections (and mAP when labels exist), with the raw differences kept in the report. Integer quantisation of a
# transformer can reorder near-equal scores completely, so int8 is judged on mAP (needs labels); without
# labels its report carries a warning instead of a pass/fail on detection agreement.
TOLERANCES: dict[str, dict[str, float | None]] = {
    "onnx": {"boxes_atol": 1e-3, "logits_atol": 1e-3, "min_match_rate": 0.95, "max_map_drop": 0.01},
    "tflite-fp32": {"boxes_atol": None, "logits_atol": None, "min_match_rate": 0.9, "max_map_drop": 0.01},
    "tflite-fp16": {"boxes_atol": None, "logits_atol": None, "min_match_rate": 0.8, "max_map_drop": 0.02},
    "tflite-int8": {"boxes_atol": None, "logits_atol": None, "min_match_rate": 0.0, "max_map_drop": 0.10},
}


def artefact_kind(path: Path) -> str:
    """``onnx`` or ``tflite-<precision>`` from the file name our exporters write."""
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix == ".tflite":
        for precision in ("int8", "fp16", "fp32"):
            if f"_{precision}" in path.stem:
                return f"tflite-{precision}"
        return "tflite-fp32"
    raise ValueError(f"Cannot verify {path.name}: expected a .onnx or .tflite file")


def _input_shape(path: Path, source: ExportSource) -> tuple[int, int]:
    """The (H, W) the artefact was exported at: from ONNX metadata, or the sibling ONNX for TFLite."""
    from rfdetr_core.export.onnx import read_metadata

    onnx_path = path if path.suffix == ".onnx" else None
    if onnx_path is None:
        stem = re.sub(r"_(fp32|fp16|int8)(_dynamic_range)?$", "", path.stem)
        candidate = path.with_name(f"{stem}.onnx")
        onnx_path = candidate if candidate.is_file() else None
    if onnx_path is not None:
        shape = read_metadata(onnx_path).get("input_shape")
        if shape:
            return int(shape[1]), int(shape[2])
    return source.resolution, source.resolution


def _images(images: Any, validation: Any, max_images: int) -> tuple[list, dict | None, list[int], str]:
    """Images to compare on, the COCO dict (if labelled) and image ids; real images first."""
    if validation is not None:
        image_dir, coco = metrics.load_coco(validation)
        entries = coco["images"][:max_images]
        pil = resolve_images([image_dir / e["file_name"] for e in entries])
        return pil, coco, [e["id"] for e in entries], f"validation set {image_dir} ({len(entries)} images)"
    pil = resolve_images(images, max_images=max_images)
    if pil:
        return pil, None, [], f"{len(pil)} provided images"
    return synthetic_images(min(max_images, 4)), None, [], "synthetic images (none provided)"


def _run_artefact(kind: str, path: Path, nchw: np.ndarray, threads: int, repeats: int, env_dir) -> tuple:
    if kind == "onnx":
        boxes, logits, times = backends.run_onnx(path, nchw, threads=threads, repeats=repeats)
        return boxes, logits, times, {"runtime": "onnxruntime"}
    return backends.run_tflite_model(path, nchw, threads=threads, repeats=repeats, env_dir=env_dir)


def _check(report: VerificationReport, tol: dict) -> list[str]:
    """Names of the checks that failed (empty = passed)."""
    failures = []
    diff = report.max_abs_diff
    if not all(math.isfinite(v) for v in (diff.boxes, diff.logits, diff.scores)):
        failures.append("artefact produced non-finite outputs")
    for key, value in (("boxes", diff.boxes), ("logits", diff.logits)):
        limit = tol.get(f"{key}_atol")
        if limit is not None and value > limit:
            failures.append(f"max abs diff of {key} {value:.3g} > {limit:g}")
    rate = report.detections.match_rate
    if rate < (tol.get("min_match_rate") or 0.0):
        failures.append(f"detection match rate {rate:.2f} < {tol['min_match_rate']:g}")
    mp = report.map
    if mp and tol.get("max_map_drop") is not None:
        drop = mp.drop
        if drop > tol["max_map_drop"]:
            failures.append(f"mAP@50:95 drop {drop:.3f} > {tol['max_map_drop']:g}")
    return failures


@dataclass
class _Inputs:
    """The images both models see, normalised at the artefact's input size, and their labels if any."""

    shape: tuple[int, int]
    pil: list
    nchw: np.ndarray
    coco: dict | None
    image_ids: list[int]
    described: str


def _prepare(source: ExportSource, path: Path, images: Any, validation: Any, max_images: int) -> _Inputs:
    shape = _input_shape(path, source)
    pil, coco, image_ids, described = _images(images, validation, max_images)
    nchw = normalise_nchw(to_unit_nhwc(pil, shape), source.means, source.stds)
    return _Inputs(shape, pil, nchw, coco, image_ids, described)


def _compare(
    source: ExportSource,
    path: Path,
    kind: str,
    inputs: _Inputs,
    threads: int,
    repeats: int,
    top_k: int,
    env_dir,
) -> VerificationReport:
    """Run both models on *inputs* and fill the report's measurements (the verdict comes later)."""
    nchw, shape = inputs.nchw, inputs.shape
    t_boxes, t_logits, t_times = backends.run_torch(source.model, nchw, threads=threads, repeats=repeats)
    a_boxes, a_logits, a_times, info = _run_artefact(kind, path, nchw, threads, repeats, env_dir)
    if a_boxes.shape != t_boxes.shape or a_logits.shape != t_logits.shape:
        raise ValueError(
            f"Artefact output shapes {a_boxes.shape}/{a_logits.shape} differ from PyTorch's "
            f"{t_boxes.shape}/{t_logits.shape}"
        )
    ref = [metrics.decode(t_boxes[i], t_logits[i], shape) for i in range(len(nchw))]
    out = [metrics.decode(a_boxes[i], a_logits[i], shape) for i in range(len(nchw))]
    report = VerificationReport(
        artefact=str(path),
        kind=kind,
        images=inputs.described,
        input_shape=list(shape),
        runtime=info.get("runtime"),
        max_abs_diff=OutputDiff(
            boxes=float(np.abs(a_boxes - t_boxes).max()),
            logits=float(np.abs(a_logits - t_logits).max()),
            scores=float(np.abs(metrics.sigmoid(a_logits) - metrics.sigmoid(t_logits)).max()),
        ),
        detections=DetectionAgreement(**metrics.match_detections(ref, out, top_k=top_k)),
        latency_ms=_latency(t_times, a_times, threads),
        tolerance={},
    )
    if kind.startswith("tflite"):
        report.tflite = TfliteInfo(
            **{k: info.get(k) for k in ("runtime", "litert_error", "flex_ops", "input_shape")}
        )
    if inputs.coco is not None:
        report.map = _map_both(
            source, inputs.coco, inputs.image_ids, inputs.pil, (t_boxes, t_logits), (a_boxes, a_logits)
        )
    return report


def verify_export(
    source: ExportSource,
    artefact: str | Path,
    *,
    images: Any = None,
    validation: Any = None,
    max_images: int = 8,
    threads: int = 2,
    repeats: int = 10,
    tolerance: dict[str, float | None] | None = None,
    top_k: int = 10,
    env_dir: str | Path | None = None,
    save: bool = True,
) -> VerificationReport:
    """Compare *artefact* with ``source.model`` and return (and save) the verification report.

    Args:
        source: The PyTorch model and metadata the artefact was exported from.
        artefact: A ``.onnx`` or ``.tflite`` file written by our exporters.
        images: Folder or list of real images to compare on (used when *validation* is not given).
        validation: COCO-style labelled set — a folder holding ``_annotations.coco.json`` and the
            images, or ``(image_dir, annotations.json)``; enables the side-by-side mAP.
        max_images: At most this many images are run.
        threads: CPU threads for both runtimes (latency is measured on the same count).
        repeats: Timed single-image calls per runtime for the median latency.
        tolerance: Overrides of :data:`TOLERANCES` for this artefact kind.
        top_k: Detections per image compared.
    """
    path = Path(artefact)
    kind = artefact_kind(path)
    tol = {**TOLERANCES[kind], **(tolerance or {})}
    inputs = _prepare(source, path, images, validation, max_images)
    report = _compare(source, path, kind, inputs, threads, repeats, top_k, env_dir)
    report.tolerance = tol
    report.failures = _check(report, tol)
    report.status = "failed" if report.failures else "passed"
    report.warnings = _warnings(report, kind)
    if save:
        report_path = path.with_name(path.name + ".verification.json")
        report_path.write_text(report.to_json())
        report.report_path = str(report_path)
    log = logger.warning if report.failures else logger.info
    log("Verification of %s: %s %s", path.name, report.status, "; ".join(report.failures))
    return report


def _warnings(report: VerificationReport, kind: str) -> list[str]:
    """Things a user should know even when every check passed."""
    notes = []
    det = report.detections
    if det.match_rate < 0.5 and report.map is None:
        notes.append(
            f"only {det.matched}/{det.compared} top detections "
            "agree with PyTorch; pass a labelled validation set to measure the accuracy cost"
        )
    if kind.startswith("tflite") and report.tflite is not None and report.tflite.flex_ops:
        notes.append(
            f"needs TensorFlow Flex ops {report.tflite.flex_ops}: the LiteRT interpreter cannot run it"
        )
    return notes


def _latency(torch_times: list[float], artefact_times: list[float], threads: int) -> Latency:
    if not torch_times or not artefact_times:
        return Latency(threads=threads)
    t = statistics.median(torch_times) * 1000
    a = statistics.median(artefact_times) * 1000
    return Latency(threads=threads, pytorch=round(t, 2), artefact=round(a, 2), ratio=round(a / t, 3))


def _map_both(
    source: ExportSource, coco: dict, image_ids: list[int], pil: list, torch_out, art_out
) -> MapComparison:
    """mAP@50:95 of PyTorch and the artefact on the same labelled images, boxes in original pixels."""
    num_logits = torch_out[1].shape[-1]
    label_to_cat = metrics.category_for_labels(source.class_names, coco, source.class_ids, num_logits)
    result = {}
    for name, (boxes, logits) in (("pytorch", torch_out), ("artefact", art_out)):
        dets = {
            image_ids[i]: metrics.decode(boxes[i], logits[i], (img.height, img.width))
            for i, img in enumerate(pil)
        }
        result[name] = MapScores(**metrics.coco_map(coco, dets, label_to_cat))
    return MapComparison(result["pytorch"], result["artefact"], len(image_ids))


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """``(result, seconds)`` — export times go into the report too."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
