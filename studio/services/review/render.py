"""Pictures of one reviewed image: ground truth and predictions coloured by what the matching decided.

Why numpy and not supervision (as :func:`studio.services.data.gallery.render_image`): the worst-first gallery
redraws up to ~48 thumbnails every time the confidence slider moves, and predictions need a second,
clearly different line style (dashed) that the annotators do not offer. Boxes are therefore painted as
array slices (a few microseconds each) and only the labels go through ``ImageDraw``.

Outcome codes per prediction are the ones of ``review_matching`` (repeated here so this module needs
nothing but the data): ``HIDDEN`` predictions are below the confidence threshold and leave no trace.
Box coordinates are pixels of the image as stored (``ReviewImage.width``/``height``); they are scaled
with the picture, clipped to it, and a box entirely outside is skipped rather than failing the page.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from studio.services.review.data import ReviewImage

HIDDEN, TP, FP_CLASS, FP_DUPLICATE, FP_BACKGROUND = -1, 0, 1, 2, 3

Color = tuple[int, int, int]
GT_MATCHED_COLOR: Color = (60, 180, 75)  # green
GT_MISSED_COLOR: Color = (230, 25, 75)  # red, drawn thicker
OUTCOME_COLORS: dict[int, Color] = {
    TP: (60, 180, 75),  # green
    FP_CLASS: (245, 130, 49),  # orange
    FP_DUPLICATE: (145, 30, 180),  # purple
    FP_BACKGROUND: (230, 25, 75),  # red
}
OUTCOME_NAMES = {TP: "TP", FP_CLASS: "wrong class", FP_DUPLICATE: "duplicate", FP_BACKGROUND: "background"}
UNKNOWN_COLOR: Color = (128, 128, 128)
BACKGROUND: Color = (255, 255, 255)  # canvas, and what transparent pixels are shown on
TEXT: Color = (30, 30, 30)
HALO: Color = (20, 20, 20)  # under the lines of the large view
PLACEHOLDER: Color = (200, 200, 200)  # panel of an image file that cannot be read
GAP = 8  # pixels between the two panels


# --------------------------------------------------------------------------- loading


def _fit(width: int, height: int, long_side: int) -> tuple[int, int]:
    scale = long_side / max(width, height, 1)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(im: PILImage.Image) -> PILImage.Image:
    """Any PIL mode as RGB; transparent pixels become :data:`BACKGROUND`, 16/32-bit images are stretched."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im, dtype=np.float32)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return PILImage.fromarray(a.astype(np.uint8), "L").convert("RGB")
    if (im.mode == "P" and "transparency" in im.info) or im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = PILImage.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return PILImage.alpha_composite(canvas, rgba).convert("RGB")
    return im.convert("RGB")


def _decode(path: str, base_w: int, base_h: int, long_side: int) -> np.ndarray:
    """The file at ``path`` as RGB, resized so its longer side is ``long_side`` (read-only array).

    JPEG files are decoded at a reduced size (``draft``) when that is enough, which is most of the cost
    of a thumbnail of a large photo. An unreadable file gives a grey panel so one bad file does not
    break a whole gallery; its boxes are still drawn.
    """
    size = _fit(base_w, base_h, long_side)
    try:
        with PILImage.open(path) as im:
            im.draft(None, size)
            pil = _to_rgb(im)
            if pil.size != size:
                pil = pil.resize(size, PILImage.BILINEAR, reducing_gap=2.0)
            frame = np.array(pil, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError):
        frame = np.empty((size[1], size[0], 3), np.uint8)
        frame[:] = PLACEHOLDER
    frame.flags.writeable = False
    return frame


# Moving the confidence slider only changes the boxes: the decoded, resized pictures are kept (keyed by
# file modification time too, so an edited file is re-read). Small ones are the gallery's thumbnails.
@lru_cache(maxsize=128)
def _decode_small(path: str, mtime: int, w: int, h: int, side: int) -> np.ndarray:
    return _decode(path, w, h, side)


