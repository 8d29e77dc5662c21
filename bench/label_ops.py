"""Label page server-side latency: saving an image with 50 boxes, and moving to the next image.

    .venv/bin/python bench/label_ops.py --ops 100
    .venv/bin/python bench/label_ops.py --scale 1000 2000 4000   # one image, every box nudged

Everything the server does per user action is timed, in the same order the page runs it:
- **save**: the editor component's ``preprocess`` of the browser payload (50 boxes; it re-reads the
  image), editor boxes -> :class:`Box` es, the version-checked diff save (one box moved per save), and
  the component's ``postprocess`` of the new editor value (the browser then draws it).
- **next**: the same flush of the current image (no change, so no write), loading the next image's
  boxes, building the editor value and ``postprocess`` (the image is served as a file; drawing the
  boxes happens in the browser).

Alternatives side by side: a naive save that deletes and re-inserts every box (what an editor without
a diff does), and moving on by rendering the boxes server-side with supervision into a JPEG (how the
Data page draws its gallery). Project: 101 JPEG images of 640x480, 50 boxes each, real SQLite (WAL).

``--scale N …`` (issue 13): one 1920x1080 image with N boxes, every box nudged by 3 px (the worst case
for matching: no box is unchanged), saved the way the page saves it; also how long the write lock is
held (the write transaction alone), since that is what blocks other writers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gradio.data_classes import FileData  # noqa: E402
from gradio_image_annotation import image_annotator  # noqa: E402
from gradio_image_annotation.image_annotator import AnnotatedImageData  # noqa: E402
from sqlalchemy import delete, update  # noqa: E402

from studio.services.data.gallery import render_image  # noqa: E402
from studio.services.label import editor_format as ed  # noqa: E402
from studio.services.label import labeling as lab  # noqa: E402
from studio.store import Annotation, Category, ProjectStore  # noqa: E402
from studio.store.models import Image  # noqa: E402

N_BOXES = 50
SIZE = (640, 480)


def make_project(root: Path, n_images: int) -> tuple[ProjectStore, list[int]]:
    store = ProjectStore.create(root / "bench", "Label bench")
    rng = np.random.default_rng(0)
    with store.session() as s:
        cats = [Category(name=f"class{i}", color=f"#{rng.integers(0, 0xFFFFFF):06x}") for i in range(5)]
        s.add_all(cats)
        s.flush()
        ids = []
        for i in range(n_images):
            arr = rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
            path = root / f"img{i}.jpg"
            PILImage.fromarray(arr).save(path, quality=85)
            image = store.add_image_file(path, s, status="labeled")
            for _ in range(N_BOXES):
                x, y = rng.uniform(0, SIZE[0] - 60), rng.uniform(0, SIZE[1] - 60)
                w, h = rng.uniform(10, 60), rng.uniform(10, 60)
                s.add(
                    Annotation(
                        image_id=image.id, category_id=cats[int(rng.integers(0, 5))].id, x=x, y=y, w=w, h=h
                    )
                )
            ids.append(image.id)
    return store, ids


def payload(value: dict, moved: int | None) -> AnnotatedImageData:
    """What the browser sends back: the editor value, optionally with one box moved by 3 px."""
    boxes = [dict(b) for b in value["boxes"]]
    if moved is not None:
        boxes[moved]["xmin"] += 3
        boxes[moved]["xmax"] += 3
    return AnnotatedImageData(image=FileData(path=value["image"], orig_name="img.jpg"), boxes=boxes)


def save_ours(store, editor, state, classes, moved: int) -> lab.ImageState:
    value = editor.preprocess(payload(ed.editor_value(state, classes), None if moved < 0 else moved))
    parsed = ed.from_editor(value["boxes"], state, classes, None)
    res = lab.save_image(
        store, state.image_id, parsed.boxes, state.version, keep_proposals=parsed.keep_proposals
    )
    editor.postprocess(ed.editor_value(res.state, classes))
    return res.state


def save_naive(store, editor, state, classes, moved: int) -> lab.ImageState:
    """Delete every box and insert the editor's boxes again (same version check, one transaction)."""
    value = editor.preprocess(payload(ed.editor_value(state, classes), moved))
    parsed = ed.from_editor(value["boxes"], state, classes, None)
    with store.session() as s:
        n = s.execute(
            update(Image)
            .where(Image.id == state.image_id, Image.version == state.version)
            .values(version=Image.version + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        assert n == 1
        s.execute(delete(Annotation).where(Annotation.image_id == state.image_id))
        s.add_all(
            [
                Annotation(image_id=state.image_id, category_id=b.category_id, x=b.x, y=b.y, w=b.w, h=b.h)
                for b in parsed.boxes
            ]
        )
    new = lab.load_image(store, state.image_id)
    editor.postprocess(ed.editor_value(new, classes))
    return new


def next_ours(store, editor, state, next_id, classes_fn) -> lab.ImageState:
    classes = classes_fn(store)
    save_ours(store, editor, state, classes, -1)  # flush of an unchanged image: no write
    new = lab.load_image(store, next_id)
    editor.postprocess(ed.editor_value(new, ed.label_classes(store)))
    return new


def next_render(store, next_id) -> None:
    frame = render_image(store, next_id)
    PILImage.fromarray(frame).save(BytesIO(), format="JPEG", quality=90)


def timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def scale_project(root: Path, n_boxes: int) -> tuple[ProjectStore, int]:
    """One 1920x1080 image with ``n_boxes`` random boxes of 10-80 px in 5 classes."""
    store = ProjectStore.create(root / f"scale{n_boxes}", "Label scale bench")
    rng = np.random.default_rng(n_boxes)
    width, height = 1920, 1080
    path = root / f"scale{n_boxes}.jpg"
    PILImage.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path, quality=85)
    with store.session() as s:
        cats = [Category(name=f"class{i}", color="#336699") for i in range(5)]
        s.add_all(cats)
        s.flush()
        image = store.add_image_file(path, s, status="labeled")
        xy = rng.uniform(0, [width - 80, height - 80], (n_boxes, 2))
        wh = rng.uniform(10, 80, (n_boxes, 2))
        s.add_all(
            Annotation(image_id=image.id, category_id=cats[i % 5].id, x=x, y=y, w=w, h=h)
            for i, ((x, y), (w, h)) in enumerate(zip(xy.tolist(), wh.tolist(), strict=True))
        )
        image_id = image.id
    return store, image_id


def scale_save(n_boxes: int, repeats: int) -> tuple[float, float, float]:
    """Median seconds of (whole page save, ``save_image`` alone, write transaction alone)."""
    whole, service, locked = [], [], []
    with tempfile.TemporaryDirectory(prefix="label-scale-") as tmp:
        store, image_id = scale_project(Path(tmp), n_boxes)
        editor = image_annotator(None, label_list=[ed.NEW_BOX_LABEL], sources=[], image_type="filepath")
        classes = ed.label_classes(store)
        original = store.session

        def timed_session(readonly: bool = False):
            cm = original(readonly)
            if readonly:
                return cm
            return _TimedSession(cm, locked)

        store.session = timed_session  # type: ignore[method-assign]
        for _ in range(repeats):
            state = lab.load_image(store, image_id)
            value = ed.editor_value(state, classes)
            for b in value["boxes"]:
                b["xmin"], b["xmax"] = b["xmin"] + 3, b["xmax"] + 3
            t0 = time.perf_counter()
            got = editor.preprocess(
                AnnotatedImageData(
                    image=FileData(path=value["image"], orig_name="i.jpg"), boxes=value["boxes"]
                )
            )
            parsed = ed.from_editor(got["boxes"], state, classes, None)
            t1 = time.perf_counter()
            res = lab.save_image(store, image_id, parsed.boxes, state.version)
            t2 = time.perf_counter()
            editor.postprocess(ed.editor_value(res.state, classes))
            whole.append(time.perf_counter() - t0)
            service.append(t2 - t1)
            assert res.summary.startswith(f"Saved: 0 added, {n_boxes} changed, 0 deleted"), res.summary
        store.session = original  # type: ignore[method-assign]
        store.close()
    return statistics.median(whole), statistics.median(service), statistics.median(locked)


class _TimedSession:
    """A write ``store.session()`` context that records how long it was open (= the write lock)."""

    def __init__(self, cm, out: list[float]) -> None:
        self.cm, self.out = cm, out

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self.cm.__enter__()

    def __exit__(self, *exc):
        try:
            return self.cm.__exit__(*exc)
        finally:
            self.out.append(time.perf_counter() - self.t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=100)
    ap.add_argument("--scale", type=int, nargs="*", help="box counts for the one-image save at scale")
    ap.add_argument("--repeats", type=int, default=5, help="saves per box count (--scale)")
    args = ap.parse_args()
    if args.scale:
        print(f"one 1920x1080 image, every box nudged 3 px, median of {args.repeats} saves (target ≤ 1 s)")
        print("| boxes | page save (s) | save_image (s) | write lock held (s) |")
        print("|---|---|---|---|")
        for n in args.scale:
            whole, service, locked = scale_save(n, args.repeats)
            print(f"| {n} | {whole:.3f} | {service:.3f} | {locked:.3f} |")
        return
    with tempfile.TemporaryDirectory(prefix="label-bench-") as tmp:
        store, ids = make_project(Path(tmp), args.ops + 1)
        editor = image_annotator(None, label_list=[ed.NEW_BOX_LABEL], sources=[], image_type="filepath")
        classes = ed.label_classes(store)
        states = {i: lab.load_image(store, i) for i in ids}
        next_render(store, ids[0])  # warm-up (lazy imports)
        states[ids[0]] = save_ours(store, editor, states[ids[0]], classes, 0)

        def ours(i: int) -> None:
            image_id = ids[1 + i % args.ops]
            states[image_id] = save_ours(store, editor, states[image_id], classes, i % N_BOXES)

        def naive(i: int) -> None:
            image_id = ids[1 + i % args.ops]
            states[image_id] = save_naive(store, editor, states[image_id], classes, (i + 7) % N_BOXES)

        save_a, save_b = timed(ours, args.ops), timed(naive, args.ops)
        nav_a = timed(
            lambda i: next_ours(store, editor, states[ids[i]], ids[i + 1], ed.label_classes), args.ops
        )
        nav_b = timed(lambda i: next_render(store, ids[i + 1]), args.ops)
        store.close()

    def row(name: str, a: list[float], b: list[float], alt: str) -> None:
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| {name} | {ma:.1f} | {alt}: {mb:.1f} | {mb / ma:.2f} |")

    print(
        f"{args.ops} operations each, {N_BOXES} boxes per {SIZE[0]}x{SIZE[1]} image; median ms (target ≤ 100)"
    )
    print("| operation | ours (ms) | alternative (ms) | alternative / ours |")
    print("|---|---|---|---|")
    row("save, 50 boxes (one moved)", save_a, save_b, "delete + re-insert all")
    row("next image (flush + load + editor value)", nav_a, nav_b, "server-side render + JPEG")


if __name__ == "__main__":
    main()
