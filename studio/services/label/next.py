""" "Label these next": a most-useful-first order for the unlabeled images, with a reason per image.

Why not uncertainty alone: the images a model is least sure about come in clusters (frames of one
video, the same part shot twice), so a pure uncertainty ranking spends the next hour on near-identical
images. The order here combines

- **uncertainty** from the chosen run's stored predictions of the image (the Review page's prediction
  sets, or proposals from pre-labeling): the mass of scores in the uncertain band
  ``UNCERTAIN_BAND`` = 0.2–0.6 (each box weighs 1 at 0.4, falling to 0.5 at the band's edges), plus
  **class ambiguity**: two different classes predicted on the same spot (IoU ≥ 0.7) with similar
  scores — the model cannot tell them apart there;
- a **rare-class boost**: a box of a class with few labeled boxes counts ``RARE_WEIGHT`` × its score ×
  (1 − labeled share of that class relative to the most common class);
- **diversity**: the order is built greedily; an image within ``NEAR_BITS`` of an image already
  placed (a near-duplicate, :mod:`studio.services.data.duplicates`) waits until every image that is not
  a copy of something above has been placed, and among the others, images far from everything placed
  are preferred (utility × (0.5 + distance/256), k-center style).

Without a run (or without predictions for an image) the order is diversity alone: greedy k-center on
the perceptual-hash distance (each next image is the one farthest from all images already placed), so
the first screenful covers the project's variety instead of its first folder.

The last order computed per project is kept in memory so that the Label page can show each image's
reason without ranking again on every step.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import func, select

from rfdetr_core.ops.boxes import box_iou_np, xywh_to_xyxy_np
from studio.services.data.duplicates import HASH_SIZE, NEAR_BITS, distances_to, project_hashes
from studio.store.db import ProjectStore
from studio.store.models import Annotation, Category, Image, Prediction

ORDER_FILE = "file"
ORDER_USEFUL = "useful"
UNCERTAIN_BAND = (0.2, 0.6)
AMBIGUITY_IOU = 0.7
RARE_WEIGHT = 2.0
GREEDY_LIMIT = 2000  # images placed greedily; the rest follow by utility (keeps 100k-image queues fast)
_MAX_BITS = HASH_SIZE * HASH_SIZE
_CACHE_SIZE = 8


def order_value(run_id: int | None) -> str:
    """The queue-order value for "most useful first" with predictions of ``run_id`` (None: diversity only)."""
    return ORDER_USEFUL if run_id is None else f"{ORDER_USEFUL}:{int(run_id)}"


def parse_order(order: str | None) -> tuple[bool, int | None]:
    """``(useful_first, run_id)`` from a queue-order value (unknown values mean file order)."""
    if not order or not order.startswith(ORDER_USEFUL):
        return False, None
    _, _, run = order.partition(":")
    return True, int(run) if run.isdigit() else None


@dataclass
class ImageSignal:
    """What the model's predictions say about one image."""

    uncertain: float = 0.0  # mass of scores in the uncertain band
    n_uncertain: int = 0
    ambiguity: float = 0.0
    ambiguous: list[tuple[str, str]] = field(default_factory=list)
    rare: float = 0.0
    rare_class: str | None = None

    @property
    def utility(self) -> float:
        return self.uncertain + self.ambiguity + RARE_WEIGHT * self.rare


def band_weight(score: float) -> float:
    """1 at the band's middle, 0.5 at its edges, 0 outside."""
    lo, hi = UNCERTAIN_BAND
    if not lo <= score <= hi:
        return 0.0
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    return 1.0 - 0.5 * abs(score - mid) / half


def image_signal(
    boxes: Sequence[tuple[str, float, float, float, float, float]], rarity: dict[str, float]
) -> ImageSignal:
    """Signal of one image from its predicted ``(class name, x, y, w, h, score)`` boxes."""
    sig = ImageSignal()
    for name, *_box, score in boxes:
        w = band_weight(score)
        sig.uncertain += w
        sig.n_uncertain += w > 0
        r = rarity.get(name, 1.0) * score if score >= UNCERTAIN_BAND[0] else 0.0
        if r > sig.rare:
            sig.rare, sig.rare_class = r, name
    if len(boxes) > 1:
        xyxy = xywh_to_xyxy_np([list(b[1:5]) for b in boxes]).reshape(-1, 4)
        iou = box_iou_np(xyxy, xyxy)
        for i, j in zip(*np.nonzero(np.triu(iou >= AMBIGUITY_IOU, 1)), strict=True):
            a, b = boxes[i], boxes[j]
            if a[0] != b[0]:
                sig.ambiguity += min(a[5], b[5]) / max(a[5], b[5], 1e-6) * min(a[5], b[5]) * 2
                sig.ambiguous.append((a[0], b[0]))
    return sig


