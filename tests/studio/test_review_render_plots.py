"""Review page pictures: side-by-side / thumbnail rendering of real image files, and the plotly figures."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from studio.services.review import plots as rp
from studio.services.review import render as rr
from studio.services.review.data import Boxes, ReviewImage

FILL = (0, 0, 255)  # image colour that no box or label uses, to find the panels in the output
NAMES = ["cat", "dog"]
GT_A, GT_B = [20, 20, 80, 80], [120, 20, 180, 80]  # A is found, B is missed
PRED_TP, PRED_HIDDEN = [22, 22, 78, 78], [100, 60, 190, 95]


def write_image(path, size=(200, 100), mode="RGB") -> ReviewImage:
    """A real file of one colour, and a ReviewImage pointing at it (no boxes)."""
    Image.new("RGB", size, FILL).convert(mode).save(path)
    return ReviewImage(1, path, size[0], size[1], Boxes.empty(), Boxes.empty(with_scores=True))


def with_boxes(image: ReviewImage, gt: list, gt_labels: list, preds: list, pred_labels: list) -> ReviewImage:
    g = Boxes(np.array(gt, float).reshape(-1, 4), np.array(gt_labels, np.int64))
    p = Boxes(
        np.array(preds, float).reshape(-1, 4),
        np.array(pred_labels, np.int64),
        np.linspace(0.9, 0.5, len(preds)),
    )
    return ReviewImage(image.image_id, image.path, image.width, image.height, g, p)


@pytest.fixture
def scene(tmp_path) -> ReviewImage:
    base = write_image(tmp_path / "scene.png")
    return with_boxes(base, [GT_A, GT_B], [0, 1], [PRED_TP, PRED_HIDDEN], [0, 1])


def panels(out: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of the image area in the left and right half of a side-by-side."""
    found = []
    half = out.shape[1] // 2
    for x_off, part in ((0, out[:, :half]), (half, out[:, half:])):
        ys, xs = np.nonzero(np.all(np.abs(part.astype(int) - FILL) <= 30, axis=-1))  # JPEG: near the fill
        assert len(ys), "panel missing"
        found.append((ys.min(), xs.min() + x_off, ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))
    return found


def px(out, panel, x, y, scale):
    top, left = panel[:2]
    return tuple(out[top + round(y * scale), left + round(x * scale)])


def test_side_by_side_colours_by_outcome(scene):
    kinds, matched = np.array([rr.TP, rr.HIDDEN]), np.array([True, False])
    out = rr.render_side_by_side(scene, kinds, matched, NAMES)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    gt_panel, pred_panel = panels(out)
    assert gt_panel[2:] == pred_panel[2:] == (160, 320)  # 200x100 enlarged to half of max_side
    s = gt_panel[3] / scene.width
    # bottom edges (labels sit at the top): missed GT red, matched GT green, TP prediction green
    assert px(out, gt_panel, 150, 80, s) == rr.GT_MISSED_COLOR
    assert px(out, gt_panel, 50, 80, s) == rr.GT_MATCHED_COLOR
    assert px(out, pred_panel, 22, 78, s) == rr.OUTCOME_COLORS[rr.TP]
    # missed boxes are drawn thicker than matched ones
    red_rows = sum(px(out, gt_panel, 150, 80 - k / s, s) == rr.GT_MISSED_COLOR for k in range(8))
    green_rows = sum(px(out, gt_panel, 50, 80 - k / s, s) == rr.GT_MATCHED_COLOR for k in range(8))
    assert red_rows > green_rows >= 1
    # ground truth only on the left, predictions only on the right
    top, left, h, w = pred_panel
    assert not np.all(out[top : top + h, left : left + w] == rr.GT_MISSED_COLOR, axis=-1).any()
    top, left, h, w = gt_panel
    assert np.all(out[top : top + h, left : left + w] == rr.GT_MISSED_COLOR, axis=-1).any()


def test_prediction_outcome_colours_and_dashes(scene):
    kinds, matched = np.array([rr.FP_CLASS, rr.FP_BACKGROUND]), np.array([False, False])
    out = rr.render_side_by_side(scene, kinds, matched, NAMES)
    pred_panel = panels(out)[1]
    s = pred_panel[3] / scene.width
    assert px(out, pred_panel, 22, 78, s) == rr.OUTCOME_COLORS[rr.FP_CLASS]
    assert px(out, pred_panel, 100, 95, s) == rr.OUTCOME_COLORS[rr.FP_BACKGROUND]
    top, left = pred_panel[:2]
    bottom_row = out[top + round(95 * s), left + round(100 * s) : left + round(190 * s)]
    painted = np.all(bottom_row == rr.OUTCOME_COLORS[rr.FP_BACKGROUND], axis=-1)
    assert 0.3 < painted.mean() < 0.7  # dashed, not solid


