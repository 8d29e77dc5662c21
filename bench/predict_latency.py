"""predict() latency and peak memory: rfdetr_core vs the reference ``rfdetr`` (same weights, same image).

Both models get identical weights (ours is built, saved in the official format, and both load that
file), the same 640x480 image and the same thread count. Calls alternate ours/reference so load
from other processes hits both alike. Prints medians, ours/reference ratios, a stage breakdown of
our predict() and, with --profile, the top operators of one forward pass of each.

Peak memory is measured in a fresh subprocess per (implementation, variant, mode): the peak RSS
over model load + predict calls above the RSS after imports, and the process's peak RSS.

    .venv/bin/python bench/predict_latency.py                      # Nano, Small; eager + optimized
    .venv/bin/python bench/predict_latency.py --variants Nano Small Medium Base Large --runs 20
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

IMAGE_SHAPE = (480, 640)


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)


def make_image() -> np.ndarray:
    """A deterministic 640x480 RGB image with structure (gradients and blocks)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : IMAGE_SHAPE[0], 0 : IMAGE_SHAPE[1]]
    img = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    for _ in range(8):
        y, x = rng.integers(0, 400), rng.integers(0, 560)
        img[y : y + 80, x : x + 80] = rng.integers(0, 256, 3)
    return img


def load_pair(variant: str, weights: Path):
    """(ours, reference) with the same weights; the file is written by ours on first use."""
    import rfdetr

    import rfdetr_core

    if not weights.exists():
        torch.manual_seed(0)
        getattr(rfdetr_core, f"RFDETR{variant}")(pretrain_weights=None).save_checkpoint(weights)
    ours = getattr(rfdetr_core, f"RFDETR{variant}")(pretrain_weights=str(weights))
    ref = getattr(rfdetr, f"RFDETR{variant}")(pretrain_weights=str(weights))
    return ours, ref


