"""``rfdetr-studio review PROJECT --run ID``: the Review page's metrics of a run on a split, as JSON.

The predictions are the page's (:func:`~studio.services.review.predictions.compute_predictions`, stored
in the project): computed when the split has none yet or they are stale, else reused. The numbers are
the page's too (:func:`~studio.services.review.analysis.open_review`): pycocotools' mAP over every
prediction, and per-class precision / recall / counts at one confidence, by default the F1-optimal one
the page marks as best.
"""

from __future__ import annotations

import argparse
from typing import Any

from studio.commands.common import Outcome, add_common, progress_bar, project_store

NAMES = ("review",)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("review", help="a run's metrics on a split (mAP, per-class AP / P / R, counts)")
    p.add_argument("project", help="folder name (slug) or display name")
    p.add_argument("--run", type=int, required=True, help="run id (see `runs`)")
    p.add_argument("--split", default="valid", help="split to review (default valid)")
    p.add_argument("--conf", type=float, help="confidence for the counts (default: the F1-optimal one)")
    p.add_argument("--iou", type=float, default=0.5, help="IoU for a match (default 0.5)")
    p.add_argument("--recompute", action="store_true", help="run the model again even if predictions exist")
    add_common(p)
    p.set_defaults(handler=run_review)


def _ensure_predictions(store: Any, run_id: int, split: str, again: bool) -> Any:
    from studio.services.review import predictions as rp

    info = rp.prediction_status(store, run_id, split)
    if info is not None and not info.stale and not again:
        return info
    with progress_bar(f"predict {split}", 1.0, unit="img") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.to(done)

        return rp.compute_predictions(store, run_id, split, progress=progress)


def _per_class(coco: dict[str, Any], scored: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": ap["name"],
            "AP_50_95": ap["AP_50_95"],
            "AP_50": ap["AP_50"],
            "AR": ap["AR"],
            **{k: pr[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn", "num_gt")},
        }
        for ap, pr in zip(coco["per_class"], scored.per_class, strict=True)
    ]


def review_doc(store: Any, args: argparse.Namespace) -> dict[str, Any]:
    from studio.services.review import analysis
    from studio.services.review import predictions as rp

    info = _ensure_predictions(store, args.run, args.split, args.recompute)
    review = analysis.open_review(store, args.run, args.split)
    best = review.f1_optimal(args.iou)
    conf = float(best["threshold"]) if args.conf is None else float(args.conf)
    scored = review.score(conf, args.iou)
    coco = review.coco_metrics()
    return {
        "project": store.path.name,
        "run_id": args.run,
        "split": args.split,
        "iou": args.iou,
        "conf": conf,
        "conf_is_f1_optimal": args.conf is None,
        "mAP_50_95": coco["mAP_50_95"],
        "mAP_50": coco["mAP_50"],
        "coco": {k: v for k, v in coco.items() if k != "per_class"},
        "recorded": rp.recorded_map(store, args.run) if args.split == "valid" else None,
        "totals": scored.totals,
        "per_class": _per_class(coco, scored),
        "predictions": {
            "n_images": info.n_images,
            "n_predictions": info.n_predictions,
            "created_at": info.created_at,
        },
    }


def _text(doc: dict[str, Any]) -> str:
    t = doc["totals"]
    lines = [
        f"Run #{doc['run_id']} on {doc['split']}: mAP@50:95 {doc['mAP_50_95']:.3f}  mAP@50 {doc['mAP_50']:.3f}",
        f"at conf {doc['conf']:.2f}, IoU {doc['iou']:.2f}: P {t['precision']:.3f}  R {t['recall']:.3f}  "
        f"TP {t['tp']}  FP {t['fp']}  FN {t['fn']}",
    ]
    for row in doc["per_class"]:
        ap = "-" if row["AP_50_95"] is None else f"{row['AP_50_95']:.3f}"
        lines.append(
            f"  {row['name']:<20} AP {ap:<6} P {row['precision']:.3f}  R {row['recall']:.3f}  gt {row['num_gt']}"
        )
    return "\n".join(lines)


def run_review(args: argparse.Namespace) -> Outcome:
    with project_store(args) as store:
        doc = review_doc(store, args)
    return Outcome(doc, _text(doc))
