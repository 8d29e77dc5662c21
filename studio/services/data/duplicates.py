"""Exact and near-duplicate images, and train/valid leakage through them.

Why: frames of one video or the same part photographed twice end up in train *and* valid, and the
validation mAP then measures memory, not generalisation. Nobody sees it by browsing. This module finds
such copies, groups them, and says which evaluation images have a near-copy in train.

How copies are recognised: a perceptual hash (``imagehash.phash``: DCT of a 64×64 greyscale thumbnail,
the sign of its 16×16 low-frequency block against their median = 256 bits). Resizing, JPEG re-encoding
and a small colour/brightness shift barely move the low frequencies; a small crop or shift moves them
a little; a different image moves about half of the bits.

Thresholds (calibrated by ``tests/studio/test_duplicates.py`` on generated scenes, 640×480: copies
resized to 60 %, JPEG quality 50, 5 % crop, brightness +10 %, 8 px horizontal shift, against distinct
scenes of the same generator — gradient backgrounds with shapes, the hard case for a low-frequency hash):

- ``NEAR_BITS = 64`` of 256 bits. Measured on 100 scenes × 5 copies and 300 distinct scenes: the
  copies differ by at most 58 bits (resize ≤ 18, JPEG ≤ 32, brightness ≤ 26, shift ≤ 38, crop ≤ 58);
  distinct scenes differ by ≥ 54 bits, 99.9 % of pairs by ≥ 92; at 64 bits recall was 100 % and
  2 false pairs in 100,000.
- 0 bits does not mean identical pixels (a brighter copy often hashes the same); byte-identical files
  never exist twice, because the store keys images by content hash.

Flat images (a 64×64 grey thumbnail with standard deviation under ``FLAT_STD`` = 2 grey levels: blank
frames, solid fills) are never grouped: their hash is the same whatever their colour, so it says nothing.

Grouping is transitive (union–find over the pairs within the threshold): A≈B and B≈C put A, B, C in one
group, which is what a split needs (they must all land in one split).

Hashes are cached per image content hash in ``cache/phash-v1.json`` inside the project folder (a file,
not a table: it is derived data, safe to delete, and a moved project keeps it). JPEGs are decoded at a
reduced scale (``Image.draft``), which is what keeps hashing 10,000 photos within a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image as PILImage
from sqlalchemy import delete, select, update

from studio.errors import StudioError
from studio.store.db import ProjectStore
from studio.store.models import SPLITS, Image

HASH_SIZE = 16  # 16×16 DCT block = 256 bits
NEAR_BITS = 64  # pairs differing in at most this many bits are near-duplicates (see module docstring)
CACHE_FILE = "cache/phash-v1.json"
EVAL_SPLITS = ("valid", "test")
FLAT_STD = 2.0  # grey levels: a thumbnail this uniform has no structure to compare (see module docstring)
FLAT = ""  # the cached "hash" of such an image: never grouped
_WORDS = HASH_SIZE * HASH_SIZE // 64
_CHUNK = 128  # rows compared at once: 128 × N × 4 uint64 stays small for N = 10,000


def phash_file(path: str | os.PathLike[str]) -> str:
    """The 256-bit perceptual hash of one image file as 64 hex digits, or ``FLAT`` for a flat image."""
    with PILImage.open(path) as im:
        im.draft("L", (HASH_SIZE * 8, HASH_SIZE * 8))  # JPEG: decode at 1/2..1/8 scale, others: no-op
        small = im.convert("L").resize((HASH_SIZE * 4, HASH_SIZE * 4), PILImage.LANCZOS)
    if float(np.asarray(small, dtype=np.float32).std()) < FLAT_STD:
        return FLAT
    return str(imagehash.phash(small, hash_size=HASH_SIZE))


def phash_files(paths: Sequence[str | os.PathLike[str]]) -> list[str | None]:
    """Hashes of many files on every core (PIL decoding releases the GIL); ``None`` for an unreadable one."""

    def one(path: str | os.PathLike[str]) -> str | None:
        try:
            return phash_file(path)
        except (OSError, ValueError, PILImage.DecompressionBombError):
            return None

    if len(paths) < 8:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        return list(pool.map(one, paths))


def hash_bits(hex_hashes: Sequence[str]) -> np.ndarray:
    """Hex hashes -> ``(N, 4)`` uint64 words, for XOR + popcount comparisons."""
    if not hex_hashes:
        return np.zeros((0, _WORDS), dtype=np.uint64)
    raw = np.frombuffer(b"".join(bytes.fromhex(h) for h in hex_hashes), dtype=">u8")
    return raw.astype(np.uint64).reshape(len(hex_hashes), _WORDS)


def distances_to(bits: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Hamming distances ``(len(bits), len(others))`` between two sets of hashes."""
    out = np.zeros((len(bits), len(others)), dtype=np.int32)
    for start in range(0, len(bits), _CHUNK):
        block = np.zeros((len(bits[start : start + _CHUNK]), len(others)), dtype=np.uint16)
        for word in range(bits.shape[1]):  # word by word: no (chunk, m, 4) temporary
            block += np.bitwise_count(bits[start : start + _CHUNK, None, word] ^ others[None, :, word])
        out[start : start + _CHUNK] = block
    return out


