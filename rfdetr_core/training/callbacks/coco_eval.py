"""COCO evaluation of the validation / test split at the end of each epoch.

mAP@50:95, @50, @75 and mAR@100 come from pycocotools (via :class:`rfdetr_core.evaluation.CocoEvaluator`),
per-class AP from its precision table, and F1 / precision / recall from a confidence sweep at
IoU 0.5 (macro-averaged over classes with ground truth, at the F1-optimal threshold). Metrics are
logged as ``val/<name>`` (``test/<name>``), the EMA model's as ``val/ema_<name>``, per-class AP as
``val/AP/<class>``. ``last_metrics`` keeps the full nested result (per-class tables) for callers
such as the studio's progress callback.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
import torch

from rfdetr_core.evaluation import CocoEvaluator, sweep
from rfdetr_core.evaluation.coco_eval import pixel_ground_truth

logger = logging.getLogger(__name__)

SCALARS = ("mAP_50_95", "mAP_50", "mAP_75", "mAR")


def _cpu(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in d.items()} for d in items]


def evaluate(
    predictions: list[dict], targets: list[dict], class_names: list[str], max_dets: int = 100
) -> dict:
    """All metrics of one model on one split: scalars plus ``per_class`` (AP, F1, P, R per class)."""
    keep = len(class_names)
    preds = []
    for p in predictions:  # the head's extra "no object" column is not a class
        mask = p["labels"] < keep
        preds.append({"boxes": p["boxes"][mask], "scores": p["scores"][mask], "labels": p["labels"][mask]})
    evaluator = CocoEvaluator(class_names, max_dets=max_dets)
    evaluator.update(preds, targets)
    coco = evaluator.compute()
    swept = sweep(preds, targets).summary(class_names)
    metrics: dict[str, Any] = {name: float(coco[name]) for name in SCALARS}
    metrics.update(
        F1=swept["F1"], precision=swept["precision"], recall=swept["recall"], threshold=swept["threshold"]
    )
    per_class = {}
    for name, row in coco["per_class"].items():
        entry = {
            "AP_50_95": row.get("AP"),
            "AP_50": row.get("AP50"),
            "AR": row.get("AR"),
            "num_gt": row.get("num_gt", 0),
        }
        entry.update(swept["per_class"].get(name, {}))
        per_class[name] = entry
    metrics["per_class"] = per_class
    return metrics


class COCOEvalCallback(pl.Callback):
    """Accumulate the module's eval-step outputs and log COCO metrics at epoch end."""

    def __init__(self, class_names: list[str] | None = None, max_dets: int = 100) -> None:
        super().__init__()
        self.class_names = class_names
        self.max_dets = max_dets
        self.last_metrics: dict[str, Any] = {}
        self._buffers: dict[str, list] = {}

    def _reset(self) -> None:
        self._buffers = {"results": [], "ema_results": [], "targets": []}

    def _collect(self, outputs: Any) -> None:
        if not isinstance(outputs, dict):
            return
        self._buffers["targets"].extend(pixel_ground_truth(t) for t in _cpu(outputs["targets"]))
        self._buffers["results"].extend(_cpu(outputs["results"]))
        if "ema_results" in outputs:
            self._buffers["ema_results"].extend(_cpu(outputs["ema_results"]))

    def _names(self, pl_module: pl.LightningModule) -> list[str]:
        names = self.class_names or getattr(pl_module, "class_names", None)
        num_classes = int(pl_module.model_config.num_classes)
        names = list(names or [])[:num_classes]
        return names + [f"class_{i}" for i in range(len(names), num_classes)]

    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prefix: str) -> None:
        if trainer.sanity_checking or not self._buffers.get("targets"):
            return
        names = self._names(pl_module)
        results: dict[str, Any] = {}
        for key, tag in (("results", ""), ("ema_results", "ema_")):
            if not self._buffers[key]:
                continue
            metrics = evaluate(self._buffers[key], self._buffers["targets"], names, self.max_dets)
            results[tag or "regular"] = metrics
            for name, value in metrics.items():
                if name != "per_class" and not math.isnan(value):
                    pl_module.log(f"{prefix}/{tag}{name}", value, on_epoch=True, sync_dist=False)
            if not tag:
                for cls, row in metrics["per_class"].items():
                    ap = row.get("AP_50_95")
                    if ap is not None and not math.isnan(ap):  # None: class without ground truth
                        pl_module.log(f"{prefix}/AP/{cls}", float(ap), on_epoch=True)
        self.last_metrics = {"split": prefix, "epoch": trainer.current_epoch, **results}
        self._reset()

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._collect(outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(outputs)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, pl_module, "test")