def timed(fn, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def interleaved(fns: dict[str, callable], warmup: int, runs: int) -> dict[str, float]:
    """Median seconds per call, alternating the callables call by call."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in samples.items()}


def stage_breakdown(ours, image: np.ndarray, runs: int) -> dict[str, float]:
    """Median ms of our predict() stages: load+preprocess, forward, postprocess+Detections."""
    from rfdetr_core import inference

    cfg, ctx = ours.model_config, ours.model
    size = (ctx.resolution, ctx.resolution)
    stages: dict[str, list[float]] = {"preprocess": [], "forward": [], "postprocess": []}
    with torch.inference_mode():
        for _ in range(runs):
            t0 = time.perf_counter()
            loaded = [inference.load_image(image, num_channels=cfg.num_channels, keep_source=True)]
            batch = inference.preprocess(loaded, size, ours.means, ours.stds, ctx.device)
            t1 = time.perf_counter()
            out = ours._forward(batch)
            t2 = time.perf_counter()
            res = ctx.postprocess(out, torch.tensor([IMAGE_SHAPE]))
            names, coco = inference.class_name_table(ours.class_names, cfg.num_classes)
            inference.to_detections(
                res[0],
                threshold=0.5,
                source_shape=IMAGE_SHAPE,
                names=names,
                num_classes=cfg.num_classes,
                coco_ids=coco,
                source=loaded[0].source,
            )
            t3 = time.perf_counter()
            for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                value_ms = value * 1e3
                stages[key].append(value_ms)
    return {k: round(statistics.median(v), 2) for k, v in stages.items()}


def profile_forward(model, image: np.ndarray, label: str, top: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    model.predict(image)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.predict(image)
    print(f"\n--- top {top} operators by self CPU time: {label} ---")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=40))


def _proc_status_mib(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        line = next(x for x in fh if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def memory_worker(impl: str, variant: str, mode: str, weights: str, threads: int) -> None:
    """Run in a subprocess: print JSON with the peak RSS (MiB) over model load + 5 predicts.

    The kernel's high-water mark is reset after the imports (``clear_refs`` 5), so the peak covers
    only this implementation's loading and inference, not the import of torch and friends.
    """
    _quiet()
    torch.set_num_threads(threads)
    module = __import__("rfdetr" if impl == "reference" else "rfdetr_core")
    image = make_image()
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")
    before = _proc_status_mib("VmRSS")
    model = getattr(module, f"RFDETR{variant}")(pretrain_weights=weights)
    if mode == "optimized":
        (getattr(model, "optimize_for_inference", None) or model.inference)()
    for _ in range(5):
        model.predict(image)
    peak = _proc_status_mib("VmHWM")
    print(json.dumps({"growth_mib": peak - before, "peak_mib": peak}))


def measure_memory(variant: str, mode: str, weights: Path, threads: int) -> dict[str, dict[str, float]]:
    out = {}
    for impl in ("ours", "reference"):
        cmd = [sys.executable, __file__, "--memory-worker", impl, variant, mode, str(weights), str(threads)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        out[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=["Nano", "Small"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="print the top operators of each forward")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--no-optimized", action="store_true", help="skip optimize_for_inference() timings")
    parser.add_argument("--memory-worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        impl, variant, mode, weights, threads = args.memory_worker
        memory_worker(impl, variant, mode, weights, int(threads))
        return

    _quiet()
    torch.set_num_threads(args.threads)
    image = make_image()
    workdir = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, image {IMAGE_SHAPE[1]}x{IMAGE_SHAPE[0]}, "
        f"warm-up {args.warmup}, median of {args.runs}"
    )
    for variant in args.variants:
        bench_variant(variant, args, image, workdir / f"{variant.lower()}.pth")
        report_memory(variant, args, workdir / f"{variant.lower()}.pth")


def bench_variant(variant: str, args: argparse.Namespace, image: np.ndarray, weights: Path) -> None:
    """Eager and optimized latency (interleaved), our stage split, optional profile, peak memory."""
    ours, ref = load_pair(variant, weights)
    calls = {"ours": lambda: ours.predict(image), "ref": lambda: ref.predict(image)}
    eager = interleaved(calls, args.warmup, args.runs)
    print(
        f"{variant:7s} predict            ours {eager['ours'] * 1e3:8.1f} ms   reference "
        f"{eager['ref'] * 1e3:8.1f} ms   ours/reference {eager['ours'] / eager['ref']:.3f}"
    )
    print(f"{'':7s} our stages (ms): {stage_breakdown(ours, image, max(5, args.runs // 2))}")
    if args.profile:
        profile_forward(ours, image, f"ours {variant}", 15)
        profile_forward(ref, image, f"reference {variant}", 15)
    if not args.no_optimized:
        ours.optimize_for_inference()
        (
            getattr(ref, "optimize_for_inference", None) or ref.inference
        )()  # renamed inference() in rfdetr 1.11
        opt = interleaved(calls, args.warmup, args.runs)
        print(
            f"{variant:7s} optimize_for_inf.  ours {opt['ours'] * 1e3:8.1f} ms   reference "
            f"{opt['ref'] * 1e3:8.1f} ms   ours/reference {opt['ours'] / opt['ref']:.3f}"
        )


def report_memory(variant: str, args: argparse.Namespace, weights: Path) -> None:
    """Peak RSS of each implementation, measured in fresh subprocesses."""
    if not args.no_memory:
        for mode in ("eager",) + (() if args.no_optimized else ("optimized",)):
            mem = measure_memory(variant, mode, weights, args.threads)
            print(
                f"{variant:7s} peak RSS ({mode:9s}) growth over load+predict: ours "
                f"{mem['ours']['growth_mib']:7.0f} MiB, reference {mem['reference']['growth_mib']:7.0f} MiB; "
                f"process peak: ours {mem['ours']['peak_mib']:6.0f} MiB, reference "
                f"{mem['reference']['peak_mib']:6.0f} MiB"
            )


if __name__ == "__main__":
    main()
