"""Train / valid / test assignment: one image at a time, or an automatic stratified split.

Why stratify by class: with a random split a rare class easily lands entirely in train (its AP can
then not be measured) or entirely in valid (the model never sees it). The automatic split follows
iterative stratification (Sechidis et al., 2011), which handles images with several classes: the
rarest class is placed first, each of its images going to the split that still lacks most of that
class relative to the chosen ratios. Images without boxes are spread by the ratios alone. The whole
assignment is written in one transaction, so a failure leaves the old split untouched.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update

from studio.errors import StudioError
from studio.services.data.duplicates import duplicate_id_groups
from studio.store.db import ProjectStore
from studio.store.models import SPLITS, Annotation, Category, Image
from studio.text import md_text

UNASSIGNED = "unassigned"


def set_split(store: ProjectStore, image_id: int, split: str | None) -> None:
    """Put one image in ``split`` (``None`` or ``"unassigned"`` clears it)."""
    split = None if split in (None, "", UNASSIGNED) else split
    if split is not None and split not in SPLITS:
        raise StudioError(f"Unknown split '{split}' (expected one of {', '.join(SPLITS)} or unassigned).")
    with store.session() as s:
        image = s.get(Image, image_id)
        if image is None:
            raise StudioError(f"Image #{image_id} does not exist (it may have been deleted).")
        image.split = split


@dataclass
class SplitResult:
    images: dict[str, int]  # split -> images this run put there
    #: class name -> split -> boxes, over the whole project after the split
    boxes: dict[str, dict[str, int]]
    #: the split of the image the caller asked about (``image_id``) after the run (None: none / not asked)
    image_split: str | None = None

    def to_markdown(self) -> str:
        lines = ["| | " + " | ".join(SPLITS) + " |", "|---|" + "---|" * len(SPLITS)]
        lines.append("| **images** | " + " | ".join(str(self.images.get(s, 0)) for s in SPLITS) + " |")
        for name, per in sorted(self.boxes.items()):
            lines.append(f"| {md_text(name, 200)} | " + " | ".join(str(per.get(s, 0)) for s in SPLITS) + " |")
        return "\n".join(lines)


def _normalise(ratios: dict[str, float]) -> dict[str, float]:
    unknown = set(ratios) - set(SPLITS)
    if unknown:
        raise StudioError(f"Unknown split(s): {', '.join(sorted(unknown))}.")
    if any(r < 0 for r in ratios.values()):
        raise StudioError("Split ratios cannot be negative.")
    total = sum(ratios.values())
    if total <= 0:
        raise StudioError("At least one split ratio must be above zero.")
    return {s: ratios.get(s, 0.0) / total for s in SPLITS}


def _units(labels: dict[int, set[int]], groups: Sequence[Iterable[int]]) -> list[tuple[int, ...]]:
    """Images that must share a split, as sorted tuples (groups merged when they overlap); the rest alone."""
    owner: dict[int, int] = {}
    merged: list[set[int]] = []
    for group in groups:
        members = {i for i in group if i in labels}
        hit = {owner[i] for i in members if i in owner}
        for k in hit:
            members |= merged[k]
            merged[k] = set()
        merged.append(members)
        for i in members:
            owner[i] = len(merged) - 1
    units = [tuple(sorted(m)) for m in merged if len(m) > 1]
    grouped = {i for u in units for i in u}
    units += [(i,) for i in labels if i not in grouped]
    return sorted(units)


def stratified_assignment(
    labels: dict[int, set[int]],
    ratios: dict[str, float],
    seed: int = 0,
    groups: Sequence[Iterable[int]] = (),
) -> dict[int, str]:
    """Assign each image id (-> the set of class ids it contains) to a split. Pure function.

    ``groups``: image ids that must land in one split (near-duplicates: a copy in train and one in
    valid would leak). A group is placed as one unit, counting all its images and boxes' classes.
    """
    ratios = _normalise(ratios)
    rng = random.Random(seed)
    units = _units(labels, groups)
    rng.shuffle(units)
    counts = {u: Counter(c for i in u for c in labels[i]) for u in units}
    per_class = Counter(c for u in units for c in counts[u].elements())
    want = {s: {c: ratios[s] * n for c, n in per_class.items()} for s in SPLITS}
    want_total = {s: ratios[s] * len(labels) for s in SPLITS}
    out: dict[int, str] = {}

    def place(unit: tuple[int, ...], cls: int | None) -> None:
        def key(s: str) -> tuple[float, float, float]:
            need = want[s][cls] if cls is not None else 0.0
            return (need, want_total[s], rng.random())

        choices = [s for s in SPLITS if ratios[s] > 0]
        split = max(choices, key=key)
        out.update(dict.fromkeys(unit, split))
        want_total[split] -= len(unit)
        for c, n in counts[unit].items():
            want[split][c] -= n

    remaining = {u for u in units if counts[u]}
    while remaining:
        left = Counter(c for u in remaining for c in counts[u].elements())
        rarest = min(left, key=lambda c: (left[c], c))
        for u in [u for u in units if u in remaining and rarest in counts[u]]:
            place(u, rarest)
            remaining.discard(u)
    for u in units:
        if u[0] not in out:
            place(u, None)
    return out


def _pinned_by_group(
    groups: Sequence[set[int]], current: dict[int, str | None], labels: dict[int, set[int]]
) -> dict[int, str]:
    """Images to split whose near-duplicate group already has a split (the most common one there)."""
    pinned: dict[int, str] = {}
    for group in groups:
        fixed = Counter(current[i] for i in group if i not in labels and current.get(i) is not None)
        if fixed:
            split = max(sorted(fixed), key=lambda sp: fixed[sp])
            pinned.update({i: split for i in group if i in labels})
    return pinned


def auto_split(
    store: ProjectStore,
    ratios: dict[str, float],
    seed: int = 0,
    *,
    only_unassigned: bool = False,
    image_id: int | None = None,
) -> SplitResult:
    """Stratified split of the project's images by ground-truth class, in one transaction.

    Near-duplicate groups (:mod:`studio.services.data.duplicates`) are kept in one split, so a split
    never creates train/valid leakage; with ``only_unassigned`` an unassigned copy joins the split its
    group already has. ``image_id``: an image whose split after the run the caller shows (the Label
    tab's current image).
    """
    groups = duplicate_id_groups(store)  # hashing happens before the write lock is taken
    with store.session() as s:
        current = dict(s.execute(select(Image.id, Image.split)).all())
        labels: dict[int, set[int]] = {
            i: set() for i, split in current.items() if not only_unassigned or split is None
        }
        if not labels:
            raise StudioError(
                "No images to split" + (" (all already have a split)." if only_unassigned else ".")
            )
        rows = s.execute(select(Annotation.image_id, Annotation.category_id).where(Annotation.source == "gt"))
        for row_image, cat_id in rows:
            if row_image in labels:
                labels[row_image].add(cat_id)
        pinned = _pinned_by_group(groups, current, labels)
        free = {i: cs for i, cs in labels.items() if i not in pinned}
        assignment = stratified_assignment(free, ratios, seed, groups) if free else {}
        assignment.update(pinned)
        by_split: dict[str, list[int]] = defaultdict(list)
        for assigned, split in assignment.items():
            by_split[split].append(assigned)
        for split, ids in by_split.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                s.execute(update(Image).where(Image.id.in_(chunk)).values(split=split))
        names = dict(s.execute(select(Category.id, Category.name)).all())
        boxes: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
        for cat_id, split in s.execute(
            select(Annotation.category_id, Image.split)
            .join(Image, Image.id == Annotation.image_id)
            .where(Annotation.source == "gt")
        ).all():
            if split is not None:
                boxes[names[cat_id]][split] += 1
        image = s.get(Image, image_id) if image_id is not None else None
        image_split = image.split if image is not None else None
    return SplitResult(
        {k: len(v) for k, v in by_split.items()}, {k: dict(v) for k, v in boxes.items()}, image_split
    )


__all__ = ["SplitResult", "auto_split", "set_split", "stratified_assignment"]
