"""TFLite export: our ONNX graph → onnx2tf (in its own venv) → ``.tflite`` files, plus a runner.

Why this route: onnx2tf is the converter that handles RF-DETR's graph, but it drags TensorFlow and pinned
numpy/onnx versions along, so it runs from the private environment in :mod:`converter_env`. Two traps are
handled here: onnx2tf downloads a calibration sample unless a file with a magic name is in its working
directory (we write it from the user's real images, so nothing is fetched), and GELU's ``Erf`` becomes a
Flex op that the LiteRT interpreter refuses (we ask onnx2tf to replace ``Erf``/``GeLU`` with built-in ops).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rfdetr_core.export import converter_env
from rfdetr_core.export.images import resolve_images, synthetic_images, to_unit_nhwc
from rfdetr_core.export.onnx import export_onnx
from rfdetr_core.export.source import ExportSource
from rfdetr_core.export.tflite_rewrites import prepare_for_tflite

QUANTIZATIONS = (None, "fp32", "fp16", "int8")
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
WORKER = Path(__file__).with_name("tflite_worker.py")
CONVERT_TIMEOUT_S = 3600


class TFLiteExportError(RuntimeError):
    """onnx2tf failed or produced no usable file."""


def load_calibration(
    calibration_data: str | Path | np.ndarray | None, shape: tuple[int, int], max_images: int
) -> np.ndarray:
    """Calibration images as float32 NHWC in [0, 1] at *shape* from a folder, a ``.npy`` or an array."""
    if calibration_data is None:
        return to_unit_nhwc(synthetic_images(min(max_images, 8)), shape)
    if isinstance(calibration_data, (str, Path)) and Path(calibration_data).suffix.lower() == ".npy":
        calibration_data = np.load(Path(calibration_data))
    if isinstance(calibration_data, np.ndarray):
        data = np.asarray(calibration_data, dtype=np.float32)
        if data.ndim != 4 or data.shape[-1] != 3:
            raise ValueError(f"Calibration array must be [N,H,W,3] in [0,1], got shape {data.shape}")
        if data.max() > 1.5:
            raise ValueError("Calibration array values must be scaled to [0, 1] (found values > 1)")
        data = data[:max_images]
        if data.shape[1:3] != tuple(shape):
            pil = [(np.clip(d, 0, 1) * 255).astype(np.uint8) for d in data]
            data = to_unit_nhwc(resolve_images(pil), shape)
        return data
    return to_unit_nhwc(resolve_images(calibration_data, max_images=max_images), shape)


def _write_onnx2tf_sample(workdir: Path, calib: np.ndarray) -> None:
    """The file onnx2tf otherwise downloads at run time: 20 images of 128×128 from the real set."""
    idx = np.resize(np.arange(len(calib)), 20)
    small = to_unit_nhwc(resolve_images([(calib[i] * 255).astype(np.uint8) for i in idx]), (128, 128))
    np.save(workdir / ONNX2TF_SAMPLE, small)


def _onnx2tf_command(
    env_dir: Path,
    onnx_path: Path,
    out_dir: Path,
    quantization: str | None,
    calib_path: Path | None,
    source: ExportSource,
) -> list[str]:
    cmd = [
        str(env_dir / "bin" / "onnx2tf"),
        "-i",
        str(onnx_path),
        "-o",
        str(out_dir),
        "-n",
        "-rtpo",
        "Erf",
        "GeLU",
    ]  # built-in ops instead of Flex, so LiteRT runs it
    if quantization == "int8":
        mean = json.dumps([[[list(source.means)]]])
        std = json.dumps([[[list(source.stds)]]])
        cmd += ["-oiqt", "-qt", "per-channel", "-cind", "input", str(calib_path), mean, std]
    return cmd


def run_onnx2tf(
    env_dir: Path,
    onnx_path: Path,
    work: Path,
    quantization: str | None,
    calib: np.ndarray,
    source: ExportSource,
) -> Path:
    """Run onnx2tf in *work* and return the folder it wrote ``.tflite`` files into."""
    _write_onnx2tf_sample(work, calib)
    calib_path = work / "calibration.npy"
    np.save(calib_path, calib)
    out_dir = work / "saved_model"
    cmd = _onnx2tf_command(env_dir, onnx_path, out_dir, quantization, calib_path, source)
    env = {
        **os.environ,
        "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "CUDA_VISIBLE_DEVICES": "-1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    try:
        proc = subprocess.run(
            cmd, cwd=work, env=env, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise TFLiteExportError(f"onnx2tf did not finish within {CONVERT_TIMEOUT_S} s") from exc
    if proc.returncode != 0 or not list(out_dir.glob("*.tflite")):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise TFLiteExportError(f"onnx2tf failed (exit {proc.returncode}):\n{tail}")
    return out_dir


def _collect(out_dir: Path, dest: Path, stem: str, quantization: str | None) -> Path:
    """Move onnx2tf's files next to the ONNX with precision suffixes; return the requested one."""
    names = {
        "float32": "fp32",
        "float16": "fp16",
        "integer_quant": "int8",
        "dynamic_range_quant": "int8_dynamic_range",
    }
    written: dict[str, Path] = {}
    for token, suffix in names.items():
        src = out_dir / f"{stem}_{token}.tflite"  # exact names: "_integer_quant" is also a suffix of others
        if src.is_file():
            target = dest / f"{stem}_{suffix}.tflite"
            shutil.move(str(src), target)
            written[suffix] = target
    wanted = {None: "fp32", "fp32": "fp32", "fp16": "fp16", "int8": "int8"}[quantization]
    if wanted not in written:
        raise TFLiteExportError(f"onnx2tf wrote no {wanted} model (found: {sorted(written)})")
    return written[wanted]


