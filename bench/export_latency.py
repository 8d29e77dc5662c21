"""Median CPU latency of RF-DETR Nano: PyTorch (ours, reference) vs ONNX Runtime vs TFLite fp32/fp16/int8.

Also records how long each export takes. All runtimes use the same normalised 384x384 input, batch 1,
single-image calls after a warm-up, on ``--threads`` threads (default 2, as on CI).

    .venv/bin/python bench/export_latency.py                     # PyTorch + ONNX Runtime
    .venv/bin/python bench/export_latency.py --tflite            # + TFLite (one onnx2tf run, minutes)
    .venv/bin/python bench/export_latency.py --tflite-dir out/   # reuse .tflite files from an earlier run

Target: ONNX Runtime <= 0.8x our PyTorch latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rfdetr_core.export import backends, export_model, source_from_rfdetr
from rfdetr_core.export.images import normalise_nchw, synthetic_images, to_unit_nhwc
from rfdetr_core.variants import RFDETRNano


def _median_ms(times: list[float]) -> float:
    return round(statistics.median(times) * 1000, 1)


def _reference_torch_ms(state: dict, x: np.ndarray, threads: int, repeats: int) -> float | None:
    """The reference package's PyTorch forward on the same weights, if it is installed."""
    try:
        from rfdetr import RFDETRNano as RefNano
    except ImportError:
        return None
    ref = RefNano(pretrain_weights=None)
    ref.model.model.load_state_dict(state)
    _, _, times = backends.run_torch(ref.model.model, x, threads=threads, repeats=repeats)
    return _median_ms(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tflite", action="store_true", help="also convert to TFLite (fp32, fp16, int8)")
    parser.add_argument(
        "--tflite-dir", help="folder with rfdetr-nano_{fp32,fp16,int8}.tflite from an earlier run"
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.manual_seed(0)
    rf = RFDETRNano(pretrain_weights=None)
    src = source_from_rfdetr(rf)
    x = normalise_nchw(to_unit_nhwc(synthetic_images(1), (src.resolution,) * 2), src.means, src.stds)
    rows: dict[str, dict] = {}

    _, _, times = backends.run_torch(src.model, x, threads=args.threads, repeats=args.repeats)
    rows["pytorch (ours)"] = {"median_ms": _median_ms(times)}
    ref_ms = _reference_torch_ms(src.model.state_dict(), x, args.threads, args.repeats)
    if ref_ms is not None:
        rows["pytorch (reference rfdetr)"] = {"median_ms": ref_ms}

    work = Path(tempfile.mkdtemp(prefix="bench_export_"))
    start = time.perf_counter()
    onnx_path = export_model(rf, work, format="onnx", verify=False, progress=lambda _: None)
    onnx_s = time.perf_counter() - start
    _, _, times = backends.run_onnx(onnx_path, x, threads=args.threads, repeats=args.repeats)
    rows["onnxruntime"] = {"median_ms": _median_ms(times), "export_s": round(onnx_s, 1)}

    tflite_dir = Path(args.tflite_dir) if args.tflite_dir else None
    if args.tflite and tflite_dir is None:
        start = time.perf_counter()
        export_model(rf, work, format="tflite", quantization="int8", verify=False, progress=lambda _: None)
        rows["_tflite_export_s (one onnx2tf run: fp32+fp16+int8)"] = {
            "export_s": round(time.perf_counter() - start, 1)
        }
        tflite_dir = work
    if tflite_dir is not None:
        for precision in ("fp32", "fp16", "int8"):
            path = tflite_dir / f"rfdetr-nano_{precision}.tflite"
            if path.is_file():
                _, _, times, info = backends.run_tflite_model(
                    path, x, threads=args.threads, repeats=args.repeats
                )
                rows[f"tflite {precision}"] = {"median_ms": _median_ms(times), "runtime": info["runtime"]}

    base = rows["pytorch (ours)"]["median_ms"]
    print(
        f"RF-DETR Nano, {src.resolution}px, batch 1, CPU, {args.threads} threads, {args.repeats} timed calls"
    )
    print(f"{'runtime':40s} {'median ms':>10s} {'x ours':>8s} {'export s':>9s}")
    for name, row in rows.items():
        ms = row.get("median_ms")
        ratio = f"{ms / base:.2f}" if ms else ""
        print(f"{name:40s} {ms if ms else '':>10} {ratio:>8s} {row.get('export_s', ''):>9}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
