"""Labeling service on a real SQLite project: queue, box edits, version conflicts, undo, editor format."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from studio.errors import StudioError
from studio.services.label import editor_format as ed
from studio.services.label import labeling as lab
from studio.store.db import ProjectStore
from studio.store.models import Annotation, Image
from tests.support.label_fixtures import make_project


@pytest.fixture()
def proj(tmp_path: Path):
    store, cls, ids = make_project(tmp_path)
    yield store, cls, ids
    store.close()


def test_queue_unlabeled_first_and_filters(proj) -> None:
    store, cls, ids = proj
    assert lab.queue(store) == ids[2:] + ids[:2]
    assert lab.queue(store, status="labeled") == ids[:2]
    assert lab.queue(store, category_id=cls["star"]) == [ids[1]]
    assert lab.queue(store, has_problems=True) == [ids[3]]
    assert lab.queue(store, split="unassigned") == lab.queue(store)
    assert lab.queue(store, split="train") == []
    with pytest.raises(StudioError, match="Unknown split"):
        lab.queue(store, split="nope")
    q = lab.queue(store)
    assert lab.position_text(q, q[2]) == "3 / 6"
    assert lab.neighbour(q, q[2], +1) == q[3]
    assert lab.neighbour(q, q[0], -1) == q[0]  # clamped
    assert lab.neighbour(q, 999, +1) == q[0]


def test_create_update_delete_boxes_keep_row_versions(proj) -> None:
    store, cls, ids = proj
    st = lab.load_image(store, ids[0])
    assert [b.category_id for b in st.boxes] == [cls["circle"], cls["square"]]
    circle, square = st.boxes
    # move the square a little, keep the circle, add a star
    moved = lab.Box(square.x + 3, square.y + 2, square.w, square.h, cls["square"])
    same = lab.Box(circle.x, circle.y, circle.w, circle.h, cls["circle"])
    new = lab.Box(60, 40, 20, 15, cls["star"])
    res = lab.save_image(store, ids[0], [same, moved, new], st.version)
    assert res.changed and res.summary.startswith("Saved: 1 added, 1 changed, 0 deleted")
    after = res.state
    assert after.version == st.version + 1
    by_id = {b.id: b for b in after.boxes}
    assert by_id[circle.id].version == circle.version  # untouched row kept its version
    assert by_id[square.id].version == square.version + 1 and by_id[square.id].x == square.x + 3
    assert len(after.boxes) == 3 and after.status == "labeled"

    # delete everything -> back to unlabeled
    res2 = lab.save_image(store, ids[0], [], after.version)
    assert res2.state.boxes == [] and res2.state.status == "unlabeled"
    with store.session(readonly=True) as s:
        assert s.scalars(select(Annotation).where(Annotation.image_id == ids[0])).all() == []


def test_no_change_writes_nothing_and_boxes_are_clipped(proj) -> None:
    store, cls, ids = proj
    st = lab.load_image(store, ids[1])
    same = [lab.Box(b.x, b.y, b.w, b.h, b.category_id) for b in st.boxes]
    res = lab.save_image(store, ids[1], same, st.version)
    assert not res.changed and res.state.version == st.version
    res = lab.save_image(
        store, ids[2], [lab.Box(-10, 50, 200, 40, cls["circle"])], lab.load_image(store, ids[2]).version
    )
    (b,) = res.state.boxes
    assert (b.x, b.y, b.w, b.h) == (0, 50, 96, 14)  # clipped to the 96x64 image


def test_no_objects_marks_labeled_with_zero_boxes(proj) -> None:
    store, cls, ids = proj
    st = lab.load_image(store, ids[4])
    res = lab.save_image(store, ids[4], [], st.version, no_objects=True)
    assert res.state.status == "labeled" and res.state.boxes == []
    assert ids[4] not in lab.queue(store, status="unlabeled")
    # saving the empty image again (moving on without edits) keeps it labeled
    res2 = lab.save_image(store, ids[4], [], res.state.version)
    assert not res2.changed and res2.state.status == "labeled"
    with pytest.raises(StudioError, match="delete the boxes first"):
        lab.save_image(
            store, ids[4], [lab.Box(1, 1, 10, 10, cls["star"])], res.state.version, no_objects=True
        )


def test_stale_save_is_refused_with_current_state(proj) -> None:
    store, cls, ids = proj
    tab_a = lab.load_image(store, ids[0])
    tab_b = lab.load_image(store, ids[0])
    lab.save_image(store, ids[0], [lab.Box(1, 1, 20, 20, cls["star"])], tab_a.version)
    with pytest.raises(lab.VersionConflict, match="changed this image since you opened it") as err:
        lab.save_image(store, ids[0], [lab.Box(5, 5, 30, 30, cls["circle"])], tab_b.version)
    current = err.value.current
    assert [(b.category_id, b.x) for b in current.boxes] == [(cls["star"], 1)]  # tab A's edit survived
    assert current.version == tab_a.version + 1
    # tab B reloads (uses the version it was shown) and its edit goes through
    ok = lab.save_image(store, ids[0], [lab.Box(5, 5, 30, 30, cls["circle"])], current.version)
    assert [b.category_id for b in ok.state.boxes] == [cls["circle"]]


def test_stale_orm_update_of_one_annotation_is_refused(proj) -> None:
    """Annotation.version is SQLAlchemy's version counter: a stale row cannot overwrite a newer one."""
    from sqlalchemy.orm.exc import StaleDataError

    store, cls, ids = proj
    with store.session(readonly=True) as s:
        stale = s.scalars(select(Annotation).where(Annotation.image_id == ids[1])).one()
    st = lab.load_image(store, ids[1])
    lab.save_image(store, ids[1], [lab.Box(6, 5, 40, 30, cls["star"])], st.version)  # moves it: version 2
    with pytest.raises(StaleDataError), store.session() as s:
        row = s.merge(stale, load=False)
        row.x = 99
        s.flush()