def class_rarity(store: ProjectStore) -> dict[str, float]:
    """Class name -> 1 − (labeled boxes / boxes of the most common class); unlabeled classes are 1."""
    with store.session(readonly=True) as s:
        names = list(s.scalars(select(Category.name)))
        counts = dict(
            s.execute(
                select(Category.name, func.count(Annotation.id))
                .join(Annotation, Annotation.category_id == Category.id)
                .where(Annotation.source == "gt")
                .group_by(Category.name)
            ).all()
        )
    top = max(counts.values(), default=0)
    return {n: 1.0 - (counts.get(n, 0) / top if top else 0.0) for n in names}


def _predicted_boxes(store: ProjectStore, run_id: int, image_ids: Sequence[int]) -> dict[int, list[tuple]]:
    """Stored predictions of ``run_id`` ("best" checkpoint preferred), else the images' proposals."""
    wanted = set(image_ids)
    out: dict[int, list[tuple]] = defaultdict(list)
    with store.session(readonly=True) as s:
        kinds = set(s.scalars(select(Prediction.checkpoint).where(Prediction.run_id == run_id).distinct()))
        stmt = (
            select(Prediction.image_id, Category.name, Prediction.x, Prediction.y, Prediction.w, Prediction.h)
            .add_columns(Prediction.score)
            .join(Category, Category.id == Prediction.category_id)
            .where(Prediction.run_id == run_id)
        )
        if "best" in kinds:
            stmt = stmt.where(Prediction.checkpoint == "best")
        for image_id, *row in s.execute(stmt):
            if image_id in wanted:
                out[image_id].append(tuple(row))
        proposals = s.execute(
            select(Annotation.image_id, Category.name, Annotation.x, Annotation.y, Annotation.w, Annotation.h)
            .add_columns(Annotation.score)
            .join(Category, Category.id == Annotation.category_id)
            .where(Annotation.source == "proposal")
        )
        from_proposals: dict[int, list[tuple]] = defaultdict(list)
        for image_id, *row in proposals:
            if image_id in wanted and image_id not in out:
                from_proposals[image_id].append((*row[:5], row[5] if row[5] is not None else 1.0))
    out.update(from_proposals)
    return dict(out)


@dataclass(frozen=True)
class Ranked:
    image_id: int
    utility: float
    reason: str


def _reason(sig: ImageSignal | None, nearest: int, near_copy: bool) -> str:
    parts = []
    if sig is not None:
        if sig.rare_class is not None and sig.rare >= 0.25:
            parts.append(f"may contain the rare class '{sig.rare_class}'")
        if sig.n_uncertain:
            parts.append(f"the model is unsure about {sig.n_uncertain} box(es) (score 0.2–0.6)")
        if sig.ambiguous:
            a, b = sig.ambiguous[0]
            parts.append(f"the model hesitates between '{a}' and '{b}'")
        if not parts:
            parts.append("the model is confident here")
    if near_copy:
        parts.append("a near-copy of an image earlier in the queue (placed late)")
    elif nearest >= _MAX_BITS:
        parts.append("the first of its kind in the queue")
    else:
        parts.append(f"unlike the images before it ({nearest}/{_MAX_BITS} hash bits from the nearest)")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _greedy(utility: np.ndarray, bits: np.ndarray, hashed: np.ndarray) -> list[tuple[int, int, bool]]:
    """``(index, hash distance to the nearest image placed before, placed as a near-copy)`` in queue order.

    Ties go to the lower index (the caller passes images in id order), so the order is deterministic.
    """
    n = len(utility)
    nearest = np.full(n, _MAX_BITS, dtype=np.int32)
    placed = np.zeros(n, dtype=bool)
    gain_base = utility + 0.05  # images the model has nothing to say about still compete on diversity
    order: list[tuple[int, int, bool]] = []
    for _ in range(min(n, GREEDY_LIMIT)):
        fresh = ~placed & (nearest > NEAR_BITS)
        near_copy = not fresh.any()
        pool = ~placed if near_copy else fresh
        gain = np.where(pool, gain_base * (0.5 + nearest / _MAX_BITS), -np.inf)
        i = int(np.argmax(gain))
        order.append((i, int(nearest[i]), near_copy))
        placed[i] = True
        if hashed[i]:
            d = distances_to(bits[i : i + 1], bits)[0]
            nearest = np.minimum(nearest, np.where(hashed, d, _MAX_BITS))
    rest = sorted(np.nonzero(~placed)[0].tolist(), key=lambda k: (-utility[k], k))
    order += [(k, int(nearest[k]), bool(nearest[k] <= NEAR_BITS)) for k in rest]
    return order


