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


# -- matching at scale (issue 13) -------------------------------------------------------------------


def _reference_match(stored: list[lab.Box], incoming: list[lab.Box]):
    """The matching rules written the slow, obvious way (every pair): ids, then identical boxes
    (earliest stored), then the most overlapping remaining box (ties: earliest stored) at IoU >= 0.3."""
    from rfdetr_core.ops.boxes import box_iou_np
    from studio.services.label.box_matching import MATCH_IOU, same_box

    left = list(stored)
    unchanged, updates, pending, rest, inserts = [], [], [], [], []
    for box in incoming:
        hit = next((b for b in left if box.id is not None and b.id == box.id), None)
        if hit is None:
            pending.append(box)
            continue
        left.remove(hit)
        (unchanged.append(hit) if same_box(hit, box) else updates.append((hit, box)))
    for box in pending:
        twin = next((b for b in left if same_box(b, box)), None)
        if twin is None:
            rest.append(box)
        else:
            left.remove(twin)
            unchanged.append(twin)
    for box in rest:
        ious = box_iou_np([box.xyxy], [b.xyxy for b in left])[0] if left else []
        best = max(range(len(left)), key=lambda i: ious[i], default=None)
        if best is not None and ious[best] >= MATCH_IOU:
            updates.append((left.pop(best), box))
        else:
            inserts.append(box)
    return unchanged, updates, inserts, left


def test_match_boxes_equals_the_pairwise_reference() -> None:
    import random

    rng = random.Random(7)
    key = lambda b: (b.id, b.x, b.y, b.w, b.h, b.category_id)  # noqa: E731
    for _ in range(150):
        stored = [
            lab.Box(rng.choice([rng.uniform(0, 150), 5.0]), rng.uniform(0, 150), rng.uniform(1, 40),
                    rng.uniform(1, 40), rng.randint(1, 3), id=i + 1, version=1)
            for i in range(rng.randint(0, 40))
        ]  # fmt: skip
        incoming = []
        for b in stored:
            r = rng.random()
            if r < 0.4:
                incoming.append(lab.Box(b.x + rng.uniform(-0.5, 0.5), b.y, b.w, b.h, b.category_id))
            elif r < 0.5:
                incoming.append(lab.Box(b.x + 4, b.y, b.w, b.h, b.category_id, id=b.id))
            elif r < 0.85:
                incoming.append(lab.Box(b.x + rng.uniform(-9, 9), b.y + rng.uniform(-9, 9), b.w, b.h, 1))
        incoming += [lab.Box(rng.uniform(0, 150), rng.uniform(0, 150), 20, 20, 2) for _ in range(3)]
        rng.shuffle(incoming)
        got = lab.match_boxes(stored, incoming)
        want = _reference_match(stored, incoming)
        assert [key(b) for b in got.unchanged] == [key(b) for b in want[0]]
        assert [(key(a), key(b)) for a, b in got.updates] == [(key(a), key(b)) for a, b in want[1]]
        assert [key(b) for b in got.inserts] == [key(b) for b in want[2]]
        assert [key(b) for b in got.deletes] == [key(b) for b in want[3]]


def test_saving_thousands_of_nudged_boxes_updates_each_row(tmp_path: Path) -> None:
    import random

    store, cls, ids = make_project(tmp_path)
    rng = random.Random(3)
    with store.session() as s:
        s.add_all(
            Annotation(
                image_id=ids[2],
                category_id=cls["star"],
                x=rng.uniform(0, 60),
                y=rng.uniform(0, 30),
                w=rng.uniform(4, 30),
                h=rng.uniform(4, 30),
            )
            for _ in range(2000)
        )
    st = lab.load_image(store, ids[2])
    nudged = [lab.Box(b.x + 1, b.y, b.w, b.h, b.category_id) for b in st.boxes]
    res = lab.save_image(store, ids[2], nudged, st.version)
    unchanged, updates, inserts, deletes = _reference_match(st.boxes, nudged)
    assert len(updates) > 1900  # dense on purpose: a few boxes meet a closer neighbour first
    want = f"Saved: {len(inserts)} added, {len(updates)} changed, {len(deletes)} deleted."
    assert res.summary == want
    by_id = {b.id: b for b in res.state.boxes}
    for old, new in updates:  # each moved box kept its row, got the new corners and a new version
        row = by_id[old.id]
        assert (row.x, row.y, row.w, row.h) == pytest.approx((new.x, new.y, new.w, new.h), abs=1e-9)
        assert row.version == old.version + 1
    assert all(by_id[b.id].version == b.version for b in unchanged)
    assert len(res.state.boxes) == 2000
    store.close()


def test_a_save_between_matching_and_writing_is_refused(proj) -> None:
    """The match runs outside the write lock; the write re-checks the version inside it."""
    store, cls, ids = proj
    st = lab.load_image(store, ids[0])
    boxes = [lab.Box(b.x + 2, b.y, b.w, b.h, b.category_id) for b in st.boxes]
    plan = lab._plan(store, ids[0], boxes, no_objects=False, keep_proposals=None, status=None)
    lab.save_image(store, ids[0], [], st.version)  # another tab, while this save was matching
    with store.session() as s:
        assert not lab._write(s, ids[0], st.version, plan)
        s.rollback()
    assert lab.load_image(store, ids[0]).boxes == []  # nothing of the stale plan was written