def test_hidden_prediction_leaves_no_trace(scene):
    matched = np.array([True, False])
    with_hidden = rr.render_side_by_side(scene, np.array([rr.TP, rr.HIDDEN]), matched, NAMES)
    without = with_boxes(scene, [GT_A, GT_B], [0, 1], [PRED_TP], [0])
    np.testing.assert_array_equal(
        with_hidden, rr.render_side_by_side(without, np.array([rr.TP]), matched, NAMES)
    )
    shown = rr.render_side_by_side(scene, np.array([rr.TP, rr.FP_BACKGROUND]), matched, NAMES)
    assert not np.array_equal(with_hidden, shown)
    np.testing.assert_array_equal(
        rr.thumbnail(scene, np.array([rr.TP, rr.HIDDEN]), matched, NAMES),
        rr.thumbnail(without, np.array([rr.TP]), matched, NAMES),
    )


def test_thumbnail_overlay(scene):
    out = rr.thumbnail(scene, np.array([rr.TP, rr.FP_DUPLICATE]), np.array([True, False]), NAMES, size=256)
    assert out.shape == (128, 256, 3) and out.dtype == np.uint8
    s = 256 / scene.width
    assert tuple(out[round(78 * s), round(22 * s)]) == rr.OUTCOME_COLORS[rr.TP]  # dashes start at the corner
    assert tuple(out[round(95 * s), round(100 * s)]) == rr.OUTCOME_COLORS[rr.FP_DUPLICATE]
    assert tuple(out[round(80 * s), round(150 * s)]) == rr.GT_MISSED_COLOR
    assert tuple(out[round(50 * s), round(50 * s)]) == FILL  # inside the boxes: the image


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "I;16", "CMYK"])
def test_any_image_mode(tmp_path, mode):
    image = with_boxes(
        write_image(tmp_path / f"m.{'jpg' if mode == 'CMYK' else 'png'}", mode=mode),
        [GT_A],
        [0],
        [PRED_TP],
        [0],
    )
    side = rr.render_side_by_side(image, np.array([rr.TP]), np.array([True]), NAMES)
    thumb = rr.thumbnail(image, np.array([rr.TP]), np.array([True]), NAMES, size=64)
    assert side.dtype == thumb.dtype == np.uint8 and side.shape[2] == thumb.shape[2] == 3
    assert thumb.shape[:2] == (32, 64)


def test_transparency_shows_on_white(tmp_path):
    rgba = np.zeros((100, 200, 4), np.uint8)
    rgba[:, :100] = (*FILL, 255)  # left half opaque blue, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    Image.fromarray(rgba, "RGBA").convert("P").save(tmp_path / "p.png", transparency=0)
    image = ReviewImage(1, tmp_path / "t.png", 200, 100, Boxes.empty(), Boxes.empty(with_scores=True))
    thumb = rr.thumbnail(image, np.zeros(0), np.zeros(0, bool), NAMES, size=200)
    assert tuple(thumb[50, 20]) == FILL and tuple(thumb[50, 180]) == rr.BACKGROUND


def test_boxes_outside_the_image(tmp_path):
    base = write_image(tmp_path / "o.png")
    image = with_boxes(
        base,
        [[-50, -50, 30, 30], [500, 500, 600, 600], [float("nan"), 0, 10, 10]],
        [0, 1, 7],
        [[190, 90, 400, 300], [-900, -900, -800, -800], [60, 60, 40, 40]],
        [1, 0, 5],
    )
    kinds, matched = np.array([rr.FP_BACKGROUND, rr.TP, rr.FP_CLASS]), np.array([False, True, False])
    out = rr.render_side_by_side(image, kinds, matched, NAMES)
    assert out.dtype == np.uint8
    thumb = rr.thumbnail(image, kinds, matched, NAMES, size=200)
    assert tuple(thumb[29, 10]) == rr.GT_MISSED_COLOR  # visible part of the clipped box is outlined
    assert tuple(thumb[99, 192]) == rr.OUTCOME_COLORS[rr.FP_BACKGROUND]  # corner box clipped to the frame
    assert tuple(thumb[60, 50]) == rr.OUTCOME_COLORS[rr.FP_CLASS]  # reversed corners are still a box


