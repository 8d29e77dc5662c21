"""Label page: image queue, box editor with version-checked saves and undo, splits, adding images, and
model-assisted labeling (proposals). Every button calls a service function; this module only wires.

Per browser tab, ``cur`` (gr.State) holds the image shown, the version the editor is based on and the
queue; ``history`` holds this tab's undo stacks (see :mod:`studio.services.label.labeling` for why undo is
session state). Moving to another image, changing filters, proposing or accepting first saves what
the editor shows, so navigating never loses an edit; a save refused because another tab saved first
shows a message and the current state instead.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr
from gradio_image_annotation import image_annotator

from studio.errors import StudioError
from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.services.data.classes import add_class
from studio.services.data.importing.report import ImportAborted
from studio.services.label import editor_format as ed
from studio.services.label import labeling as lab
from studio.services.label import proposals as prop
from studio.services.label import splits as spl

TITLE = "Label"
TAB_ID = "tab-label"
ALL = "all"
SPLIT_FILTER = [
    ("All splits", ALL),
    ("train", "train"),
    ("valid", "valid"),
    ("test", "test"),
    ("unassigned", lab.UNASSIGNED),
]
STATUS_FILTER = [
    ("Any status", ALL),
    ("unlabeled", "unlabeled"),
    ("labeled", "labeled"),
    ("reviewed", "reviewed"),
]
SPLIT_CHOICES = ["train", "valid", "test", lab.UNASSIGNED]
EDITOR_HEIGHT = 560
_CANCEL: dict[str, threading.Event] = {}  # session hash -> cancel flag of its pre-label batch

SHORTCUTS_HTML = """
<div class="label-shortcuts"><b>Keys</b> (outside text boxes):
<kbd>→</kbd>/<kbd>N</kbd> next · <kbd>←</kbd>/<kbd>P</kbd> previous · <kbd>S</kbd> save · <kbd>Z</kbd> undo ·
<kbd>X</kbd> no objects · <kbd>1</kbd>–<kbd>9</kbd> class for new boxes · on the image: <kbd>C</kbd> draw,
<kbd>D</kbd> move/resize, <kbd>Delete</kbd> delete the selected box; double-click a box in move mode (or select
it and press <kbd>E</kbd>) to change its class. The editor's own ↺ / ↻ undo unsaved edits; <kbd>Z</kbd> undoes saves.
Magenta boxes labelled <code>? class score #id</code> are model proposals: move or re-class one to accept it,
delete it to reject it.</div>
"""
SHORTCUTS_JS = """
if (!window.__studioLabelKeys) {
  window.__studioLabelKeys = true;
  const click = (sel) => { const el = document.querySelector(sel); if (el && el.offsetParent !== null) el.click(); };
  document.addEventListener('keydown', (ev) => {
    const tab = document.querySelector('#label-editor');
    if (!tab || tab.offsetParent === null) return;           // only while the Label tab is shown
    const t = ev.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)) return;
    if (ev.altKey || ev.metaKey) return;
    const k = ev.key.toLowerCase();
    let handled = true;
    if (ev.ctrlKey) {
      if (k === 's') click('#label-save'); else if (k === 'z') click('#label-undo'); else handled = false;
    } else if (k === 'arrowright' || k === 'n') click('#label-next');
    else if (k === 'arrowleft' || k === 'p') click('#label-prev');
    else if (k === 's') click('#label-save');
    else if (k === 'z') click('#label-undo');
    else if (k === 'x') click('#label-no-objects');
    else if (/^[1-9]$/.test(k)) {
      const radios = document.querySelectorAll('#label-class input[type=radio]');
      const r = radios[parseInt(k) - 1]; if (r) r.click(); else handled = false;
    } else handled = false;
    if (handled) { ev.preventDefault(); ev.stopPropagation(); }
  }, true);
  // Leaving the Label tab saves the image first: the save is dispatched while the editor is still
  // shown, so it carries the boxes on screen (a hidden editor cannot be read reliably afterwards).
  document.addEventListener('pointerdown', (ev) => {
    const tab = ev.target && ev.target.closest && ev.target.closest('#studio-tabs button[role=tab]');
    if (!tab || tab.getAttribute('aria-selected') === 'true') return;
    click('#label-save');
  }, true);
}
"""


# -- view helpers (values for the outputs, no event logic) ----------------------------------------------


def _class_props(classes: ed.LabelClasses) -> dict[str, Any]:
    labels, colors = ed.editor_classes(classes)
    return {"label_list": labels, "label_colors": colors}


def _default_class(classes: ed.LabelClasses, default_id: int | None) -> int | None:
    ids = [c.id for c in classes.offered]
    return default_id if default_id in ids else (ids[0] if ids else None)


def _class_radio(classes: ed.LabelClasses, default_id: int | None) -> gr.Radio:
    choices = [(f"{i + 1} · {c.name}" if i < 9 else c.name, c.id) for i, c in enumerate(classes.offered)]
    return gr.Radio(choices=choices, value=default_id)


def _info(state: lab.ImageState) -> str:
    lines = [
        f"**{state.original_name}** · image #{state.image_id} · {state.width}×{state.height} · "
        f"status **{state.status}** · {len(state.boxes)} box(es) · version {state.version}"
    ]
    if state.proposals:
        lines.append(f"{len(state.proposals)} proposal(s) to review (magenta).")
    lines += [f"⚠️ {p}" for p in state.problems]
    return "\n\n".join(lines)


def _view(store, cur: dict, state: lab.ImageState | None, message: str, default_id: int | None) -> list[Any]:
    """Values for VIEW outputs: editor, position, info, split, proposal picker, message, cur, class radio."""
    classes = ed.label_classes(store)
    default_id = _default_class(classes, default_id)
    radio = _class_radio(classes, default_id)
    props = _class_props(classes)
    if state is None:
        cur = {**cur, "image_id": None, "version": None, "shown": []}
        return [
            gr.update(value=None, **props),
            lab.position_text(cur.get("queue", []), None),
            "No images match. Add images below or change the filters.",
            gr.Radio(value=None),
            gr.Dropdown(choices=[], value=None),
            message,
            cur,
            radio,
        ]
    value = ed.editor_value(state, classes)
    cur = {**cur, "image_id": state.image_id, "version": state.version, "shown": value["boxes"]}
    picks = [
        (ed.proposal_label(classes.by_id[p.category_id].name, p.score, p.id), p.id) for p in state.proposals
    ]
    return [
        gr.update(value=value, **props),
        lab.position_text(cur.get("queue", []), state.image_id),
        _info(state),
        gr.Radio(value=state.split or lab.UNASSIGNED),
        gr.Dropdown(choices=picks, value=picks[0][1] if picks else None),
        message,
        cur,
        radio,
    ]


def _pending(cur: dict, target: dict | None) -> bool:
    """Whether another page's request to open an image (``label_goto``) has not been shown yet: the tab's
    own reload and the request's handler can arrive in either order."""
    return bool(target) and cur.get("goto_at") != target.get("at")