# -- the save use case and the tab's actions (no browser) --------------------------------------------


def _shown(store, image_id: int, slug: str = "p"):
    from studio.services.label import session as ses
    from studio.services.label.saving import LabelCursor, QueueFilter

    cursor = LabelCursor(slug=slug, queue=lab.queue(store), filters=QueueFilter())
    return ses.view(store, cursor, lab.load_image(store, image_id), "", None)


def test_flush_skips_unchanged_and_foreign_editors_and_records_undo(proj) -> None:
    from studio.services.label.saving import LabelCursor, flush

    store, _cls, ids = proj
    hist = lab.UndoHistory()
    v = _shown(store, ids[0])
    assert flush(store, "p", LabelCursor(), hist, v.editor, None).state is None  # nothing shown yet
    assert flush(store, "other", v.cursor, hist, v.editor, None).state is None  # project switched
    assert flush(store, "p", v.cursor, hist, v.editor, None).state is None  # no edit: no write
    assert hist.size(ids[0]) == 0
    deleted = flush(store, "p", v.cursor, hist, {"image": v.editor["image"], "boxes": []}, None)
    assert deleted.state.boxes == [] and deleted.message == "Saved: 0 added, 0 changed, 2 deleted."
    assert lab.load_image(store, ids[0]).version == v.cursor.version + 1
    assert hist.size(ids[0]) == 1
    unknown = {"xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9, "label": "<b>x</b>"}
    circle = {"xmin": 20, "ymin": 20, "xmax": 40, "ymax": 40, "label": "circle"}
    edited = {"image": v.editor["image"], "boxes": [unknown, circle]}
    stale = flush(store, "p", v.cursor, hist, edited, None)  # still based on the old version
    assert stale.conflict and stale.message.startswith("⛔ Not saved")
    assert stale.state.version == v.cursor.version + 1
    fresh = _shown(store, ids[0])
    res = flush(store, "p", fresh.cursor, hist, edited, None)
    assert not res.conflict and "Skipped boxes with unknown class: &lt;b&gt;x&lt;/b&gt;" in res.message


def test_refilter_with_the_same_filters_is_a_no_op(proj) -> None:
    from studio.services.label import session as ses

    store, _cls, ids = proj
    v = _shown(store, ids[0])
    same = ses.Editing("p", v.cursor, lab.UndoHistory(), v.editor, None)
    assert ses.refilter(store, same, ses.queue_filter("all", "all", "all", False)) is None
    labeled = ses.refilter(store, same, ses.queue_filter("all", "all", "labeled", False))
    assert labeled.cursor.queue == ids[:2] and labeled.cursor.image_id == ids[0]
    again = ses.Editing("p", labeled.cursor, lab.UndoHistory(), labeled.editor, None)
    assert ses.refilter(store, again, ses.queue_filter("all", "all", "labeled", False)) is None
    assert ses.refilter(store, again, labeled.cursor.filters, force=True).cursor.queue == ids[:2]
    # another project's cursor is never taken for "same filters"
    other = ses.Editing("q", labeled.cursor, lab.UndoHistory(), labeled.editor, None)
    assert ses.refilter(store, other, labeled.cursor.filters).cursor.slug == "q"


def test_undo_with_nothing_to_undo_changes_only_the_message(proj) -> None:
    from studio.services.label import session as ses

    store, cls, ids = proj
    v = _shown(store, ids[0])
    hist = lab.UndoHistory()
    out = ses.undo(store, v.cursor, hist, None)
    assert not out.redraw and out.message == ses.NOTHING_TO_UNDO and out.cursor == v.cursor
    assert lab.load_image(store, ids[0]).version == v.cursor.version  # nothing written
    e = ses.Editing("p", v.cursor, hist, {"image": v.editor["image"], "boxes": []}, None)
    saved = ses.save(store, e)
    undone = ses.undo(store, saved.cursor, hist, None)
    assert undone.redraw and undone.message.startswith("Undone: 2 added")
    assert len(lab.load_image(store, ids[0]).boxes) == 2
    assert not ses.undo(store, ses.LabelCursor(), hist, None).redraw  # no image open: a message too


def test_view_shows_the_users_file_name_escaped(proj) -> None:
    store, _cls, ids = proj
    with store.session() as s:
        image = s.get_one(Image, ids[3])
        image.original_name = "<img src=x onerror=alert(1)>*b*.png"
        stored_name = Path(image.file_name).stem
    v = _shown(store, ids[3])
    assert "<img" not in v.info and "&lt;img src=x onerror=alert\\(1\\)&gt;\\*b\\*\\.png" in v.info
    assert stored_name not in v.info
    assert "box\\_clipped: box clipped to the image" in v.info  # the import problem, escaped too