def test_max_side_respected(tmp_path):
    image = with_boxes(write_image(tmp_path / "big.jpg", size=(1000, 500)), [GT_A], [0], [PRED_TP], [0])
    kinds, matched = np.array([rr.TP]), np.array([True])
    out = rr.render_side_by_side(image, kinds, matched, NAMES, max_side=200)
    for panel in panels(out):
        assert max(panel[2:]) <= 200
    assert out.shape[1] <= 2 * 200 + rr.GAP + 200  # headers may widen a column, not the image
    thumb = rr.thumbnail(image, kinds, matched, NAMES, size=96)
    assert thumb.shape == (48, 96, 3)


def test_unreadable_file_and_length_check(tmp_path, scene):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    broken = ReviewImage(2, tmp_path / "broken.png", 200, 100, scene.gt, scene.preds)
    thumb = rr.thumbnail(broken, np.array([rr.TP, rr.HIDDEN]), np.array([True, False]), NAMES, size=200)
    assert tuple(thumb[50, 100]) == rr.PLACEHOLDER and tuple(thumb[80, 150]) == rr.GT_MISSED_COLOR
    with pytest.raises(ValueError, match="pred_kind"):
        rr.thumbnail(scene, np.array([rr.TP]), np.array([True, False]), NAMES)


def test_changed_file_is_read_again(tmp_path, scene):
    """Decoded pictures are cached between slider moves, but an edited file must show its new content."""
    kinds, matched = np.array([rr.HIDDEN, rr.HIDDEN]), np.array([True, True])
    assert tuple(rr.thumbnail(scene, kinds, matched, NAMES, size=200)[50, 100]) == FILL
    Image.new("RGB", (200, 100), (255, 255, 0)).save(scene.path)
    stat = scene.path.stat()
    os.utime(scene.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert tuple(rr.thumbnail(scene, kinds, matched, NAMES, size=200)[50, 100]) == (255, 255, 0)


def test_caption():
    assert (
        rr.caption({"image_id": 12, "tp": 1, "fp": 2, "fn": 1, "f1": 0.6667})
        == "img 12 · 2 FP · 1 FN · F1 0.67"
    )
    assert (
        rr.caption({"name": "a.jpg", "tp": 2, "fp_class": 1, "fp_background": 1, "fn": 0})
        == "a.jpg · 2 FP · F1 0.67"
    )
    assert rr.caption({"image_id": 3, "tp": 2, "fp": 0, "fn": 0}) == "img 3 · all correct · F1 1.00"
    assert rr.caption({"image_id": 4, "tp": 0, "fp": 0, "fn": 0}) == "img 4 · no boxes"


# --------------------------------------------------------------------------- plots

MATRIX = np.array([[5, 1, 0, 2], [0, 3, 1, 1], [0, 0, 4, 0], [2, 1, 0, 0]])


def is_empty_note(fig) -> bool:
    return not fig.data and "Nothing to show" in fig.layout.annotations[0].text


def test_confusion_figure():
    fig = rp.confusion_figure(MATRIX, ["a", "b", "c"])
    heat = fig.data[0]
    np.testing.assert_array_equal(np.asarray(heat.z), MATRIX)
    assert list(heat.x) == list(heat.y) == ["a", "b", "c", "background"]
    custom = np.asarray(heat.customdata)
    assert custom.shape == (4, 4, 2)
    for r in range(4):
        for c in range(4):
            assert list(custom[r, c]) == [r, c]
    assert heat.text[0][3] == "2" and heat.text[2][0] == ""  # counts shown, zeros blank
    assert fig.layout.yaxis.title.text == "ground truth" and fig.layout.xaxis.title.text == "predicted"
    assert len(fig.layout.shapes) == 3  # diagonal of the classes outlined
    normalised = rp.confusion_figure(MATRIX, ["a", "b", "c", "background"], normalise=True).data[0]
    np.testing.assert_allclose(np.asarray(normalised.z).sum(axis=1), [1, 1, 1, 1])
    assert normalised.text[0][0] == "62%"
    with pytest.raises(ValueError):
        rp.confusion_figure(MATRIX, ["a", "b"])


def test_confusion_many_classes():
    n = 30
    matrix = np.random.default_rng(0).integers(0, 5, (n + 1, n + 1))
    fig = rp.confusion_figure(matrix, [f"class{k}" for k in range(n)])
    assert np.asarray(fig.data[0].z).shape == (n + 1, n + 1) and fig.layout.height >= 24 * (n + 1)


def test_pr_and_f1_figures():
    r = np.linspace(0, 1, 11)
    fig = rp.pr_figure(
        {"cat": (r, 1 - r / 2), "dog": (r, 1 - r), "ghost": (np.zeros(0), np.zeros(0))},
        {"cat": 0.712, "dog": float("nan")},
    )
    assert [t.name for t in fig.data] == ["cat (AP50 0.71)", "dog (AP50 —)"]
    np.testing.assert_array_equal(fig.data[0].x, r)
    assert [t.name for t in rp.pr_figure({"cat": (r, r)}).data] == ["cat"]
    t = np.linspace(0, 1, 21)
    fig = rp.f1_figure(t, t * (1 - t) * 4, 1 - t, t, best=0.5, current=0.25)
    assert [d.name for d in fig.data] == ["F1", "precision", "recall"]
    assert sorted(s.x0 for s in fig.layout.shapes) == [0.25, 0.5]
    assert {a.text for a in fig.layout.annotations} == {"F1-optimal 0.50", "current 0.25"}
    assert not rp.f1_figure(t, t, t, t, best=None, current=None).layout.shapes


def test_ap_bar_and_table():
    rows = [
        {
            "class": "cat",
            "ap": 0.123456,
            "ap50": 0.5,
            "precision": 0.66666,
            "recall": 1.0,
            "n_gt": 3,
            "best_conf": 0.41,
        },
        {"class": "dog", "ap": None, "ap50": float("nan"), "precision": 0.0, "recall": None, "n_gt": 0},
    ]
    table = rp.ap_table(rows)
    assert list(table.columns) == [
        "Class",
        "AP@50:95",
        "AP@50",
        "Precision",
        "Recall",
        "GT boxes",
        "F1-optimal conf",
    ]
    assert table.iloc[0].tolist() == ["cat", 0.123, 0.5, 0.667, 1.0, 3, 0.41]
    assert table.iloc[1].tolist() == ["dog", "—", "—", 0.0, "—", 0, "—"]
    fig = rp.ap_bar_figure(rows)
    assert [d.name for d in fig.data] == ["AP@50:95", "AP@50"]
    assert list(fig.data[0].x) == ["cat", "dog"] and fig.data[0].y[0] == pytest.approx(0.123456)


def test_empty_inputs_say_so():
    assert is_empty_note(rp.confusion_figure(np.zeros((0, 0)), []))
    assert is_empty_note(rp.confusion_figure(np.zeros((3, 3)), ["a", "b"]))
    assert is_empty_note(rp.pr_figure({}))
    assert is_empty_note(rp.pr_figure({"cat": (np.zeros(0), np.zeros(0))}, {"cat": 0.0}))
    assert is_empty_note(rp.f1_figure(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), None, 0.5))
    assert is_empty_note(rp.ap_bar_figure([]))
    assert is_empty_note(rp.ap_bar_figure([{"class": "cat", "ap": None, "ap50": None}]))
    table = rp.ap_table([])
    assert isinstance(table, pd.DataFrame) and table.empty and list(table.columns) == list(rp.TABLE_COLUMNS)