@lru_cache(maxsize=8)
def _decode_large(path: str, mtime: int, w: int, h: int, side: int) -> np.ndarray:
    return _decode(path, w, h, side)


def _load(image: ReviewImage, long_side: int) -> tuple[np.ndarray, float, float]:
    """A writable copy of the picture with longer side ``long_side``, and the box scale factors (x, y)."""
    path = str(image.path)
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = -1
    base_w, base_h = max(image.width, 1), max(image.height, 1)
    if image.width <= 0 or image.height <= 0:  # size unknown: take the file's
        try:
            with PILImage.open(path) as im:
                base_w, base_h = im.size
        except (OSError, ValueError, SyntaxError):
            pass
    decode = _decode_small if long_side <= 320 else _decode_large
    frame = decode(path, mtime, base_w, base_h, long_side).copy()
    return frame, frame.shape[1] / base_w, frame.shape[0] / base_h


# --------------------------------------------------------------------------- drawing


def _segment(arr: np.ndarray, fixed: slice, a: int, b: int, along_x: bool, color: Color, dash: int) -> None:
    """Paint ``[a, b)`` along one axis over the rows/columns ``fixed``; every other ``dash`` pixels when dashed."""
    if a >= b:
        return
    if dash:
        idx = np.arange(a, b)
        idx = idx[((idx - a) // dash) % 2 == 0]
        if along_x:
            arr[fixed, idx] = color
        else:
            arr[idx, fixed] = color
    elif along_x:
        arr[fixed, a:b] = color
    else:
        arr[a:b, fixed] = color


def _rect(arr: np.ndarray, box: np.ndarray, color: Color, width: int, dash: int = 0) -> bool:
    """Outline ``box`` (x0, y0, x1, y1 in frame pixels) inside its edges, clipped to the frame.

    Returns False when nothing of the box is inside the frame (so its label is skipped too)."""
    h, w = arr.shape[:2]
    x0, y0, x1, y1 = np.nan_to_num(np.asarray(box, np.float64), nan=-1.0, posinf=1e9, neginf=-1e9)
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
        return False
    x0, y0 = int(round(max(x0, 0))), int(round(max(y0, 0)))
    x1, y1 = int(round(min(x1, w - 1))), int(round(min(y1, h - 1)))
    t = max(1, min(width, (x1 - x0 + 2) // 2, (y1 - y0 + 2) // 2))
    _segment(arr, slice(y0, y0 + t), x0, x1 + 1, True, color, dash)  # top
    _segment(arr, slice(y1 - t + 1, y1 + 1), x0, x1 + 1, True, color, dash)  # bottom
    _segment(arr, slice(x0, x0 + t), y0, y1 + 1, False, color, dash)  # left
    _segment(arr, slice(x1 - t + 1, x1 + 1), y0, y1 + 1, False, color, dash)  # right
    return True


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _text_size(text: str, font) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(right - min(left, 0)), int(bottom - min(top, 0))


def _ink(color: Color) -> Color:
    """Black or white text, whichever reads better on ``color``."""
    r, g, b = color
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def _label(
    draw: ImageDraw.ImageDraw,
    frame_size: tuple[int, int],
    box: np.ndarray,
    text: str,
    color: Color,
    font,
    taken: list[tuple[int, int, int, int]],
) -> None:
    """A filled tag with ``text`` at the box's top-left corner: above it, else inside, else below it,
    whichever first does not cover a tag already drawn (``taken``, updated) — a duplicate prediction sits
    exactly on its true positive and both labels must stay readable."""
    w, h = frame_size
    tw, th = _text_size(text, font)
    pad = 2
    lw, lh = tw + 2 * pad, th + 2 * pad
    x0 = int(np.clip(np.nan_to_num(min(box[0], box[2])), 0, max(0, w - lw)))
    top = int(np.clip(np.nan_to_num(min(box[1], box[3])), 0, h - 1))
    bottom = int(np.clip(np.nan_to_num(max(box[1], box[3])), 0, h - 1))
    candidates = [top - lh, top, bottom + 1, bottom - lh + 1]
    candidates = [y for y in candidates if 0 <= y <= h - lh] or [max(0, min(top, h - lh))]
    y0 = next(
        (y for y in candidates if not any(_overlap((x0, y, x0 + lw, y + lh), r) for r in taken)),
        candidates[0],
    )
    taken.append((x0, y0, x0 + lw, y0 + lh))
    draw.rectangle([x0, y0, x0 + lw - 1, y0 + lh - 1], fill=color)
    draw.text((x0 + pad, y0 + pad), text, fill=_ink(color), font=font)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _class_name(class_names: list[str], index: int) -> str:
    return class_names[index] if 0 <= index < len(class_names) else f"#{index}"


def _check(
    image: ReviewImage, pred_kind: np.ndarray, gt_matched: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    pred_kind = np.asarray(pred_kind, np.int64).reshape(-1)
    gt_matched = np.asarray(gt_matched, bool).reshape(-1)
    if len(pred_kind) != len(image.preds):
        raise ValueError(f"pred_kind has {len(pred_kind)} entries for {len(image.preds)} predictions")
    if len(gt_matched) != len(image.gt):
        raise ValueError(f"gt_matched has {len(gt_matched)} entries for {len(image.gt)} ground-truth boxes")
    return pred_kind, gt_matched


def _outlined(frame: np.ndarray, box: np.ndarray, color: Color, width: int, dash: int = 0) -> bool:
    """:func:`_rect` on a dark halo one pixel wider on each side, so lines read on busy photos."""
    if not _rect(frame, box + np.array([-1, -1, 1, 1]), HALO, width + 2, dash):
        return False
    _rect(frame, box, color, width, dash)
    return True


def _gt_order(gt_matched: np.ndarray) -> np.ndarray:
    """Matched boxes first, so the missed ones (the point of the page) are painted on top."""
    return np.argsort(~gt_matched, kind="stable")


def _pred_order(pred_kind: np.ndarray) -> np.ndarray:
    """Kept predictions, true positives first and errors on top."""
    keep = np.flatnonzero(pred_kind != HIDDEN)
    return keep[np.argsort(pred_kind[keep] != TP, kind="stable")]


def _scaled(xyxy: np.ndarray, sx: float, sy: float) -> np.ndarray:
    return np.asarray(xyxy, np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])


# --------------------------------------------------------------------------- panels


def _gt_panel(
    image: ReviewImage, gt_matched: np.ndarray, class_names: list[str], long_side: int
) -> np.ndarray:
    frame, sx, sy = _load(image, long_side)
    width = max(3, round(long_side / 200))
    boxes = _scaled(image.gt.xyxy, sx, sy)
    labels = []
    for i in _gt_order(gt_matched):
        color = GT_MATCHED_COLOR if gt_matched[i] else GT_MISSED_COLOR
        if _outlined(frame, boxes[i], color, width if gt_matched[i] else width + 2):
            text = _class_name(class_names, int(image.gt.labels[i])) + ("" if gt_matched[i] else " · missed")
            labels.append((boxes[i], text, color))
    pil = PILImage.fromarray(frame)
    _draw_labels(pil, labels, long_side)
    return np.asarray(pil)


def _pred_panel(
    image: ReviewImage, pred_kind: np.ndarray, class_names: list[str], long_side: int
) -> np.ndarray:
    frame, sx, sy = _load(image, long_side)
    width = max(3, round(long_side / 200))
    boxes = _scaled(image.preds.xyxy, sx, sy)
    scores = image.preds.scores
    labels = []
    for i in _pred_order(pred_kind):
        color = OUTCOME_COLORS.get(int(pred_kind[i]), UNKNOWN_COLOR)
        if _outlined(frame, boxes[i], color, width, dash=4 * width):
            text = _class_name(class_names, int(image.preds.labels[i]))
            if scores is not None:
                text += f" {scores[i]:.2f}"
            labels.append((boxes[i], text, color))
    pil = PILImage.fromarray(frame)
    _draw_labels(pil, labels, long_side)
    return np.asarray(pil)


def _draw_labels(pil: PILImage.Image, labels: list, long_side: int) -> None:
    if not labels:
        return
    draw, font, taken = ImageDraw.Draw(pil), _font(_font_size(long_side)), []
    for box, text, color in labels:
        _label(draw, pil.size, box, text, color, font, taken)


def _font_size(long_side: int) -> int:
    return int(np.clip(round(long_side / 45), 10, 16))


def _header(text: str, width: int, font) -> np.ndarray:
    _, th = _text_size(text, font)
    strip = PILImage.new("RGB", (width, th + 8), BACKGROUND)
    ImageDraw.Draw(strip).text((2, 4), text, fill=TEXT, font=font)
    return np.asarray(strip)


def _legend(width: int, font) -> np.ndarray:
    """Swatches explaining the colours and line styles, wrapped to ``width``."""
    items = [("GT matched", GT_MATCHED_COLOR, 0), ("GT missed (FN)", GT_MISSED_COLOR, 0)]
    items += [
        (f"pred {OUTCOME_NAMES[k]}", OUTCOME_COLORS[k], 1)
        for k in (TP, FP_CLASS, FP_DUPLICATE, FP_BACKGROUND)
    ]
    _, th = _text_size("Ag", font)
    sw, row_h = 22, th + 10
    placed, x, y = [], 4, 0
    for text, color, dashed in items:
        item_w = sw + 4 + _text_size(text, font)[0] + 14
        if x > 4 and x + item_w > width:
            x, y = 4, y + row_h
        placed.append((x, y, text, color, dashed))
        x += item_w
    strip = np.empty((y + row_h, width, 3), np.uint8)
    strip[:] = BACKGROUND
    for x, y, _, color, dashed in placed:
        _rect(strip, np.array([x, y + 4, x + sw, y + row_h - 5]), color, 2, dash=4 if dashed else 0)
    pil = PILImage.fromarray(strip)
    draw = ImageDraw.Draw(pil)
    for x, y, text, _, _ in placed:
        draw.text((x + sw + 4, y + 5), text, fill=TEXT, font=font)
    return np.asarray(pil)


def _pad_to(block: np.ndarray, width: int) -> np.ndarray:
    if block.shape[1] >= width:
        return block[:, :width]
    out = np.empty((block.shape[0], width, 3), np.uint8)
    out[:] = BACKGROUND
    out[:, : block.shape[1]] = block
    return out


def _stack_rows(blocks: list[np.ndarray]) -> np.ndarray:
    height = max(b.shape[0] for b in blocks)
    out = []
    for b in blocks:
        pad = np.empty((height - b.shape[0], b.shape[1], 3), np.uint8)
        pad[:] = BACKGROUND
        out.append(np.concatenate([b, pad]) if len(pad) else b)
    return np.concatenate(out, axis=1)


# --------------------------------------------------------------------------- public


def render_side_by_side(
    image: ReviewImage,
    pred_kind: np.ndarray,
    gt_matched: np.ndarray,
    class_names: list[str],
    max_side: int = 640,
) -> np.ndarray:
    """Ground truth (left) and kept predictions (right) of one image as one RGB ``uint8`` picture.

    Ground-truth boxes are solid: green when a prediction found them, red and thicker when missed.
    Predictions are dashed and coloured by outcome (:data:`OUTCOME_COLORS`), labelled "class 0.87";
    ``HIDDEN`` ones are not drawn. Each panel's longer side is ``max_side`` (small images are enlarged
    to half of it so labels stay legible); a legend strip sits below the panels.
    """
    pred_kind, gt_matched = _check(image, pred_kind, gt_matched)
    long_side = int(np.clip(max(image.width, image.height), max(1, max_side // 2), max(1, max_side)))
    left = _gt_panel(image, gt_matched, class_names, long_side)
    right = _pred_panel(image, pred_kind, class_names, long_side)
    font = _font(_font_size(long_side))
    n_missed, n_kept = int((~gt_matched).sum()), int((pred_kind != HIDDEN).sum())
    n_err = int(((pred_kind != HIDDEN) & (pred_kind != TP)).sum())
    titles = (
        f"Ground truth · {len(gt_matched)} boxes · {n_missed} missed",
        f"Predictions · {n_kept} shown · {n_err} wrong",
    )
    col_w = max(left.shape[1], *(_text_size(t, font)[0] + 6 for t in titles))
    cols = []
    for panel, title in zip((left, right), titles, strict=True):
        cols.append(np.concatenate([_header(title, col_w, font), _pad_to(panel, col_w)]))
    gap = np.empty((cols[0].shape[0], GAP, 3), np.uint8)
    gap[:] = BACKGROUND
    body = _stack_rows([cols[0], gap, cols[1]])
    return np.ascontiguousarray(np.concatenate([body, _legend(body.shape[1], font)]))


def thumbnail(
    image: ReviewImage, pred_kind: np.ndarray, gt_matched: np.ndarray, class_names: list[str], size: int = 256
) -> np.ndarray:
    """One overlay panel for the worst-first gallery (longer side ``size``), RGB ``uint8``.

    Ground truth thin and solid (missed boxes red and thicker), predictions dashed by outcome; no text,
    which would be unreadable at this size (``class_names`` is accepted for a uniform call signature).
    """
    del class_names
    pred_kind, gt_matched = _check(image, pred_kind, gt_matched)
    frame, sx, sy = _load(image, max(1, size))
    gt, preds = _scaled(image.gt.xyxy, sx, sy), _scaled(image.preds.xyxy, sx, sy)
    for i in _gt_order(gt_matched):
        _rect(frame, gt[i], GT_MATCHED_COLOR if gt_matched[i] else GT_MISSED_COLOR, 1 if gt_matched[i] else 2)
    for i in _pred_order(pred_kind):
        _rect(frame, preds[i], OUTCOME_COLORS.get(int(pred_kind[i]), UNKNOWN_COLOR), 2, dash=5)
    return frame


def caption(result_counts: dict) -> str:
    """Short gallery caption, e.g. ``"img 12 · 2 FP · 1 FN · F1 0.67"``.

    Reads ``name`` (or ``image_id``), ``tp``, ``fp`` (or the sum of ``fp_class``, ``fp_duplicate``,
    ``fp_background``), ``fn`` and ``f1`` (computed from the counts when absent); also accepts an object
    with those attributes. F1 is left out when the image has neither boxes nor predictions.
    """
    get = (
        result_counts.get
        if isinstance(result_counts, dict)
        else lambda k, d=None: getattr(result_counts, k, d)
    )
    name = get("name") or (f"img {get('image_id')}" if get("image_id") is not None else "img")
    tp, fn = int(get("tp", 0) or 0), int(get("fn", 0) or 0)
    fp = get("fp")
    fp = (
        int(fp)
        if fp is not None
        else sum(int(get(k, 0) or 0) for k in ("fp_class", "fp_duplicate", "fp_background"))
    )
    parts = [str(name)]
    if fp:
        parts.append(f"{fp} FP")
    if fn:
        parts.append(f"{fn} FN")
    if not fp and not fn:
        parts.append("all correct" if tp else "no boxes")
    f1 = get("f1")
    if f1 is None and tp + fp + fn:
        f1 = 2 * tp / (2 * tp + fp + fn)
    if f1 is not None and np.isfinite(f1) and tp + fp + fn:
        parts.append(f"F1 {f1:.2f}")
    return " · ".join(parts)