def _filters(split: str, class_id: Any, status: str, problems: bool) -> dict[str, Any]:
    return {
        "split": None if split in (None, ALL) else split,
        "category_id": None if class_id in (None, ALL) else int(class_id),
        "status": None if status in (None, ALL) else status,
        "has_problems": bool(problems),
    }


def _flush(
    store,
    slug: str,
    cur: dict,
    history: lab.UndoHistory,
    editor: dict | None,
    default_id: int | None,
    *,
    no_objects: bool = False,
) -> tuple[lab.ImageState | None, str, bool]:
    """Save what the editor shows for the current image. Returns (state, message, conflict).

    Nothing is saved when the editor shows no image (not drawn yet), still shows an image of another
    project (the project was just switched: image ids are per project), or hands back exactly what it
    was given (no edit: a tab that is merely behind another one moves on without a conflict).
    """
    image_id, version = cur.get("image_id"), cur.get("version")
    if image_id is None or cur.get("slug") != slug or not editor or editor.get("image") is None:
        return None, "", False
    if not no_objects and ed.unchanged(cur.get("shown"), editor.get("boxes")):
        return None, "", False
    try:
        loaded = lab.load_image(store, image_id)
    except StudioError:
        return None, "The image was deleted.", False
    classes = ed.label_classes(store)
    parsed = ed.from_editor((editor or {}).get("boxes"), loaded, classes, default_id)
    note = ""
    if parsed.unknown_labels:
        note = " Skipped boxes with unknown class: " + ", ".join(sorted(set(parsed.unknown_labels))) + "."
    try:
        res = lab.save_image(
            store,
            image_id,
            parsed.boxes,
            version,
            no_objects=no_objects,
            keep_proposals=parsed.keep_proposals,
        )
    except lab.VersionConflict as exc:
        return exc.current, f"⛔ {exc}", True
    history.push(image_id, res.before)
    return res.state, (res.summary if res.changed else "") + note, False