def export_tflite(
    source: ExportSource,
    output_dir: str | Path,
    *,
    quantization: str | None = None,
    calibration_data: str | Path | np.ndarray | None = None,
    max_images: int = 100,
    shape: tuple[int, int] | None = None,
    opset_version: int = 17,
    notes: object = None,
    env_dir: str | Path | None = None,
    gridsample: str = "builtin",
    progress=print,
) -> Path:
    """Write ``<variant>.onnx`` and ``<variant>_fp32/_fp16[/_int8].tflite``; return the requested file.

    ``quantization``: ``None``/``"fp32"`` → float32 file, ``"fp16"`` → float16 weights, ``"int8"`` →
    post-training integer quantisation calibrated on *calibration_data* (a folder of images, a ``.npy``
    of ``[N,H,W,3]`` floats in [0, 1], or such an array; at most *max_images* are used). The model's
    input is NHWC (onnx2tf's layout), normalised exactly like the ONNX input.

    Before conversion, slices of >5-D tensors are lowered so no Flex op is needed (see
    :mod:`tflite_rewrites`). ``gridsample="gather"`` also rewrites ``GridSample`` into plain gathers; the default keeps onnx2tf's own lowering, which the
    verification checks against PyTorch on every export.
    """
    if gridsample not in ("builtin", "gather"):
        raise ValueError(f"gridsample must be 'builtin' or 'gather', got {gridsample!r}")
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    hw = source.validate_shape(shape)
    calib = load_calibration(calibration_data, hw, max_images)
    env = converter_env.ensure_env(Path(env_dir) if env_dir else None, progress=progress)
    dest = Path(output_dir)
    dest.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(
        source,
        dest,
        shape=hw,
        opset_version=opset_version,
        notes=notes,
        sample_images=[(c * 255).astype(np.uint8) for c in calib[:1]],
    )
    with tempfile.TemporaryDirectory(prefix="rfdetr_onnx2tf_") as tmp:
        start = time.perf_counter()
        progress(f"Converting {onnx_path.name} to TFLite with onnx2tf (several minutes on CPU)…")
        convert_from = Path(tmp) / onnx_path.name  # same stem, so output names do not change
        rewrites = prepare_for_tflite(onnx_path, convert_from, gridsample=gridsample == "gather")
        progress(f"Graph rewrites for TFLite built-ins: {rewrites}")
        out_dir = run_onnx2tf(env, convert_from, Path(tmp), quantization, calib, source)
        result = _collect(out_dir, dest, onnx_path.stem, quantization)
        progress(f"TFLite conversion took {time.perf_counter() - start:.0f} s")
    return result


def run_tflite(
    model_path: str | Path,
    nhwc: np.ndarray,
    *,
    threads: int = 2,
    repeats: int = 0,
    env_dir: str | Path | None = None,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Run a ``.tflite`` on a normalised NHWC batch (one image at a time) in the converter venv.

    Returns the per-output arrays (batch stacked) and the worker's info: runtime used (LiteRT or
    TensorFlow), Flex ops, per-call latencies of *repeats* timed single-image runs.
    """
    env = converter_env.ensure_env(Path(env_dir) if env_dir else None)
    with tempfile.TemporaryDirectory(prefix="rfdetr_tflite_run_") as tmp:
        tmp_path = Path(tmp)
        np.save(tmp_path / "inputs.npy", np.ascontiguousarray(nhwc, dtype=np.float32))
        cmd = [
            str(converter_env.env_python(env)),
            str(WORKER),
            str(model_path),
            str(tmp_path / "inputs.npy"),
            str(tmp_path / "outputs.npz"),
            str(tmp_path / "result.json"),
            str(threads),
            str(repeats),
        ]
        env_vars = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env_vars, timeout=CONVERT_TIMEOUT_S)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            raise TFLiteExportError(f"Running {model_path} in the TFLite interpreter failed:\n{tail}")
        info = json.loads((tmp_path / "result.json").read_text())
        with np.load(tmp_path / "outputs.npz") as data:
            outputs = [data[f"out{i}"] for i in range(len(data.files))]
    return outputs, info
