"""Train-step time and peak RSS: rfdetr_core vs the reference ``rfdetr``, RF-DETR Nano, CPU.

Same data (a generated COCO dataset), batch 2, resolution 384, random initial weights, each
implementation's own Lightning stack (module + data module + ``build_trainer``, EMA on, no
augmentation besides the default resize (no scale jitter), ``num_workers=0``), in its own subprocess so peak RSS is
that implementation's alone. Step time = wall time between consecutive ``on_train_batch_start``
calls (data loading + forward + loss + backward + clipping + AdamW + EMA), median after warm-up.

    .venv/bin/python bench/train_step.py [--steps 12] [--warmup 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timer_callback(times: list[float]):
    import pytorch_lightning as pl

    class StepTimer(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            times.append(time.perf_counter())

    return StepTimer()


def _train_kwargs(data: str, out: str) -> dict:
    return dict(
        dataset_dir=data,
        output_dir=out,
        epochs=1,
        batch_size=2,
        num_workers=0,
        multi_scale=False,
        scale_jitter=False,  # defaults to True on both sides: a random crop for half the samples
        aug_config={},
        seed=0,
        tensorboard=False,
    )


def run_ours(data: str, out: str, steps: int) -> list[float]:
    from rfdetr_core import RFDETRNano
    from rfdetr_core.training.datamodule import RFDETRDataModule
    from rfdetr_core.training.module import RFDETRModule
    from rfdetr_core.training.trainer import build_trainer

    model = RFDETRNano(pretrain_weights=None, num_classes=2)
    tc = model.get_train_config(**_train_kwargs(data, out))
    times: list[float] = []
    module = RFDETRModule(model.model_config, tc, model=model.model.model)
    trainer = build_trainer(
        tc,
        model.model_config,
        accelerator="cpu",
        callbacks=[_timer_callback(times)],
        limit_train_batches=steps + 1,
        limit_val_batches=0,
        logger=False,
    )
    trainer.fit(module, RFDETRDataModule(model.model_config, tc))
    return times


def run_reference(data: str, out: str, steps: int) -> list[float]:
    from rfdetr import RFDETRNano
    from rfdetr.training import RFDETRDataModule, RFDETRModelModule, build_trainer

    model = RFDETRNano(pretrain_weights=None, num_classes=2)
    tc = model.get_train_config(**_train_kwargs(data, out))
    times: list[float] = []
    trainer = build_trainer(
        tc,
        model.model_config,
        accelerator="cpu",
        limit_train_batches=steps + 1,
        limit_val_batches=0,
        logger=False,
    )
    trainer.callbacks.append(_timer_callback(times))
    trainer.fit(RFDETRModelModule(model.model_config, tc), RFDETRDataModule(model.model_config, tc))
    return times


def child(impl: str, data: str, steps: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as out:
        times = (run_ours if impl == "ours" else run_reference)(data, out, steps)
    deltas = [b - a for a, b in zip(times, times[1:], strict=False)]
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"impl": impl, "deltas": deltas, "peak_rss_mib": rss_mib}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "DATA"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.steps, args.threads)
        return
    from tests.support.training_fixtures import make_shapes_dataset

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = str(make_shapes_dataset(Path(tmp) / "ds", n=16, size=384, same_images=False))
        for impl in ("reference", "ours"):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    impl,
                    data,
                    "--steps",
                    str(args.steps),
                    "--threads",
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{impl} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            results[impl] = json.loads(line[len("RESULT ") :])
    print(
        f"RF-DETR Nano train step, CPU {args.threads} threads, batch 2, 384 px, "
        f"{args.steps - args.warmup} timed steps after {args.warmup} warm-up"
    )
    med = {}
    for impl, res in results.items():
        timed = res["deltas"][args.warmup :]
        med[impl] = statistics.median(timed)
        print(
            f"  {impl:9s} step median {med[impl]:.3f} s (min {min(timed):.3f}, max {max(timed):.3f})  "
            f"peak RSS {res['peak_rss_mib']:.0f} MiB"
        )
    print(
        f"  ratio ours/reference: time {med['ours'] / med['reference']:.2f}x, "
        f"peak RSS {results['ours']['peak_rss_mib'] / results['reference']['peak_rss_mib']:.2f}x"
    )


if __name__ == "__main__":
    main()