# -- page -------------------------------------------------------------------------------------------------


def build(ctx: PageContext) -> PageHooks:
    root = ctx.root
    gr.set_static_paths([root])  # the editor shows project images in place (no copy per image)
    cur = gr.State({"image_id": None, "version": None, "queue": [], "slug": None})
    token = gr.State(0.0)
    history = gr.State(lab.UndoHistory())
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280):
            f_split = gr.Dropdown(SPLIT_FILTER, value=ALL, label="Split", elem_id="label-filter-split")
            f_class = gr.Dropdown(
                [("All classes", ALL)], value=ALL, label="Class", elem_id="label-filter-class"
            )
            f_status = gr.Dropdown(STATUS_FILTER, value=ALL, label="Status", elem_id="label-filter-status")
            f_problems = gr.Checkbox(
                label="Only images with import problems", elem_id="label-filter-problems"
            )
            position = gr.Markdown("0 / 0", elem_id="label-position")
            with gr.Row():
                prev_btn = gr.Button("◀ Previous", elem_id="label-prev")
                next_btn = gr.Button("Next ▶", elem_id="label-next")
            info = gr.Markdown(elem_id="label-image-info")
            split_radio = gr.Radio(SPLIT_CHOICES, label="Split of this image", elem_id="label-split")
            with gr.Accordion("Automatic stratified split", open=False, elem_id="label-auto-split"):
                with gr.Row():
                    r_train = gr.Number(70, label="train %", minimum=0, elem_id="label-auto-train")
                    r_valid = gr.Number(20, label="valid %", minimum=0, elem_id="label-auto-valid")
                    r_test = gr.Number(10, label="test %", minimum=0, elem_id="label-auto-test")
                seed = gr.Number(0, label="Seed", precision=0, elem_id="label-auto-seed")
                only_new = gr.Checkbox(
                    label="Only images without a split", elem_id="label-auto-only-unassigned"
                )
                auto_btn = gr.Button("Split all images by class", elem_id="label-auto-split-btn")
                auto_md = gr.Markdown(elem_id="label-auto-split-result")
        with gr.Column(scale=3):
            with gr.Row(elem_classes="toolbar"):
                class_radio = gr.Radio(
                    [], label="Class for new boxes (given on save)", elem_id="label-class", scale=4
                )
                new_class = gr.Textbox(
                    label="New class", placeholder="name", elem_id="label-new-class", scale=1
                )
                new_class_btn = gr.Button("Add class", elem_id="label-new-class-btn", scale=0, min_width=110)
            editor = image_annotator(
                None,
                label_list=[ed.NEW_BOX_LABEL],
                label_colors=[ed.NEW_BOX_COLOR],
                sources=[],
                show_clear_button=False,
                show_remove_button=True,
                show_download_button=False,
                use_default_label=True,
                height=EDITOR_HEIGHT,
                box_min_size=4,
                image_type="filepath",
                show_label=False,
                elem_id="label-editor",
            )
            with gr.Row():
                save_btn = gr.Button("Save (S)", variant="primary", elem_id="label-save")
                undo_btn = gr.Button("Undo (Z)", elem_id="label-undo")
                empty_btn = gr.Button("No objects (X)", elem_id="label-no-objects")
            message = gr.Markdown(elem_id="label-message")
            gr.HTML(SHORTCUTS_HTML, js_on_load=SHORTCUTS_JS, elem_id="label-shortcuts")
    with gr.Accordion("Model-assisted labeling", open=False, elem_id="label-model"):
        with gr.Row(elem_classes="toolbar"):
            run_dd = gr.Dropdown([], label="Trained run", elem_id="label-model-run", scale=2)
            ckpt_path = gr.Textbox(label="…or a checkpoint file (.pth)", elem_id="label-model-path", scale=2)
            thresh = gr.Slider(
                0.0, 1.0, value=0.5, step=0.01, label="Confidence", elem_id="label-model-threshold"
            )
        with gr.Row():
            propose_btn = gr.Button("Propose boxes for this image", elem_id="label-propose")
            batch_btn = gr.Button("Pre-label all unlabeled images", elem_id="label-prelabel-all")
            cancel_btn = gr.Button("Cancel pre-labeling", variant="stop", elem_id="label-prelabel-cancel")
        model_md = gr.Markdown(elem_id="label-model-message")
        with gr.Row(elem_classes="toolbar"):
            accept_all = gr.Button("Accept all proposals", variant="primary", elem_id="label-accept-all")
            reject_all = gr.Button("Reject all proposals", elem_id="label-reject-all")
            pick = gr.Dropdown([], label="Proposal", elem_id="label-proposal-pick")
            accept_one = gr.Button("Accept this one", elem_id="label-accept-one")
            reject_one = gr.Button("Reject this one", elem_id="label-reject-one")
    with gr.Accordion("Add images", open=False, elem_id="label-add"):
        with gr.Row(elem_classes="toolbar"):
            add_files = gr.File(
                label="Images or a .zip",
                file_count="multiple",
                type="filepath",
                file_types=["image", ".zip"],
                height=110,
                elem_id="label-add-files",
            )
            add_path = gr.Textbox(label="…or a folder / .zip on this machine", elem_id="label-add-path")
            add_btn = gr.Button(
                "Add to project", variant="primary", elem_id="label-add-btn", scale=0, min_width=150
            )
        add_md = gr.Markdown(elem_id="label-add-report")

    view = [editor, position, info, split_radio, pick, message, cur, class_radio]
    filters = [f_split, f_class, f_status, f_problems]

    def _open(store, slug, cur_, flt: dict, target: int | None, msg: str, default_id) -> list[Any]:
        ids = lab.queue(store, **flt)
        cur_ = {**cur_, "queue": ids, "slug": slug}
        image_id = target if target in ids else (ids[0] if ids else None)
        state = lab.load_image(store, image_id) if image_id is not None else None
        return _view(store, cur_, state, msg, default_id)

    def refresh(slug: str | None):
        """Cheap: new class / run lists and a token whose change makes :func:`reload` redraw the editor
        (it needs the tab's state, which the app's refresh hook does not pass)."""
        if not slug:
            return (
                time.time(),
                gr.Dropdown(choices=[("All classes", ALL)], value=ALL),
                gr.Dropdown(choices=[]),
            )
        with open_project(root, slug) as store:
            class_filter = [("All classes", ALL)] + [
                (c.name, c.id) for c in ed.label_classes(store).by_id.values()
            ]
            runs = prop.list_checkpoints(store)
        return time.time(), gr.Dropdown(choices=class_filter), gr.Dropdown(choices=runs)

    @guarded
    def reload(slug, cur_, hist, editor_v, default_id, split, cls, status, problems, target=None):
        """Redraw from the store after the tab was selected or the project changed, keeping the image
        that was shown (unless the project changed). Nothing is saved here: while its tab is hidden
        the box editor reports an empty box list, which must never be taken for "all boxes deleted"."""
        if not slug:
            empty = {"image_id": None, "version": None, "queue": [], "slug": None}
            return [
                gr.update(value=None),
                "0 / 0",
                "No project open.",
                gr.Radio(value=None),
                gr.Dropdown(choices=[], value=None),
                "",
                empty,
                gr.Radio(choices=[], value=None),
            ]
        if _pending(cur_, target):  # a Fix-in-editor request this reload may have overtaken
            return goto(slug, cur_, target)[: len(view)]
        with open_project(root, slug) as store:
            same = cur_.get("slug") == slug
            flt = _filters(split, cls, status, problems) if same else _filters(ALL, ALL, ALL, False)
            return _open(store, slug, cur_, flt, cur_.get("image_id") if same else None, "", default_id)

    @guarded
    def goto(slug, cur_, target):
        """Open an image another page asked for (Review's *Fix in editor*), clearing the filters so it is
        in the queue. Unsaved edits of the image shown before are not kept (the hidden editor cannot be
        read reliably, see :func:`reload`)."""
        if not slug or not target:
            return [*[gr.skip()] * len(view), *[gr.skip()] * len(filters)]
        cur_ = {**cur_, "goto_at": target.get("at")}
        with open_project(root, slug) as store:
            msg = "Opened from Review: fix the boxes, save, then go back to Review to re-score."
            out = _open(store, slug, cur_, _filters(ALL, ALL, ALL, False), int(target["image_id"]), msg, None)
        return [*out, ALL, ALL, ALL, False]

    @guarded
    def navigate(slug, cur_, hist, editor_v, default_id, split, cls, status, problems, step):
        with open_project(root, slug) as store:
            state, msg, conflict = _flush(store, slug, cur_, hist, editor_v, default_id)
            if conflict or not cur_.get("queue"):
                if conflict:
                    return _view(store, cur_, state, msg, default_id)
                return _open(store, slug, cur_, _filters(split, cls, status, problems), None, msg, default_id)
            target = lab.neighbour(cur_["queue"], cur_.get("image_id"), step)
            return _view(store, cur_, lab.load_image(store, target), msg, default_id)

    @guarded
    def refilter(slug, cur_, hist, editor_v, default_id, split, cls, status, problems):
        with open_project(root, slug) as store:
            state, msg, conflict = _flush(store, slug, cur_, hist, editor_v, default_id)
            if conflict:
                return _view(store, cur_, state, msg, default_id)
            return _open(store, slug, cur_, _filters(split, cls, status, problems), None, msg, default_id)

    @guarded
    def save(slug, cur_, hist, editor_v, default_id):
        if cur_.get("image_id") is None:
            raise gr.Error("No image to save.")
        with open_project(root, slug) as store:
            state, msg, _ = _flush(store, slug, cur_, hist, editor_v, default_id)
            state = state or lab.load_image(store, cur_["image_id"])
            return _view(store, cur_, state, msg or "Nothing changed.", default_id)

    @guarded
    def mark_empty(slug, cur_, hist, editor_v, default_id):
        """Mark the image as having no objects, then move on (stays put if the save was refused)."""
        if cur_.get("image_id") is None:
            raise gr.Error("No image open.")
        with open_project(root, slug) as store:
            state, msg, conflict = _flush(store, slug, cur_, hist, editor_v, default_id, no_objects=True)
            if conflict or not cur_.get("queue"):
                return _view(store, cur_, state or lab.load_image(store, cur_["image_id"]), msg, default_id)
            target = lab.neighbour(cur_["queue"], cur_["image_id"], +1)
            return _view(
                store,
                cur_,
                lab.load_image(store, target),
                "Marked the previous image: no objects.",
                default_id,
            )

    @guarded
    def do_undo(slug, cur_, hist, default_id):
        if cur_.get("image_id") is None:
            raise gr.Error("No image open.")
        with open_project(root, slug) as store:
            try:
                res = lab.undo(store, hist, cur_["image_id"], cur_["version"])
            except lab.VersionConflict as exc:
                return _view(store, cur_, exc.current, f"⛔ {exc}", default_id)
            return _view(store, cur_, res.state, res.summary, default_id)

    @guarded
    def create_class(slug, cur_, hist, editor_v, default_id, name):
        with open_project(root, slug) as store:
            new_id = add_class(store, name)
            state, msg, _ = _flush(store, slug, cur_, hist, editor_v, default_id)
            state = state or (lab.load_image(store, cur_["image_id"]) if cur_.get("image_id") else None)
            return [*_view(store, cur_, state, f"Added class '{name.strip()}'. {msg}", new_id), ""]

    @guarded
    def set_split(slug, cur_, split):
        if cur_.get("image_id") is None or split is None:
            return ""
        with open_project(root, slug) as store:
            spl.set_split(store, cur_["image_id"], split)
        return f"Split set to **{split}**."

    @guarded
    def auto_split(slug, cur_, train, valid, test, seed_, only):
        with open_project(root, slug) as store:
            res = spl.auto_split(
                store,
                {"train": train or 0, "valid": valid or 0, "test": test or 0},
                int(seed_ or 0),
                only_unassigned=bool(only),
            )
            split = lab.load_image(store, cur_["image_id"]).split if cur_.get("image_id") else None
        return res.to_markdown(), gr.Radio(value=split or lab.UNASSIGNED)

    def _model(store, run_path, path_text):
        path = (path_text or "").strip() or run_path
        if not path:
            raise StudioError("Pick a trained run or type the path of a checkpoint file.")
        predictor, names = prop.cached_checkpoint_predictor(path)
        mapping = prop.map_classes(store, names)
        return predictor, mapping

    @guarded
    def propose_one(slug, cur_, hist, editor_v, default_id, run_path, path_text, threshold):
        if cur_.get("image_id") is None:
            raise gr.Error("No image open.")
        with open_project(root, slug) as store:
            state, msg, conflict = _flush(store, slug, cur_, hist, editor_v, default_id)
            if conflict:
                return [*_view(store, cur_, state, msg, default_id), ""]
            predictor, mapping = _model(store, run_path, path_text)
            base = state.version if state else cur_["version"]
            try:
                state = prop.propose(
                    store, cur_["image_id"], predictor, mapping, float(threshold), base_version=base
                )
            except lab.VersionConflict as exc:
                return [*_view(store, cur_, exc.current, f"⛔ {exc}", default_id), mapping.message]
            note = f"{len(state.proposals)} proposal(s) at confidence ≥ {threshold:.2f}."
            return [*_view(store, cur_, state, note, default_id), mapping.message or "Model classes match."]

    @guarded
    def prelabel_all(
        slug,
        cur_,
        hist,
        editor_v,
        default_id,
        run_path,
        path_text,
        threshold,
        request: gr.Request,
        progress=gr.Progress(),
    ):
        stop = _CANCEL.setdefault(request.session_hash or "", threading.Event())
        stop.clear()
        with open_project(root, slug) as store:
            _flush(store, slug, cur_, hist, editor_v, default_id)
            predictor, mapping = _model(store, run_path, path_text)
            todo = prop.unlabeled_images(store)
            res = prop.prelabel(
                store,
                todo,
                predictor,
                mapping,
                float(threshold),
                progress=lambda f, m: progress(f, desc=m),
                should_stop=stop.is_set,
            )
            state = lab.load_image(store, cur_["image_id"]) if cur_.get("image_id") else None
            text = res.summary() + (" " + mapping.message if mapping.message else "")
            return [*_view(store, cur_, state, res.summary(), default_id), text]

    def cancel(request: gr.Request):
        _CANCEL.setdefault(request.session_hash or "", threading.Event()).set()
        return "Cancelling after the current image…"

    @guarded
    def review(slug, cur_, hist, editor_v, default_id, pick_id, accept: bool, one: bool):
        if cur_.get("image_id") is None:
            raise gr.Error("No image open.")
        if one and pick_id is None:
            raise gr.Error("Pick a proposal first.")
        with open_project(root, slug) as store:
            state, msg, conflict = _flush(store, slug, cur_, hist, editor_v, default_id)
            if conflict:
                return _view(store, cur_, state, msg, default_id)
            base = state.version if state else cur_["version"]
            fn = prop.accept_proposals if accept else prop.reject_proposals
            try:
                state = fn(store, cur_["image_id"], base, [int(pick_id)] if one else None)
            except lab.VersionConflict as exc:
                return _view(store, cur_, exc.current, f"⛔ {exc}", default_id)
            return _view(store, cur_, state, "Accepted." if accept else "Rejected.", default_id)

    @guarded
    def add_images(slug, files, path_text, progress=gr.Progress()):
        sources = [Path(f) for f in files or []] or (
            [Path(path_text.strip())] if (path_text or "").strip() else []
        )
        with open_project(root, slug) as store:
            try:
                report = lab.add_images(store, sources, progress=lambda f, m: progress(f, desc=m))
            except ImportAborted as exc:
                gr.Warning(f"Nothing was added: {exc}")
                return exc.report.to_markdown() if exc.report else f"**Import aborted:** {exc}"
        gr.Info(report.summary())
        return report.to_markdown()

    state_in = [ctx.project, cur, history, editor, class_radio]
    prev_btn.click(lambda *a: navigate(*a, -1), [*state_in, *filters], view)
    next_btn.click(lambda *a: navigate(*a, +1), [*state_in, *filters], view)
    for f in filters:
        f.input(refilter, [*state_in, *filters], view)
    save_btn.click(save, state_in, view)
    empty_btn.click(mark_empty, state_in, view)
    undo_btn.click(do_undo, [ctx.project, cur, history, class_radio], view)
    new_class_btn.click(create_class, [*state_in, new_class], [*view, new_class])
    split_radio.input(set_split, [ctx.project, cur, split_radio], [message])
    auto_btn.click(
        auto_split, [ctx.project, cur, r_train, r_valid, r_test, seed, only_new], [auto_md, split_radio]
    )
    model_in = [*state_in, run_dd, ckpt_path, thresh]
    propose_btn.click(propose_one, model_in, [*view, model_md])
    batch_btn.click(prelabel_all, model_in, [*view, model_md])
    cancel_btn.click(cancel, None, [model_md])
    accept_all.click(lambda *a: review(*a, True, False), [*state_in, pick], view)
    reject_all.click(lambda *a: review(*a, False, False), [*state_in, pick], view)
    accept_one.click(lambda *a: review(*a, True, True), [*state_in, pick], view)
    reject_one.click(lambda *a: review(*a, False, True), [*state_in, pick], view)
    add_btn.click(add_images, [ctx.project, add_files, add_path], [add_md]).success(
        refilter, [*state_in, *filters], view
    ).then(ctx.header_text, [ctx.project], [ctx.header])
    goto_in = [ctx.label_goto] if ctx.label_goto is not None else []
    token.change(reload, [*state_in, *filters, *goto_in], view)
    if ctx.label_goto is not None:
        ctx.label_goto.change(goto, [ctx.project, cur, ctx.label_goto], [*view, *filters])
    return PageHooks(refresh=refresh, outputs=[token, f_class, run_dd])
