"""Runs a ``.tflite`` model inside the converter venv (executed there as a script, not imported).

The main environment has no TensorFlow, so running a TFLite file happens in a subprocess with the
converter venv's interpreter. It prefers the LiteRT interpreter (``ai_edge_litert``) — the runtime phones
and edge boxes use — and only falls back to TensorFlow's own interpreter, which also runs Flex
(TensorFlow-kernel) ops, saying so in its result: a model that needs Flex is not a portable bundle.

Only numpy and the interpreters may be imported here; nothing from ``rfdetr_core``.

Usage: python tflite_worker.py MODEL INPUTS.npy OUTPUTS.npz RESULT.json THREADS REPEATS
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np


def _interpreter(model_path: str, threads: int):
    """(interpreter, runtime name, error of LiteRT if it refused the model)."""
    litert_error = None
    try:
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=model_path, num_threads=threads)
        interp.allocate_tensors()
        return interp, "ai_edge_litert", None
    except Exception as exc:  # e.g. "Select TensorFlow op(s) ... FlexErf"
        litert_error = f"{type(exc).__name__}: {exc}"
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=model_path, num_threads=threads)
    interp.allocate_tensors()
    return interp, "tensorflow.lite", litert_error


def _ordered_outputs(interp) -> list[dict]:
    """Outputs in the ONNX order: onnx2tf names them ``...:0``, ``...:1`` by original position."""

    def position(detail: dict) -> tuple[int, int]:
        tail = detail["name"].rsplit(":", 1)[-1]
        return (int(tail), detail["index"]) if tail.isdigit() else (1 << 30, detail["index"])

    return sorted(interp.get_output_details(), key=position)


def _invoke(interp, batch: np.ndarray) -> list[np.ndarray]:
    inp = interp.get_input_details()[0]
    data = batch
    if inp["dtype"] != np.float32:  # full-integer models take quantised input
        scale, zero = inp["quantization"]
        data = np.clip(np.round(batch / scale + zero), np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max)
        data = data.astype(inp["dtype"])
    interp.set_tensor(inp["index"], data)
    interp.invoke()
    outs = []
    for det in _ordered_outputs(interp):
        value = interp.get_tensor(det["index"])
        if det["dtype"] != np.float32 and det["quantization"][0]:
            scale, zero = det["quantization"]
            value = (value.astype(np.float32) - zero) * scale
        outs.append(np.array(value, dtype=np.float32))
    return outs


def main(argv: list[str]) -> None:
    model_path, inputs_path, outputs_path, result_path, threads, repeats = argv
    images = np.load(inputs_path)  # [N,H,W,3] normalised, NHWC (onnx2tf's input layout)
    interp, runtime, litert_error = _interpreter(model_path, int(threads))
    input_shape = [int(d) for d in interp.get_input_details()[0]["shape"]]
    outputs: list[list[np.ndarray]] = []
    for i in range(len(images)):
        outputs.append(_invoke(interp, images[i : i + 1]))
    times = []
    for _ in range(int(repeats)):
        start = time.perf_counter()
        _invoke(interp, images[:1])
        times.append(time.perf_counter() - start)
    arrays = {f"out{j}": np.concatenate([o[j] for o in outputs]) for j in range(len(outputs[0]))}
    np.savez(outputs_path, **arrays)
    ops = set()
    try:
        ops = {d["op_name"] for d in interp._get_ops_details()}
    except Exception:
        pass
    result = {
        "runtime": runtime,
        "litert_error": litert_error,
        "flex_ops": sorted(o for o in ops if o.startswith("Flex")),
        "input_shape": input_shape,
        "input_dtype": str(interp.get_input_details()[0]["dtype"].__name__),
        "latency_s": times,
        "median_latency_s": statistics.median(times) if times else None,
        "output_names": [d["name"] for d in _ordered_outputs(interp)],
    }
    with open(result_path, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main(sys.argv[1:])