def test_undo_restores_previous_boxes_and_respects_versions(proj) -> None:
    store, cls, ids = proj
    hist = lab.UndoHistory()
    st = lab.load_image(store, ids[0])
    before = sorted((b.category_id, b.x) for b in st.boxes)
    r1 = lab.save_image(store, ids[0], [], st.version)
    hist.push(ids[0], r1.before)
    r2 = lab.save_image(store, ids[0], [lab.Box(2, 2, 10, 10, cls["star"])], r1.state.version)
    hist.push(ids[0], r2.before)
    assert hist.size(ids[0]) == 2
    u1 = lab.undo(store, hist, ids[0], r2.state.version)
    assert u1.state.boxes == [] and u1.state.status == "unlabeled" and u1.summary.startswith("Undone")
    u2 = lab.undo(store, hist, ids[0], u1.state.version)
    assert sorted((b.category_id, b.x) for b in u2.state.boxes) == before
    assert u2.state.status == "labeled"
    with pytest.raises(StudioError, match="Nothing to undo"):
        lab.undo(store, hist, ids[0], u2.state.version)

    # an undo based on a stale version is refused and stays available
    r3 = lab.save_image(store, ids[0], [], u2.state.version)
    hist.push(ids[0], r3.before)
    lab.save_image(store, ids[0], [lab.Box(3, 3, 9, 9, cls["circle"])], r3.state.version)  # "another tab"
    with pytest.raises(lab.VersionConflict):
        lab.undo(store, hist, ids[0], r3.state.version)
    assert hist.size(ids[0]) == 1


def test_undo_of_no_objects_mark(proj) -> None:
    store, _cls, ids = proj
    hist = lab.UndoHistory()
    st = lab.load_image(store, ids[5])
    r = lab.save_image(store, ids[5], [], st.version, no_objects=True)
    hist.push(ids[5], r.before)
    u = lab.undo(store, hist, ids[5], r.state.version)
    assert u.state.status == "unlabeled"