def rank_images(store: ProjectStore, image_ids: Sequence[int], run_id: int | None = None) -> list[Ranked]:
    """``image_ids`` most useful first (see the module docstring), each with the reason for its place."""
    ids = list(image_ids)
    images, all_bits = project_hashes(store)
    row_of = {im.id: k for k, im in enumerate(images)}
    bits = np.zeros((len(ids), all_bits.shape[1]), dtype=np.uint64)
    hashed = np.array([i in row_of for i in ids], dtype=bool)
    for k, i in enumerate(ids):
        if hashed[k]:
            bits[k] = all_bits[row_of[i]]
    signals: dict[int, ImageSignal] = {}
    if run_id is not None:
        rarity = class_rarity(store)
        signals = {i: image_signal(b, rarity) for i, b in _predicted_boxes(store, run_id, ids).items()}
    utility = np.array([signals[i].utility if i in signals else 0.0 for i in ids], dtype=np.float64)
    out = []
    for k, nearest, near_copy in _greedy(utility, bits, hashed):
        reason = _reason(signals.get(ids[k]), nearest, near_copy)
        if run_id is not None and ids[k] not in signals:
            reason = f"No prediction of run #{run_id} stored for this image. " + reason
        out.append(Ranked(ids[k], float(utility[k]), reason))
    return out


_LAST_REASONS: OrderedDict[tuple[str, str], dict[int, str]] = OrderedDict()


def useful_order(store: ProjectStore, ids: Sequence[int], order: str) -> list[int]:
    """The queue ``ids`` with its unlabeled images most useful first (the others keep their order after
    them); remembers each ranked image's reason for :func:`reason_for`."""
    useful, run_id = parse_order(order)
    if not useful or not ids:
        return list(ids)
    with store.session(readonly=True) as s:
        status = dict(s.execute(select(Image.id, Image.status).where(Image.status == "unlabeled")).all())
    todo = [i for i in ids if i in status]
    ranked = rank_images(store, sorted(todo), run_id)
    key = (str(store.path), order)
    _LAST_REASONS[key] = {r.image_id: r.reason for r in ranked}
    _LAST_REASONS.move_to_end(key)
    while len(_LAST_REASONS) > _CACHE_SIZE:
        _LAST_REASONS.popitem(last=False)
    ranked_ids = {r.image_id for r in ranked}
    return [r.image_id for r in ranked] + [i for i in ids if i not in ranked_ids]


def reason_for(store: ProjectStore, order: str | None, image_id: int | None) -> str:
    """Why ``image_id`` is where it is in the last most-useful-first queue ('' in file order)."""
    if image_id is None or not parse_order(order)[0]:
        return ""
    reasons = _LAST_REASONS.get((str(store.path), order or ""), {})
    return reasons.get(image_id, "Already labeled: after the unlabeled images.")


def next_report(store: ProjectStore, run_id: int | None = None, n: int = 50) -> dict:
    """The first ``n`` unlabeled images to label, JSON-ready (``rfdetr-studio next PROJECT_DIR --run ID``)."""
    with store.session(readonly=True) as s:
        rows = dict(
            s.execute(
                select(Image.id, Image.original_name).where(Image.status == "unlabeled").order_by(Image.id)
            ).all()
        )
    ranked = rank_images(store, list(rows), run_id)[: max(0, int(n))]
    return {
        "run_id": run_id,
        "n_unlabeled": len(rows),
        "images": [
            {
                "id": r.image_id,
                "file_name": rows[r.image_id],
                "utility": round(r.utility, 4),
                "reason": r.reason,
            }
            for r in ranked
        ],
    }


__all__ = [
    "ORDER_FILE",
    "ORDER_USEFUL",
    "ImageSignal",
    "Ranked",
    "band_weight",
    "class_rarity",
    "image_signal",
    "next_report",
    "order_value",
    "parse_order",
    "rank_images",
    "reason_for",
    "useful_order",
]
