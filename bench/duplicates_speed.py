"""Near-duplicate detection speed (issue 18): hash + group N generated 640×480 JPEGs in a real project.

    .venv/bin/python bench/duplicates_speed.py --images 10000

Images are generated once into ``bench/_work/duplicates/`` (10 % of them planted near-copies of
another image: resized, re-encoded, cropped, brighter or shifted) and added to a fresh project; the
timed part is :func:`studio.services.data.duplicates.find_duplicates` on a cold hash cache (hash every
image, all-pairs Hamming distances, union-find), then once more on the warm cache (grouping only).
Prints the times and how many planted pairs were found.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORK = REPO / "bench" / "_work" / "duplicates"

from studio.services.data import duplicates as dup  # noqa: E402
from studio.store.db import ProjectStore  # noqa: E402
from tests.support.duplicate_fixtures import COPY_KINDS, planted_copy, scenes  # noqa: E402


def _generate(n: int) -> tuple[list[Path], dict[str, str]]:
    """``n`` JPEGs (reused when present) and planted copy name -> original name."""
    folder = WORK / str(n)
    folder.mkdir(parents=True, exist_ok=True)
    n_copies = n // 10
    originals = n - n_copies
    paths, planted = [], {}
    batch = 500
    for start in range(0, originals, batch):
        count = min(batch, originals - start)
        todo = [folder / f"o{start + k:06d}.jpg" for k in range(count)]
        if not all(p.exists() for p in todo):
            for p, im in zip(todo, scenes(count, seed=1000 + start), strict=True):
                im.save(p, quality=90)
        paths += todo
    for k in range(n_copies):
        src = paths[k * (originals // max(1, n_copies))]
        p = folder / f"c{k:06d}.jpg"
        if not p.exists():
            from PIL import Image

            with Image.open(src) as im:
                planted_copy(im.convert("RGB"), COPY_KINDS[k % len(COPY_KINDS)]).save(p, quality=90)
        paths.append(p)
        planted[p.name] = src.name
    return paths, planted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10000)
    args = ap.parse_args()
    paths, planted = _generate(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        store = ProjectStore.create(Path(tmp) / "p", "bench")
        with store.session() as s:
            for p in paths:
                store.add_image_file(p, s, original_name=p.name)
        t0 = time.perf_counter()
        report = dup.find_duplicates(store)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        dup.find_duplicates(store)
        warm = time.perf_counter() - t0
        group_of = {im.name: k for k, g in enumerate(report.groups) for im in g.images}
        found = sum(1 for c, o in planted.items() if c in group_of and group_of.get(o) == group_of[c])
        members = sum(len(g.images) for g in report.groups)
        store.close()
    print(
        f"{args.images} images: cold (hash + group) {cold:.1f} s, warm (group only) {warm:.1f} s; "
        f"planted pairs found {found}/{len(planted)}; {len(report.groups)} groups, {members} images in groups"
    )


if __name__ == "__main__":
    main()
