"""Review page: re-scoring a split at a new confidence (a slider move) vs re-running pycocotools.

Generates a detector-like split (500 images, 3-5 ground-truth boxes each, 300 predictions per image:
jittered boxes around the objects, mostly of the right class and scoring higher, the rest in the
background scoring lower; 6 classes) and times, side by side:

* ours: ``Review.score(conf)`` for ~20 slider positions (IoU 0.5; the one-off matching per IoU threshold
  and the construction are timed separately), plus the worst-first gallery of the result;
* the alternative: a full pycocotools evaluation of the predictions kept at the same confidence
  (``rfdetr_core.evaluation.CocoEvaluator``: conversion + COCOeval evaluate / accumulate / summarize).

Usage: ``.venv/bin/python bench/review_rescore.py [--images 500] [--preds 300] [--coco-runs 20]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from rfdetr_core.evaluation import CocoEvaluator
from studio.services.review.data import Boxes, ReviewData, ReviewImage
from studio.services.review.metrics import Review

SIZE = 640


def generate(n_images: int, n_preds: int, n_classes: int, seed: int = 0) -> ReviewData:
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n_images):
        n_gt = int(rng.integers(3, 6))
        xy = rng.uniform(0, SIZE - 150, (n_gt, 2))
        gt = np.concatenate([xy, xy + rng.uniform(20, 150, (n_gt, 2))], 1)
        gt_labels = rng.integers(0, n_classes, n_gt)
        near = rng.random(n_preds) < 0.15  # ~45 boxes around the objects, the rest background
        src = rng.integers(0, n_gt, n_preds)
        size = gt[src, 2:] - gt[src, :2]
        jitter = gt[src] + rng.normal(0, 0.12, (n_preds, 4)) * np.concatenate([size, size], 1)
        xy = rng.uniform(0, SIZE - 100, (n_preds, 2))
        background = np.concatenate([xy, xy + rng.uniform(10, 100, (n_preds, 2))], 1)
        boxes = np.where(near[:, None], jitter, background)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        right = near & (rng.random(n_preds) < 0.8)
        labels = np.where(right, gt_labels[src], rng.integers(0, n_classes, n_preds))
        scores = np.where(near, rng.beta(4, 2, n_preds), rng.beta(1, 6, n_preds))
        images.append(
            ReviewImage(
                i + 1,
                Path(f"{i + 1}.jpg"),
                SIZE,
                SIZE,
                Boxes(gt, gt_labels),
                Boxes(boxes, labels, scores, np.arange(n_preds)),
            )
        )
    return ReviewData(1, "valid", "best", [f"class{c}" for c in range(n_classes)], images)


def pycocotools_at(data: ReviewData, conf: float) -> float:
    """What a user would otherwise run: evaluate the predictions kept at ``conf`` from scratch."""
    evaluator = CocoEvaluator(data.class_names, max_dets=100)
    for im in data.images:
        keep = im.preds.scores >= conf
        evaluator.update(
            [
                {
                    "boxes": im.preds.xyxy[keep],
                    "scores": im.preds.scores[keep],
                    "labels": im.preds.labels[keep],
                }
            ],
            [
                {
                    "boxes": im.gt.xyxy,
                    "labels": im.gt.labels,
                    "image_id": im.image_id,
                    "orig_size": (im.height, im.width),
                }
            ],
        )
    return float(evaluator.compute()["mAP_50"])


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--preds", type=int, default=300)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--coco-runs", type=int, default=20)
    args = parser.parse_args()
    data = generate(args.images, args.preds, args.classes)
    n_gt = sum(len(im.gt) for im in data.images)
    print(
        f"{len(data.images)} images, {n_gt} ground-truth boxes, {args.images * args.preds} predictions, "
        f"{args.classes} classes"
    )

    build_s, review = timed(Review, data)
    first_s, _ = timed(review.score, 0.5, 0.5)  # includes the one-off matching at IoU 0.5
    confs = np.linspace(0.05, 0.95, args.moves)
    rng = np.random.default_rng(1)
    rng.shuffle(confs)
    moves, galleries = [], []
    for conf in confs:
        seconds, scored = timed(review.score, float(conf), 0.5)
        moves.append(seconds)
        galleries.append(timed(scored.gallery, None, "errors")[0])
    iou_s, _ = timed(review.score, 0.5, 0.75)  # first move of the IoU slider: matching at a new threshold
    coco_s, coco = timed(review.coco_metrics)
    f1_s, best = timed(review.f1_optimal, 0.5)

    alternative = []
    for conf in confs[: args.coco_runs]:
        alternative.append(timed(pycocotools_at, data, float(conf))[0])

    ours, theirs = statistics.median(moves), statistics.median(alternative)
    print(f"Review(data) construction (IoU matrices)      {build_s * 1e3:9.1f} ms")
    print(f"first score() at IoU 0.50 (incl. matching)    {first_s * 1e3:9.1f} ms")
    print(f"first score() at IoU 0.75 (incl. matching)    {iou_s * 1e3:9.1f} ms")
    print(
        f"slider move: score(conf), median of {len(moves):2d}       {ours * 1e3:9.1f} ms"
        f"  (min {min(moves) * 1e3:.1f}, max {max(moves) * 1e3:.1f})"
    )
    print(f"  + gallery('errors') sort/filter, median      {statistics.median(galleries) * 1e3:9.1f} ms")
    print(
        f"pycocotools re-evaluation at conf, median of {len(alternative)} {theirs * 1e3:9.1f} ms"
        f"  (min {min(alternative) * 1e3:.1f}, max {max(alternative) * 1e3:.1f})"
    )
    print(f"ratio pycocotools / ours                       {theirs / ours:9.1f}x")
    print(
        f"one-off: coco_metrics() {coco_s:.2f} s (mAP@50 {coco['mAP_50']:.3f}), "
        f"f1_optimal() {f1_s:.2f} s (threshold {best['threshold']:.2f}, F1 {best['f1']:.3f})"
    )


if __name__ == "__main__":
    main()
