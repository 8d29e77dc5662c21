"""Run the same normalised images through PyTorch, ONNX Runtime or a TFLite file.

Each backend returns ``(boxes [N,Q,4], logits [N,Q,C], latencies_s)`` so the verifier compares like with
like. Latency is measured the same way everywhere: single-image calls after a warm-up, on the same
number of threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rfdetr_core.export.tflite import run_tflite

Outputs = tuple[np.ndarray, np.ndarray, list[float]]


def _time_calls(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def run_torch(model: nn.Module, nchw: np.ndarray, *, threads: int = 2, repeats: int = 0) -> Outputs:
    """The PyTorch model in eval mode, one image per call, on *threads* CPU threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = model.eval()
        device = next(model.parameters()).device
        boxes, logits = [], []
        with torch.inference_mode():
            for i in range(len(nchw)):
                out = model(torch.from_numpy(nchw[i : i + 1]).to(device))
                boxes.append(out["pred_boxes"].float().cpu().numpy())
                logits.append(out["pred_logits"].float().cpu().numpy())
            first = torch.from_numpy(nchw[:1]).to(device)
            times = _time_calls(lambda: model(first), repeats) if repeats else []
    finally:
        torch.set_num_threads(previous)
    return np.concatenate(boxes), np.concatenate(logits), times


def onnx_session(path: str | Path, threads: int = 2):
    """An ONNX Runtime CPU session with all graph optimisations on a fixed thread count."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_onnx(path: str | Path, nchw: np.ndarray, *, threads: int = 2, repeats: int = 0) -> Outputs:
    """ONNX Runtime; honours a static batch dimension by running fixed-size chunks."""
    session = onnx_session(path, threads)
    inp = session.get_inputs()[0]
    names = [o.name for o in session.get_outputs()]
    batch = inp.shape[0] if isinstance(inp.shape[0], int) else 1
    boxes, logits = [], []
    for start in range(0, len(nchw), batch):
        chunk = nchw[start : start + batch]
        count = len(chunk)
        if count < batch:  # pad a short last chunk by repeating its first image
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch - count, axis=0)])
        out = dict(zip(names, session.run(None, {inp.name: chunk}), strict=True))
        boxes.append(out["dets"][:count])
        logits.append(out["labels"][:count])
    one = {inp.name: np.repeat(nchw[:1], batch, axis=0)}
    times = _time_calls(lambda: session.run(None, one), repeats) if repeats else []
    return np.concatenate(boxes), np.concatenate(logits), times


def split_tflite_outputs(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Tell boxes from logits: boxes end in 4 columns; if both do, keep the worker's ONNX order."""
    if len(outputs) != 2:
        raise ValueError(f"Expected 2 outputs (boxes, logits) from the TFLite model, got {len(outputs)}")
    a, b = outputs
    if a.shape[-1] == 4 and b.shape[-1] != 4:
        return a, b
    if b.shape[-1] == 4 and a.shape[-1] != 4:
        return b, a
    return a, b  # both end in 4 (a 3-class head): the worker already ordered them dets, labels


def run_tflite_model(
    path: str | Path,
    nchw: np.ndarray,
    *,
    threads: int = 2,
    repeats: int = 0,
    env_dir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, list[float], dict]:
    """A ``.tflite`` in the converter venv's interpreter; inputs go in NHWC as onnx2tf expects."""
    nhwc = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
    outputs, info = run_tflite(path, nhwc, threads=threads, repeats=repeats, env_dir=env_dir)
    boxes, logits = split_tflite_outputs(outputs)
    return boxes, logits, list(info.get("latency_s") or []), info