def test_class_names_are_text_in_plots():
    """plotly reads tags in its text and decodes entities: names go in escaped, so they show as spelled."""
    hostile = "<img src=x onerror=window.__xss=1>"
    fig = rp.confusion_figure(np.array([[2, 1], [1, 0]]), [hostile])
    heat = fig.data[0]
    assert list(heat.x) == ["&lt;img src=x onerror=window.__xss=1&gt;", "background"] == list(heat.y)
    assert all("<img" not in t for t in np.asarray(heat.hovertext).ravel())
    pr = rp.pr_figure({hostile: (np.array([0.0, 1.0]), np.array([1.0, 0.5]))}, {hostile: 0.5})
    assert pr.data[0].name == "&lt;img src=x onerror=window.__xss=1&gt; (AP50 0.50)"
    bars = rp.ap_bar_figure([{"name": hostile, "AP_50_95": 0.2, "AP_50": 0.4}])
    assert "<img" not in "".join(bars.data[0].x)


def test_review_image_is_named_as_the_user_named_it(tmp_path):
    image = ReviewImage(1, tmp_path / "0123abcd.jpg", 10, 10, Boxes.empty(), Boxes.empty(with_scores=True))
    assert image.shown_name == "0123abcd.jpg"  # nothing better known
    named = ReviewImage(1, image.path, 10, 10, image.gt, image.preds, name="BloodImage_00037.jpg")
    assert named.shown_name == "BloodImage_00037.jpg"
    assert (
        rr.caption({"name": named.shown_name, "image_id": 1, "tp": 1})
        == "BloodImage_00037.jpg · all correct · F1 1.00"
    )
