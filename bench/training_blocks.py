"""Training building blocks, ours vs the reference, side by side in one process (CPU).

    .venv/bin/python bench/training_blocks.py --repeats 7

* ``criterion``: matcher + loss forward + backward on an RF-DETR Nano training step's output shapes
  (batch 4, 13 query groups x 300 queries, 2 decoder layers + encoder proposals, 6 logits, ~8 boxes per
  image); the reference's ``SetCriterion`` is built from its config defaults.
* ``dataset``: ``__getitem__`` of the train split with the default augmentation (per-batch multi-scale:
  every sample at the largest size, random-size-crop branch, flip) on 640x480 JPEGs, and of the valid
  split (square resize). The reference: ``build_roboflow_from_coco`` with its defaults.
* ``sweep``: IoU-0.5 matching + 101-threshold F1 sweep over 200 images; the reference's
  ``build_matching_data`` + ``sweep_confidence_thresholds``.

Medians over ``--repeats``; ratio = reference / ours (above 1: ours is faster).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO))

from rfdetr_core.data import build_dataset  # noqa: E402
from rfdetr_core.evaluation import sweep  # noqa: E402
from rfdetr_core.training import SetCriterion, build_weight_dict  # noqa: E402


def compare(ours, reference, repeats: int) -> tuple[float, float]:
    """Median seconds of each, measured alternately so load from other processes hits both alike."""
    ours(), reference()  # warm-up
    ours_times, reference_times = [], []
    for _ in range(repeats):
        for fn, times in ((ours, ours_times), (reference, reference_times)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(ours_times), statistics.median(reference_times)


def report(name: str, times: tuple[float, float], per: int = 1) -> None:
    ours, theirs = times[0] / per * 1e3, times[1] / per * 1e3
    print(f"{name:<36} ours {ours:9.2f} ms   reference {theirs:9.2f} ms   ratio {theirs / ours:5.2f}")


def bench_criterion(repeats: int) -> None:
    from rfdetr.config import RFDETRNanoConfig, TrainConfig
    from rfdetr.models.lwdetr import build_criterion_from_config

    generator = torch.Generator().manual_seed(0)
    batch, queries, classes = 4, 13 * 300, 6

    def layer():
        boxes = torch.cat(
            [
                torch.rand(batch, queries, 2, generator=generator) * 0.6 + 0.2,
                torch.rand(batch, queries, 2, generator=generator) * 0.3 + 0.02,
            ],
            -1,
        )
        return {
            "pred_logits": torch.randn(batch, queries, classes, generator=generator).requires_grad_(),
            "pred_boxes": boxes.requires_grad_(),
        }

    outputs = layer()
    outputs["aux_outputs"] = [layer()]
    outputs["enc_outputs"] = layer()
    targets = []
    for n in (8, 5, 12, 7):
        boxes = torch.cat(
            [
                torch.rand(n, 2, generator=generator) * 0.6 + 0.2,
                torch.rand(n, 2, generator=generator) * 0.3 + 0.02,
            ],
            -1,
        )
        targets.append({"labels": torch.randint(0, classes - 1, (n,), generator=generator), "boxes": boxes})
    reference, _ = build_criterion_from_config(
        RFDETRNanoConfig(num_classes=classes - 1), TrainConfig(dataset_dir=".", output_dir=".")
    )
    ours = SetCriterion(weight_dict=build_weight_dict(2))
    reference.train(), ours.train()

    def step(criterion):
        def run():
            losses = criterion(outputs, targets)
            total = sum(losses[k] * w for k, w in criterion.weight_dict.items() if k in losses)
            total.backward()

        return run

    report("criterion fwd+bwd (Nano step)", compare(step(ours), step(reference), repeats))


def bench_dataset(repeats: int) -> None:
    from rfdetr.datasets.coco import build_roboflow_from_coco

    from studio.services.projects.synthetic import make_synthetic_coco

    args = dict(square_resize_div_64=True, segmentation_head=False, multi_scale=True, expanded_scales=True)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        root = Path(tmp)
        make_synthetic_coco(root, {"train": 24, "valid": 24}, size=(640, 480))
        namespace = SimpleNamespace(dataset_dir=str(root), patch_size=16, num_windows=2, **args)
        for split, ref_split in (("train", "train"), ("valid", "val")):
            ours = build_dataset(root, split, 384)
            theirs = build_roboflow_from_coco(ref_split, namespace, 384)
            times = compare(
                lambda d=ours: [d[i] for i in range(len(d))],
                lambda d=theirs: [d[i] for i in range(len(d))],
                repeats,
            )
            report(f"dataset[{split}] per sample (640x480)", times, per=len(ours))


def bench_sweep(repeats: int) -> None:
    spec = importlib.util.spec_from_file_location(
        "_ref_matching", Path(importlib.util.find_spec("rfdetr").origin).parent / "evaluation" / "matching.py"
    )
    matching = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(matching)
    spec = importlib.util.spec_from_file_location(
        "_ref_sweep", Path(importlib.util.find_spec("rfdetr").origin).parent / "evaluation" / "f1_sweep.py"
    )
    f1_sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(f1_sweep)
    from test_evaluation import random_world

    predictions, targets = [], []
    for seed in range(10):
        _, p, t = random_world(seed, num_images=20)
        predictions += p
        targets += t

    def reference():
        data = matching.build_matching_data(predictions, targets, iou_threshold=0.5)
        ids = sorted(data)
        f1_sweep.sweep_confidence_thresholds(
            [data[c] for c in ids],
            np.linspace(0, 1, 101),
            [i for i, c in enumerate(ids) if data[c]["total_gt"] > 0],
        )

    report("F1 sweep (200 images)", compare(lambda: sweep(predictions, targets), reference, repeats))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}")
    bench_criterion(args.repeats)
    bench_dataset(args.repeats)
    bench_sweep(args.repeats)


if __name__ == "__main__":
    main()