def near_pairs(bits: np.ndarray, threshold: int = NEAR_BITS) -> list[tuple[int, int, int]]:
    """Every pair ``(i, j, distance)`` with ``i < j`` and distance ≤ ``threshold`` (rows of ``bits``)."""
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(bits), _CHUNK):
        block = distances_to(bits[start : start + _CHUNK], bits[start:])
        rows, cols = np.nonzero(block <= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if c > r:
                pairs.append((start + r, start + c, int(block[r, c])))
    return pairs


def group_indices(n: int, pairs: Iterable[tuple[int, int, int]]) -> list[list[int]]:
    """Connected components (size ≥ 2) of the pair graph, each sorted, in order of their first member."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _d in pairs:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])


# -- the project's hashes ----------------------------------------------------------------------------


def _read_cache(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str) and len(v) in (0, 2 * _WORDS * 8)}


def _write_cache(path: Path, cache: dict[str, str]) -> None:
    """Atomic replace, so two processes hashing at once never leave a torn file (last writer wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(cache, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class DupImage:
    """One project image as the duplicate views show it (``name`` is the user's file name)."""

    id: int
    name: str
    split: str | None
    file_name: str


def project_hashes(store: ProjectStore) -> tuple[list[DupImage], np.ndarray]:
    """Every image of the project (by id) and its hash bits; computes and caches the missing hashes."""
    with store.session(readonly=True) as s:
        rows = s.execute(
            select(Image.id, Image.original_name, Image.split, Image.file_name, Image.content_hash).order_by(
                Image.id
            )
        ).all()
    cache_path = store.path / CACHE_FILE
    cache = _read_cache(cache_path)
    missing = [r for r in rows if r.content_hash not in cache]
    if missing:
        for r, h in zip(missing, phash_files([store.path / r.file_name for r in missing]), strict=True):
            if h is not None:
                cache[r.content_hash] = h
        _write_cache(cache_path, cache)
    kept = [r for r in rows if cache.get(r.content_hash, FLAT) != FLAT]
    images = [DupImage(r.id, r.original_name, r.split, r.file_name) for r in kept]
    return images, hash_bits([cache[r.content_hash] for r in kept])


# -- groups and leakage ------------------------------------------------------------------------------


@dataclass
class DuplicateGroup:
    """Images that are (transitively) near-copies of each other."""

    images: list[DupImage]
    #: evaluation images (valid/test) of this group that have a train image in it
    leaked: list[DupImage] = field(default_factory=list)

    @property
    def splits(self) -> list[str]:
        return sorted({im.split or "unassigned" for im in self.images})

    @property
    def is_leakage(self) -> bool:
        return bool(self.leaked)

    def label(self, number: int) -> str:
        tag = " · LEAKAGE across splits" if self.is_leakage else ""
        return f"Group {number}: {len(self.images)} images ({', '.join(self.splits)}){tag}"


@dataclass
class LeakagePair:
    """An evaluation image and its nearest train image in the same group."""

    eval_image: DupImage
    train_image: DupImage
    distance: int


@dataclass
class DuplicateReport:
    groups: list[DuplicateGroup]
    leakage: list[LeakagePair]
    n_images: int
    threshold: int = NEAR_BITS

    def leaked_count(self, split: str = "valid") -> int:
        return sum(1 for p in self.leakage if p.eval_image.split == split)

    def summary(self) -> str:
        if not self.groups:
            return f"No near-duplicates among {self.n_images} images."
        dup = sum(len(g.images) for g in self.groups)
        lines = [f"{len(self.groups)} group(s) of near-duplicates ({dup} of {self.n_images} images)."]
        lines.append(leakage_sentence(self) or "No leakage: every group is within one split.")
        return " ".join(lines)


def _leakage(group: DuplicateGroup, index: dict[int, int], bits: np.ndarray) -> list[LeakagePair]:
    train = [im for im in group.images if im.split == "train"]
    if not train:
        return []
    pairs = []
    for im in group.images:
        if im.split in EVAL_SPLITS:
            d = distances_to(bits[[index[im.id]]], bits[[index[t.id] for t in train]])[0]
            best = int(np.argmin(d))
            pairs.append(LeakagePair(im, train[best], int(d[best])))
    return pairs


def find_duplicates(store: ProjectStore, threshold: int = NEAR_BITS) -> DuplicateReport:
    """Groups of near-duplicate images in the project and the evaluation images leaked into train."""
    images, bits = project_hashes(store)
    index = {im.id: i for i, im in enumerate(images)}
    groups, leakage = [], []
    for members in group_indices(len(images), near_pairs(bits, threshold)):
        group = DuplicateGroup([images[i] for i in members])
        pairs = _leakage(group, index, bits)
        group.leaked = [p.eval_image for p in pairs]
        groups.append(group)
        leakage.extend(pairs)
    groups.sort(key=lambda g: (not g.is_leakage, g.images[0].id))
    return DuplicateReport(groups, leakage, len(images), threshold)


def leakage_sentence(report: DuplicateReport) -> str:
    """ "12 validation images have a near-copy in train: mAP may be optimistic." ('' when none)."""
    parts = []
    for split, word in (("valid", "validation"), ("test", "test")):
        n = report.leaked_count(split)
        if n:
            verb = "has" if n == 1 else "have"
            parts.append(f"{n} {word} image{'s' if n != 1 else ''} {verb} a near-copy in train")
    if not parts:
        return ""
    return "; ".join(parts) + ": mAP may be optimistic."


def leakage_line(store: ProjectStore) -> str:
    """The one-line leakage warning the Classes and Review pages show ('' when there is none)."""
    return leakage_sentence(find_duplicates(store))


def duplicate_id_groups(store: ProjectStore) -> list[set[int]]:
    """Image-id groups that a split must keep together (used by the group-aware auto-split)."""
    return [{im.id for im in g.images} for g in find_duplicates(store).groups]


# -- actions -----------------------------------------------------------------------------------------


def _group_rows(s, image_ids: Sequence[int]) -> list[Image]:
    ids = sorted({int(i) for i in image_ids})
    rows = list(s.scalars(select(Image).where(Image.id.in_(ids))))
    if len(rows) != len(ids):
        raise StudioError(
            "Some images of this group no longer exist (deleted elsewhere?): find duplicates again."
        )
    return rows


def keep_one(store: ProjectStore, keep_id: int, image_ids: Sequence[int]) -> list[str]:
    """Delete every image of the group except ``keep_id`` (boxes, predictions included), in one transaction.

    Returns the deleted images' names. Their files are removed after the commit (a failed commit
    leaves both rows and files as they were).
    """
    with store.session() as s:
        rows = _group_rows(s, list(image_ids) + [keep_id])
        doomed = [r for r in rows if r.id != int(keep_id)]
        if not doomed:
            raise StudioError("The group has only the image to keep: nothing to delete.")
        s.execute(delete(Image).where(Image.id.in_([r.id for r in doomed])))
    for r in doomed:
        (store.path / r.file_name).unlink(missing_ok=True)
    return [r.original_name for r in doomed]


def move_group(store: ProjectStore, image_ids: Sequence[int], split: str) -> int:
    """Put every image of a group into ``split`` (one transaction); returns how many images changed."""
    if split not in SPLITS:
        raise StudioError(f"Unknown split '{split}' (expected one of {', '.join(SPLITS)}).")
    with store.session() as s:
        rows = _group_rows(s, image_ids)
        changed = [r.id for r in rows if r.split != split]
        if changed:
            s.execute(update(Image).where(Image.id.in_(changed)).values(split=split))
    return len(changed)


# -- incoming images and the headless report ---------------------------------------------------------


@dataclass(frozen=True)
class IncomingDuplicate:
    """An incoming file that is a near-copy of an image already in the project."""

    path: str
    image_id: int
    name: str
    split: str | None
    distance: int

    def message(self) -> str:
        return (
            f"{Path(self.path).name} is a near-copy of {self.name} ({self.split or 'unassigned'}; "
            f"{self.distance}/{HASH_SIZE * HASH_SIZE} hash bits differ)"
        )


def near_duplicates_of(
    store: ProjectStore, image_paths: Sequence[str | os.PathLike[str]], threshold: int = NEAR_BITS
) -> list[IncomingDuplicate]:
    """For each incoming file that resembles a project image, its closest project image (import warning).

    Files that cannot be read are skipped (the importer reports those itself).
    """
    images, bits = project_hashes(store)
    if not images or not image_paths:
        return []
    hashes = phash_files(list(image_paths))
    readable = [(str(p), h) for p, h in zip(image_paths, hashes, strict=True) if h]
    if not readable:
        return []
    dist = distances_to(hash_bits([h for _p, h in readable]), bits)
    out = []
    for (path, _h), row in zip(readable, dist, strict=True):
        best = int(np.argmin(row))
        if row[best] <= threshold:
            im = images[best]
            out.append(IncomingDuplicate(path, im.id, im.name, im.split, int(row[best])))
    return out


def _image_json(im: DupImage) -> dict:
    return {"id": im.id, "file_name": im.name, "split": im.split}


def duplicates_report(store: ProjectStore) -> dict:
    """The whole analysis as JSON-ready data (``rfdetr-studio duplicates PROJECT_DIR --json``)."""
    report = find_duplicates(store)
    return {
        "n_images": report.n_images,
        "threshold_bits": report.threshold,
        "hash_bits": HASH_SIZE * HASH_SIZE,
        "groups": [
            {"images": [_image_json(im) for im in g.images], "splits": g.splits, "leakage": g.is_leakage}
            for g in report.groups
        ],
        "leakage_pairs": [
            {"eval": _image_json(p.eval_image), "train": _image_json(p.train_image), "distance": p.distance}
            for p in report.leakage
        ],
        "leaked_valid": report.leaked_count("valid"),
        "leaked_test": report.leaked_count("test"),
        "message": leakage_sentence(report),
    }


# -- the Data page's Duplicates panel ----------------------------------------------------------------


@dataclass
class DuplicatesView:
    """What the Duplicates panel shows: the summary, the group picker, the picked group's thumbnails
    (``(image, caption)``), who to keep, and every group's image ids (the panel's state)."""

    summary: str
    group_choices: list[tuple[str, int]]
    group_index: int | None
    items: list[tuple[np.ndarray, str]]
    keep_choices: list[tuple[str, int]]
    groups: list[list[int]]


def _caption(im: DupImage, leaked: bool) -> str:
    return f"{im.name} · {im.split or 'unassigned'}" + (" · LEAKAGE" if leaked else "")


def duplicates_view(
    store: ProjectStore, group_index: int | None = 0, thumb_side: int = 240
) -> DuplicatesView:
    """The panel for the project (leakage groups first), showing group ``group_index`` (clamped)."""
    from studio.services.data.gallery import render_image

    report = find_duplicates(store)
    groups = [[im.id for im in g.images] for g in report.groups]
    choices = [(g.label(k + 1), k) for k, g in enumerate(report.groups)]
    if not groups:
        return DuplicatesView(report.summary(), [], None, [], [], [])
    index = min(max(0, int(group_index or 0)), len(groups) - 1)
    group = report.groups[index]
    leaked = {im.id for im in group.leaked}
    items = [
        (render_image(store, im.id, max_side=thumb_side), _caption(im, im.id in leaked))
        for im in group.images
    ]
    keep = [(f"{im.name} ({im.split or 'unassigned'})", im.id) for im in group.images]
    return DuplicatesView(report.summary(), choices, index, items, keep, groups)


__all__ = [
    "CACHE_FILE",
    "HASH_SIZE",
    "NEAR_BITS",
    "DupImage",
    "DuplicateGroup",
    "DuplicateReport",
    "DuplicatesView",
    "IncomingDuplicate",
    "LeakagePair",
    "distances_to",
    "duplicate_id_groups",
    "duplicates_report",
    "duplicates_view",
    "find_duplicates",
    "group_indices",
    "hash_bits",
    "keep_one",
    "leakage_line",
    "leakage_sentence",
    "move_group",
    "near_duplicates_of",
    "near_pairs",
    "phash_file",
    "phash_files",
    "project_hashes",
]
