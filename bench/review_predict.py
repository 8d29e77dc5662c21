"""Review predictions: ``compute_predictions`` (incl. storage) vs a bare ``RFDETR.predict`` loop, and
the cost of storing / loading a large prediction set.

Part 1 -- same model, same images: an RF-DETR Nano with random weights from ``rfdetr_core`` at its
default resolution (384), 3 classes, saved as a run's best checkpoint in a generated project with N
640x480 images in ``valid``. Timed per image: ``compute_predictions`` (checkpoint load, eval
transform, network, post-processing, every detection stored in SQLite) against a loop of
``model.predict(path, threshold=0.0)`` over the same files (model already loaded). Repeats alternate
the two; medians and the ratio are printed.

Part 2 -- storage at scale, no model: 500 images x 300 predictions (150,000 rows) written with the
same bulk path ``compute_predictions`` uses, then ``load_review_data`` (the page's reload) timed.

    .venv/bin/python bench/review_predict.py --images 16 --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.services.review import predictions as rp
from studio.store import Category, Image, Prediction, ProjectStore, Run
from studio.store.models import PredictionSet, utcnow

CLASSES = ["cat", "dog", "bird"]


def make_project(
    root: Path, n: int, size: tuple[int, int] = (640, 480)
) -> tuple[ProjectStore, int, list[Path]]:
    from rfdetr_core.variants import RFDETRNano

    rng = np.random.default_rng(0)
    store = ProjectStore.create(root / "project", "bench")
    files = []
    with store.session() as s:
        s.add_all([Category(name=c) for c in CLASSES])
        for i in range(n):
            path = root / f"img_{i}.jpg"
            PILImage.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
                path, quality=90
            )
            im = store.add_image_file(path, s, split="valid")
            files.append(store.image_path(im))
    model = RFDETRNano(num_classes=len(CLASSES), pretrain_weights=None)
    model.model.class_names = list(CLASSES)
    ckpt = store.path / "runs" / "1" / "output" / "checkpoint_best_total.pth"
    ckpt.parent.mkdir(parents=True)
    model.save_checkpoint(
        ckpt, model_config=model.model_config.model_dump(mode="json"), best_total_source="regular"
    )
    with store.session() as s:
        run = Run(
            name="bench",
            model_size="Nano",
            status="completed",
            config={"batch_size": 4},
            class_names=list(CLASSES),
            best_checkpoint=str(ckpt.relative_to(store.path)),
        )
        s.add(run)
        s.flush()
        run_id = run.id
    return store, run_id, files


def bench_compute(store: ProjectStore, run_id: int, files: list[Path], repeats: int) -> None:
    from rfdetr_core import RFDETR

    model = RFDETR.from_checkpoint(store.path / "runs/1/output/checkpoint_best_total.pth")
    model.predict(str(files[0]), threshold=0.0)  # warm-up both paths once
    rp.compute_predictions(store, run_id)
    ours, bare = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        info = rp.compute_predictions(store, run_id)
        ours.append((time.perf_counter() - t) / len(files))
        t = time.perf_counter()
        for f in files:
            model.predict(str(f), threshold=0.0, include_source_image=False)
        bare.append((time.perf_counter() - t) / len(files))
    mo, mb = statistics.median(ours), statistics.median(bare)
    print(f"part 1: {len(files)} images 640x480, Nano random weights @384, {info.n_predictions} rows stored")
    print(f"  compute_predictions (load ckpt + predict + store): {mo * 1e3:8.1f} ms/image  runs {_ms(ours)}")
    print(f"  bare RFDETR.predict(path, threshold=0) loop:       {mb * 1e3:8.1f} ms/image  runs {_ms(bare)}")
    pairs = [o / b for o, b in zip(ours, bare, strict=True)]  # same moment, same machine load
    print(
        f"  ratio ours / bare: {mo / mb:.3f}x of the medians, {statistics.median(pairs):.3f}x median of the "
        f"paired runs ({', '.join(f'{r:.2f}' for r in pairs)}); target <= 1.1x"
    )


def bench_storage(root: Path, n_images: int = 500, per_image: int = 300, repeats: int = 3) -> None:
    store = ProjectStore.create(root / "storage", "storage")
    rng = np.random.default_rng(1)
    with store.session() as s:
        s.add_all([Category(name=c) for c in CLASSES])
        ims = [
            Image(
                file_name=f"images/{i}.jpg",
                original_name=f"{i}.jpg",
                width=640,
                height=480,
                split="valid",
                content_hash=f"{i:064d}",
            )
            for i in range(n_images)
        ]
        s.add_all(ims)
        run = Run(name="r", model_size="Nano", class_names=list(CLASSES), best_checkpoint="x.pth")
        s.add(run)
        s.flush()
        run_id, ids = run.id, [im.id for im in ims]
    per = [
        np.column_stack(
            [
                rng.integers(0, 3, per_image),
                rng.uniform(0, 400, (per_image, 2)),
                rng.uniform(5, 200, (per_image, 2)),
                np.sort(rng.uniform(0, 1, per_image))[::-1],
            ]
        )
        for _ in ids
    ]
    stored, loaded = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        rows = rp._rows(run_id, "best", ims, per, [1, 2, 3])
        with store.session() as s:
            s.query(Prediction).delete()
            s.connection().execute(insert(Prediction.__table__), rows)
            s.query(PredictionSet).delete()
            s.add(
                PredictionSet(
                    run_id=run_id,
                    checkpoint="best",
                    split="valid",
                    checkpoint_path="x.pth",
                    checkpoint_mtime_ns=0,
                    checkpoint_size=0,
                    class_names=list(CLASSES),
                    image_ids=ids,
                    n_images=len(ids),
                    n_predictions=len(rows),
                    seconds=0.0,
                    created_at=utcnow(),
                )
            )
        stored.append(time.perf_counter() - t)
        t = time.perf_counter()
        data = rp.load_review_data(store, run_id)
        loaded.append(time.perf_counter() - t)
    assert sum(len(im.preds) for im in data.images) == n_images * per_image
    print(f"part 2: {n_images} images x {per_image} predictions = {n_images * per_image} rows")
    print(f"  build rows + one-transaction bulk insert: {statistics.median(stored):.3f} s  runs {_s(stored)}")
    print(
        f"  load_review_data (GT + predictions -> arrays): {statistics.median(loaded):.3f} s  runs {_s(loaded)}"
    )
    store.close()


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1e3:.1f}" for v in values)


def _s(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        store, run_id, files = make_project(Path(tmp), args.images)
        bench_compute(store, run_id, files, args.repeats)
        store.close()
        bench_storage(Path(tmp))


if __name__ == "__main__":
    main()
