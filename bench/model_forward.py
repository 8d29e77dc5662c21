"""Forward-pass speed of our RF-DETR network vs the reference ``rfdetr`` one, same weights, same input.

Both models are built in this process (reference: random init, offline), our model loads the
reference's state dict, and the two are timed *interleaved* (ref, ours, ref, ours, ...) so load
from other processes hits both alike. Prints medians and the ratio ours / reference.

    .venv/bin/python bench/model_forward.py --variants nano small --runs 15 --threads 2
    .venv/bin/python bench/model_forward.py --variants nano --profile   # top ops of both
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from rfdetr_core.models import build_model, model_config_from_args

REFERENCE_CLASSES = {
    "nano": "RFDETRNano",
    "small": "RFDETRSmall",
    "medium": "RFDETRMedium",
    "large": "RFDETRLarge",
}


def build_pair(variant: str) -> tuple[torch.nn.Module, torch.nn.Module, int]:
    import rfdetr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapper = getattr(rfdetr, REFERENCE_CLASSES[variant])(pretrain_weights=None, device="cpu")
    reference = wrapper.model.model.eval()
    ours = build_model(model_config_from_args(wrapper.model.args)).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours, wrapper.model.args.resolution


def time_interleaved(
    models: dict[str, torch.nn.Module], images: torch.Tensor, runs: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and process CPU seconds per forward (CPU time is less sensitive to other load)."""
    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for _ in range(warmup):
            for model in models.values():
                model(images)
        for _ in range(runs):
            for name, model in models.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                model(images)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def profile(models: dict[str, torch.nn.Module], images: torch.Tensor, rows: int = 15) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch.inference_mode():
        for name, model in models.items():
            model(images)
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    model(images)
            print(f"\n=== {name} (3 forwards) ===")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=["nano", "small"], choices=sorted(REFERENCE_CLASSES))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, batch 1, default resolution per variant")
    for variant in args.variants:
        reference, ours, resolution = build_pair(variant)
        images = torch.randn(1, 3, resolution, resolution)
        with torch.inference_mode():
            ref_out, our_out = reference(images), ours(images)
        diff = max((ref_out[k] - our_out[k]).abs().max().item() for k in ("pred_logits", "pred_boxes"))
        models = {"reference": reference, "ours": ours}
        if args.profile:
            profile(models, images)
            continue
        wall, cpu = time_interleaved(models, images, args.runs, args.warmup)
        for label, times in (("wall", wall), ("cpu ", cpu)):
            med = {name: statistics.median(values) * 1000 for name, values in times.items()}
            print(
                f"{variant:6s} {resolution}px {label} median  reference {med['reference']:7.1f} ms  "
                f"ours {med['ours']:7.1f} ms  ratio ours/ref {med['ours'] / med['reference']:.3f}  "
                f"(max |diff| {diff:.1e}, {args.runs} runs)"
            )


if __name__ == "__main__":
    main()
