"""Label-mistake finder on planted errors (issue 17).

Predictions are SYNTHESISED from the clean ground truth (no trained model: the shared 2-core machine had
no time for training): each true box is found with probability 0.95 (box jitter ~3 % of its size, score
~ Beta(8, 2)), plus ~0.15 false alarms per image (score ~ Beta(2, 5)), 3 % of found boxes given a random
class at a low score. The ground truth is then corrupted: drop 10 % of boxes, flip the class of 10 %,
shift 5 % by half their size, duplicate 3 %. Per kind we report recall of the planted mistakes within
the top 2N suspects of that kind and precision of the top N (N = number planted).

    .venv/bin/python bench/mistakes.py [--images 400 --seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rfdetr_core.ops.boxes import box_iou_np
from studio.services.review.data import Boxes, ReviewData, ReviewImage
from studio.services.review.mistakes import find_suspects

W, H, CLASSES = 320, 240, ["a", "b", "c"]


def scene(rng):
    n = rng.integers(2, 7)
    wh = rng.uniform(20, 70, (n, 2))
    xy = rng.uniform(0, 1, (n, 2)) * ([W, H] - wh)
    return np.hstack([xy, xy + wh]), rng.integers(0, len(CLASSES), n)


def predict(rng, xyxy, labels):
    keep = rng.random(len(labels)) < 0.95
    size = np.repeat(xyxy[:, 2:] - xyxy[:, :2], 2, axis=0).reshape(-1, 4)
    boxes = (xyxy + rng.normal(0, 0.03, xyxy.shape) * size)[keep]
    lab, sc = labels[keep].copy(), rng.beta(8, 2, keep.sum())
    wrong = rng.random(len(lab)) < 0.03
    lab[wrong], sc[wrong] = rng.integers(0, len(CLASSES), wrong.sum()), rng.uniform(0.05, 0.4, wrong.sum())
    nfa = rng.poisson(0.15)
    fwh = rng.uniform(20, 60, (nfa, 2))
    fxy = rng.uniform(0, 1, (nfa, 2)) * ([W, H] - fwh)
    boxes = np.vstack([boxes, np.hstack([fxy, fxy + fwh])])
    return boxes, np.concatenate([lab, rng.integers(0, 3, nfa)]), np.concatenate([sc, rng.beta(2, 5, nfa)])


def corrupt(rng, xyxy, labels, planted, image_id):
    """Apply the planted errors; record (kind, image, box) in ``planted`` (box: GT box to point at)."""
    out_b, out_l = [], []
    for b, lab in zip(xyxy, labels, strict=True):
        r = rng.random()
        if r < 0.10:
            planted.append(("missing", image_id, b))
            continue
        if r < 0.20:
            lab = (lab + rng.integers(1, len(CLASSES))) % len(CLASSES)
            planted.append(("wrong_class", image_id, b))
        elif r < 0.25:
            w = b[2] - b[0]
            b = b + [w / 2, 0, w / 2, 0]
            planted.append(("loose", image_id, b))
        out_b.append(b)
        out_l.append(lab)
        if rng.random() < 0.03:
            d = b + rng.normal(0, 1.0, 4)
            out_b.append(d)
            out_l.append(lab)
            planted.append(("duplicate", image_id, d))
    return np.array(out_b).reshape(-1, 4), np.array(out_l, np.int64)


def hit(suspect, kind, image_id, box) -> bool:
    if suspect.kind != kind or suspect.image_id != image_id:
        return False
    ref = suspect.pred_box if kind == "missing" else suspect.gt_box
    return box_iou_np(np.array([ref]), np.array([box]))[0, 0] > 0.5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    images, planted = [], []
    for k in range(args.images):
        xyxy, labels = scene(rng)
        pb, pl, ps = predict(rng, xyxy, labels)
        gb, gl = corrupt(rng, xyxy, labels, planted, k)
        images.append(
            ReviewImage(k, Path(f"{k}.png"), W, H, Boxes(gb, gl), Boxes(pb, pl, ps), name=f"{k}.png")
        )
    suspects = find_suspects(ReviewData(1, "valid", "synthetic", CLASSES, images))
    print(f"{args.images} images, {len(planted)} planted mistakes, {len(suspects)} suspects")
    print("| kind | planted N | recall in top 2N | precision of top N |\n|---|---|---|---|")
    for kind in ("missing", "wrong_class", "loose", "duplicate"):
        mine = [p for p in planted if p[0] == kind]
        ranked = [s for s in suspects if s.kind == kind]
        n = len(mine)
        top2 = ranked[: 2 * n]
        recall = sum(any(hit(s, *p) for s in top2) for p in mine) / max(n, 1)
        precision = sum(any(hit(s, *p) for p in mine) for s in ranked[:n]) / max(min(n, len(ranked)), 1)
        print(f"| {kind} | {n} | {recall:.2f} | {precision:.2f} |")


if __name__ == "__main__":
    main()