def test_editor_round_trip_and_proposal_semantics(proj) -> None:
    store, cls, ids = proj
    with store.session() as s:
        for x in (2, 50):
            s.add(
                Annotation(
                    image_id=ids[0],
                    category_id=cls["star"],
                    x=x,
                    y=30,
                    w=20,
                    h=20,
                    source="proposal",
                    score=0.8,
                )
            )
        s.get_one(Image, ids[0]).version += 1
    classes = ed.label_classes(store)
    assert [c.name for c in classes.offered] == ["circle", "square", "star"]
    st = lab.load_image(store, ids[0])
    value = ed.editor_value(st, classes)
    assert value["image"].endswith(".png")
    labels = [b["label"] for b in value["boxes"]]
    assert labels[:2] == ["circle", "square"] and labels[2].startswith("? star 0.80 #")
    assert value["boxes"][0]["color"] == "rgb(230, 25, 75)"
    assert value["boxes"][2]["color"] == ed.rgb(ed.PROPOSAL_COLOR)

    boxes = [dict(b) for b in value["boxes"]]
    boxes[3]["xmin"] += 5  # moving proposal 2 = fixing and accepting it
    boxes.append(
        {"xmin": 70, "ymin": 5, "xmax": 90, "ymax": 20, "label": ed.NEW_BOX_LABEL}
    )  # -> picked class
    boxes.append({"xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9, "label": "dragon"})
    parsed = ed.from_editor(boxes, st, classes, default_class=cls["circle"])
    assert parsed.keep_proposals == [st.proposals[0].id]
    assert parsed.unknown_labels == ["dragon"]
    res = lab.save_image(store, ids[0], parsed.boxes, st.version, keep_proposals=parsed.keep_proposals)
    assert [p.id for p in res.state.proposals] == [st.proposals[0].id]
    names = sorted(classes.by_id[b.category_id].name for b in res.state.boxes)
    assert names == ["circle", "circle", "square", "star"]

    # deleting the remaining proposal in the editor rejects it
    value = ed.editor_value(res.state, classes)
    parsed = ed.from_editor(
        [b for b in value["boxes"] if not b["label"].startswith("?")], res.state, classes, None
    )
    res2 = lab.save_image(
        store, ids[0], parsed.boxes, res.state.version, keep_proposals=parsed.keep_proposals
    )
    assert res2.state.proposals == [] and "1 proposal(s) rejected" in res2.summary


def test_unchanged_editor_boxes_detects_no_edit() -> None:
    shown = [
        {"xmin": 10, "ymin": 5, "xmax": 40, "ymax": 30, "label": "circle", "color": "rgb(1, 2, 3)"},
        {"xmin": 50, "ymin": 5, "xmax": 60, "ymax": 30, "label": "star"},
    ]
    back = [{**shown[1], "color": (0, 0, 0)}, {**shown[0], "xmax": 41}]  # reordered, rounding
    assert ed.unchanged(shown, back)
    assert not ed.unchanged(shown, back[:1])  # a box deleted
    assert not ed.unchanged(shown, [back[0], {**shown[0], "xmax": 45}])  # resized
    assert not ed.unchanged(shown, [back[0], {**shown[0], "label": "star"}])  # re-classed
    assert ed.unchanged([], None)


def test_missing_image_is_a_clear_error(tmp_path: Path) -> None:
    store = ProjectStore.create(tmp_path / "p", "P")
    with pytest.raises(StudioError, match="does not exist"):
        lab.load_image(store, 42)
    assert lab.queue(store) == [] and lab.position_text([], None) == "0 / 0"
    store.close()


def test_add_images_validates_like_import(proj, tmp_path: Path) -> None:
    from PIL import Image as PILImage

    from studio.services.data.importing.report import ImportAborted

    store, _cls, ids = proj
    up = tmp_path / "uploads"
    (up / "a").mkdir(parents=True)
    (up / "b").mkdir()
    PILImage.new("RGB", (40, 30), (200, 10, 10)).save(up / "a" / "shot.png")
    PILImage.new("RGB", (40, 30), (10, 200, 10)).save(up / "b" / "shot.png")  # same name, other picture
    (up / "broken.jpg").write_bytes(b"not a jpeg")
    report = lab.add_images(store, [up / "a" / "shot.png", up / "b" / "shot.png", up / "broken.jpg"])
    assert report.counts["images_imported"] == 2
    assert any("broken.jpg" in p.file for p in report.problems)
    q = lab.queue(store)
    new = [i for i in q if i not in ids]
    assert len(new) == 2 and q[-2:] == ids[:2]  # new images are unlabeled: ahead of the labeled ones
    names = sorted(lab.load_image(store, i).original_name for i in new)
    assert names == ["shot (2).png", "shot.png"]
    with pytest.raises(ImportAborted):
        lab.add_images(store, [tmp_path / "missing-folder"])
    with pytest.raises(StudioError, match="Choose images"):
        lab.add_images(store, [])
