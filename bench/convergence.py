"""Convergence side by side: rfdetr_core vs the reference ``rfdetr`` from the same initial weights.

Both trainers start from one random RF-DETR Nano (saved once, loaded by both as
``pretrain_weights``), see the same generated dataset with the same settings (no augmentation,
multi-scale off, EMA off, seed 0) and run the same number of optimiser steps with their own
Lightning stack. Printed: both per-step loss curves, the mean loss over the last quarter of the
steps with its ratio (target: ours <= 1.10 x reference), and the final validation mAP of each.

    .venv/bin/python bench/convergence.py [--epochs 8] [--resolution 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT))

ARCH = dict(num_classes=2, num_queries=100, group_detr=4)


def _recorder(losses: list[float]):
    import pytorch_lightning as pl
    import torch

    class LossRecorder(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            losses.append(float(loss.detach()) if isinstance(loss, torch.Tensor) else float("nan"))

    return LossRecorder()


def _train_kwargs(data: str, out: str, epochs: int, lr: float) -> dict:
    return dict(
        dataset_dir=data,
        output_dir=out,
        epochs=epochs,
        batch_size=4,
        num_workers=0,
        multi_scale=False,
        aug_config={},
        use_ema=False,
        seed=0,
        lr=lr,
        lr_encoder=lr,
        tensorboard=False,
        eval_interval=epochs,
    )


def _metrics(trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("val/mAP_50", "val/mAP_50_95")}


def run_ours(init: str, kwargs: dict, resolution: int) -> tuple[list[float], dict]:
    from rfdetr_core import RFDETRNano
    from rfdetr_core.training.datamodule import RFDETRDataModule
    from rfdetr_core.training.module import RFDETRModule
    from rfdetr_core.training.trainer import build_trainer

    model = RFDETRNano(**ARCH, pretrain_weights=init, resolution=resolution)
    tc = model.get_train_config(**kwargs)
    losses: list[float] = []
    trainer = build_trainer(
        tc, model.model_config, accelerator="cpu", callbacks=[_recorder(losses)], logger=False
    )
    trainer.fit(
        RFDETRModule(model.model_config, tc, model=model.model.model),
        RFDETRDataModule(model.model_config, tc),
    )
    return losses, _metrics(trainer)


def run_reference(init: str, kwargs: dict, resolution: int) -> tuple[list[float], dict]:
    from rfdetr import RFDETRNano
    from rfdetr.training import RFDETRDataModule, RFDETRModelModule, build_trainer

    model = RFDETRNano(**ARCH, pretrain_weights=init, resolution=resolution)
    tc = model.get_train_config(**kwargs)
    losses: list[float] = []
    trainer = build_trainer(tc, model.model_config, accelerator="cpu", logger=False)
    trainer.callbacks.append(_recorder(losses))
    trainer.fit(RFDETRModelModule(model.model_config, tc), RFDETRDataModule(model.model_config, tc))
    return losses, _metrics(trainer)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    from rfdetr_core import RFDETRNano
    from tests.support.training_fixtures import make_shapes_dataset

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_shapes_dataset(Path(tmp) / "ds", n=16, size=args.resolution, same_images=False)
        init = Path(tmp) / "init_nano.pth"
        torch.manual_seed(0)
        RFDETRNano(**ARCH, pretrain_weights=None, resolution=args.resolution).save_checkpoint(init)
        curves, finals = {}, {}
        for name, runner in (("reference", run_reference), ("ours", run_ours)):
            kwargs = _train_kwargs(str(data), str(Path(tmp) / name), args.epochs, args.lr)
            curves[name], finals[name] = runner(str(init), kwargs, args.resolution)

    steps = min(len(c) for c in curves.values())
    print(
        f"RF-DETR Nano from the same random init, {steps} steps, batch 4, {args.resolution} px, lr {args.lr}"
    )
    print("step  reference      ours")
    for i in range(steps):
        print(f"{i:4d}  {curves['reference'][i]:9.4f}  {curves['ours'][i]:9.4f}")
    tail = max(1, steps // 4)
    means = {k: statistics.fmean(c[steps - tail : steps]) for k, c in curves.items()}
    for name in curves:
        print(f"{name:9s} mean loss of last {tail} steps {means[name]:.4f}; final val {finals[name]}")
    print(f"loss ratio ours/reference: {means['ours'] / means['reference']:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
