"""Model-assisted labeling on a real SQLite project: proposals, accept / reject, class mapping.

The storage logic is exercised with a small real detector (it finds the yellow blob every fixture
image has) and, in the slow test, with a real randomly initialised RF-DETR Nano checkpoint.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from studio.errors import StudioError
from studio.services.data import classes as class_svc
from studio.services.label import labeling as lab
from studio.services.label import proposals as prop
from studio.store.models import Run
from tests.support.label_fixtures import make_project


def blob_detector(rgb: np.ndarray):
    """Yellow-ish pixels -> one 'circle' box (0.9); a fixed 'comet' box (0.7); a faint 'star' (0.1)."""
    mask = (rgb[..., 0] > 200) & (rgb[..., 1] > 200)
    ys, xs = np.nonzero(mask)
    boxes = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], [50, 40, 70, 60], [60, 2, 90, 30]]
    return np.array(boxes, float), np.array([0.9, 0.7, 0.1]), ["circle", "comet", "Star"]


@pytest.fixture()
def proj(tmp_path: Path):
    store, cls, ids = make_project(tmp_path)
    yield store, cls, ids
    store.close()


def test_class_mapping_by_name_with_message(proj) -> None:
    store, cls, _ids = proj
    m = prop.map_classes(store, ["circle", "comet", "Star"])
    assert m.to_category == {"circle": cls["circle"], "Star": cls["star"]}
    assert m.unknown == ["comet"] and m.not_in_model == ["square"]
    assert "'comet'" in m.message and "skipped" in m.message and "'square'" in m.message
    assert prop.map_classes(store, ["circle", "square", "star"]).message == ""
    with pytest.raises(StudioError, match="do not match this project's.*'person'.*'circle'"):
        prop.map_classes(store, ["person", "car"])


def test_propose_accept_one_and_reject_rest(proj) -> None:
    store, cls, ids = proj
    mapping = prop.map_classes(store, ["circle", "comet", "Star"])
    before = lab.load_image(store, ids[2])
    st = prop.propose(store, ids[2], blob_detector, mapping, threshold=0.5)
    assert st.version == before.version + 1 and st.boxes == []
    (p,) = st.proposals  # comet unknown, Star below threshold
    assert p.category_id == cls["circle"] and p.score == pytest.approx(0.9) and p.source == "proposal"
    assert (p.x, p.y) == (12, 8)  # the blob drawn at (10 + i, 8) for image 2
    # proposals are not ground truth: not in counts, image still unlabeled and in the queue first
    counts = {c.name: c.total_boxes for c in class_svc.class_counts(store)}
    assert counts["circle"] == 1 and st.status == "unlabeled"
    assert lab.queue(store)[0] == ids[2]

    st = prop.propose(store, ids[2], blob_detector, mapping, threshold=0.05)  # replaces, adds the star
    assert sorted(cls_id for cls_id in (b.category_id for b in st.proposals)) == sorted(
        [cls["circle"], cls["star"]]
    )
    circle = next(b for b in st.proposals if b.category_id == cls["circle"])
    st = prop.accept_proposals(store, ids[2], st.version, [circle.id])
    assert [b.category_id for b in st.boxes] == [cls["circle"]] and st.boxes[0].score is None
    assert st.status == "labeled" and len(st.proposals) == 1
    st = prop.reject_proposals(store, ids[2], st.version)
    assert st.proposals == [] and len(st.boxes) == 1
    assert {c.name: c.total_boxes for c in class_svc.class_counts(store)}["circle"] == 2
    with pytest.raises(StudioError, match="No proposals to accept"):
        prop.accept_proposals(store, ids[2], st.version)


def test_accept_all_and_stale_review_is_refused(proj) -> None:
    store, cls, ids = proj
    mapping = prop.map_classes(store, ["circle", "Star"])
    st = prop.propose(store, ids[3], blob_detector, mapping, threshold=0.0)
    assert len(st.proposals) == 2
    other_tab = lab.save_image(store, ids[3], [lab.Box(1, 1, 5, 5, cls["square"])], st.version)
    with pytest.raises(lab.VersionConflict) as err:
        prop.accept_proposals(store, ids[3], st.version)
    assert len(err.value.current.proposals) == 2 and len(err.value.current.boxes) == 1
    done = prop.accept_proposals(store, ids[3], other_tab.state.version)
    assert len(done.boxes) == 3 and done.proposals == []


def test_prelabel_batch_progress_and_cancel(proj) -> None:
    store, _cls, ids = proj
    mapping = prop.map_classes(store, ["circle"])
    todo = prop.unlabeled_images(store)
    assert todo == ids[2:]
    seen: list[float] = []
    stop = threading.Event()

    def progress(fraction: float, _msg: str) -> None:
        seen.append(fraction)
        if len(seen) == 2:
            stop.set()  # the user presses Cancel while the 2nd image runs

    res = prop.prelabel(store, todo, blob_detector, mapping, 0.5, progress=progress, should_stop=stop.is_set)
    assert res.cancelled and res.done == 2 and res.n_proposals == 2 and "Cancelled: 2 / 4" in res.summary()
    assert [len(lab.load_image(store, i).proposals) for i in todo] == [1, 1, 0, 0]
    res = prop.prelabel(store, todo, blob_detector, mapping, 0.5, progress=lambda f, m: seen.append(f))
    assert not res.cancelled and res.done == 4 and seen[-1] == 1.0
    assert [len(lab.load_image(store, i).proposals) for i in todo] == [1, 1, 1, 1]  # replaced, not doubled


def test_list_checkpoints_of_runs(proj, tmp_path: Path) -> None:
    store, _cls, _ids = proj
    ckpt = store.path / "runs" / "r1" / "best.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    with store.session() as s:
        s.add(
            Run(
                name="r1",
                model_size="nano",
                best_checkpoint="runs/r1/best.pth",
                last_checkpoint="runs/r1/missing.pth",
            )
        )
        s.add(Run(name="r0", model_size="nano"))
    assert prop.list_checkpoints(store) == [("r1 · best (nano)", str(ckpt))]
    with pytest.raises(StudioError, match="does not exist"):
        prop.checkpoint_predictor(tmp_path / "nope.pth")


@pytest.mark.slow
def test_real_rfdetr_checkpoint_proposals(proj, tmp_path: Path) -> None:
    """A random RF-DETR Nano saved with this project's class names: threshold 0 gives proposals."""
    import torch

    from rfdetr_core import RFDETRNano
    from rfdetr_core.checkpoint import save_checkpoint

    store, cls, ids = proj
    torch.manual_seed(0)
    model = RFDETRNano(pretrain_weights=None, num_classes=3)
    path = tmp_path / "tiny.pth"
    args = {**model.checkpoint_args(), "class_names": ["circle", "square", "comet"]}
    save_checkpoint(path, state=model.model.model.state_dict(), args=args, model_name="RFDETRNano")

    predictor, names = prop.checkpoint_predictor(path)
    assert names == ["circle", "square", "comet"]
    mapping = prop.map_classes(store, names)
    assert mapping.unknown == ["comet"] and "'comet'" in mapping.message
    st = prop.propose(store, ids[4], predictor, mapping, threshold=0.0)
    assert st.proposals and {b.category_id for b in st.proposals} <= {cls["circle"], cls["square"]}
    assert all(0 <= b.x and b.x + b.w <= 96 + 1e-6 and b.score is not None for b in st.proposals)
    st = prop.accept_proposals(store, ids[4], st.version, [st.proposals[0].id])
    assert len(st.boxes) == 1 and st.status == "labeled"
