"""Label page: image queue, box editor with version-checked saves and undo, splits, adding images, and
model-assisted labeling (proposals). Every button calls a service function; this module only wires.

Per browser tab, ``cursor`` (gr.State of a :class:`~studio.services.label.saving.LabelCursor`) holds the
image shown, the version the editor is based on, the queue and its filters; ``history`` holds this tab's
undo stacks (see :mod:`studio.services.label.labeling` for why undo is session state). Moving to
another image, changing filters, proposing or accepting first saves what the editor shows, so
navigating never loses an edit; a save refused because another tab saved first shows a message and
the current state instead. The use cases live in :mod:`studio.services.label.session`; each handler
here calls one of them and turns its :class:`~studio.services.label.session.LabelView` into a
``{component: value}`` dict through :class:`View`.

The filter dropdowns listen to ``.input`` (a programmatic update, e.g. *Fix in editor* clearing them,
does not fire it) with ``trigger_mode="always_last"`` (a pick made while the previous one is still
being served is run after it instead of being dropped); a pick that leaves the filters as they are
is a no-op in the service.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import gradio as gr

from studio.pages import PageContext, PageHooks, guarded, open_project
from studio.pages.label_layout import ALL, ORDER_CHOICES, LabelTab, _layout
from studio.services.data.importing.report import ImportAborted
from studio.services.label import editor_format as ed
from studio.services.label import labeling as lab
from studio.services.label import next as nxt
from studio.services.label import proposals as prop
from studio.services.label import session as ses
from studio.services.label import splits as spl
from studio.services.label.saving import LabelCursor
from studio.text import md_text

TITLE = "Label"
TAB_ID = "tab-label"
_CANCEL: dict[str, threading.Event] = {}  # session hash -> cancel flag of its pre-label batch


# -- handlers (each calls one service function) ---------------------------------------------------------


def _editing(slug, cursor, history, editor_value, default_id) -> ses.Editing:
    return ses.Editing(slug, cursor, history, editor_value, default_id)


class Handlers:
    """The tab's event handlers. Inputs arrive positionally (``[project, cursor, history, editor,
    class]`` first, see :func:`_wire`); outputs go out as ``{component: value}`` dicts."""

    def __init__(self, root: Path, tab: LabelTab) -> None:
        self.root, self.tab, self.view = root, tab, tab.view

    def refresh(self, slug: str | None):
        """Cheap: new class / run lists and a token whose change makes :meth:`reload` redraw the editor
        (it needs the tab's state, which the app's refresh hook does not pass)."""
        if not slug:
            return (
                time.time(),
                gr.Dropdown(choices=[("All classes", ALL)], value=ALL),
                gr.Dropdown(choices=[]),
                gr.Dropdown(choices=ORDER_CHOICES, value=nxt.ORDER_FILE),
            )
        with open_project(self.root, slug) as store:
            names = [(c.name, c.id) for c in ed.label_classes(store).by_id.values()]
            runs = prop.list_checkpoints(store)
            orders = ses.order_choices(store)
        return (
            time.time(),
            gr.Dropdown(choices=[("All classes", ALL), *names]),
            gr.Dropdown(choices=runs),
            gr.Dropdown(choices=orders),
        )

    @guarded
    def reload(
        self, slug, cursor, history, editor_v, default_id, split, cls, status, problems, order, target=None
    ):
        if not slug:
            return self.view.show(ses.no_project())
        with open_project(self.root, slug) as store:
            flt = ses.queue_filter(split, cls, status, problems, order)
            return self.view.show(ses.reload(store, cursor, slug, flt, default_id, target))

    @guarded
    def goto(self, slug, cursor, target):
        if not slug or not target:
            return gr.skip()
        with open_project(self.root, slug) as store:
            out = self.view.show(ses.goto(store, cursor, slug, target))
        f = self.tab.filters
        return {**out, f.split: ALL, f.cls: ALL, f.status: ALL, f.problems: False, f.order: nxt.ORDER_FILE}

    @guarded
    def navigate(
        self, slug, cursor, history, editor_v, default_id, split, cls, status, problems, order, step
    ):
        flt = ses.queue_filter(split, cls, status, problems, order)
        with open_project(self.root, slug) as store:
            return self.view.show(
                ses.navigate(store, _editing(slug, cursor, history, editor_v, default_id), flt, step)
            )

    @guarded
    def refilter(
        self, slug, cursor, history, editor_v, default_id, split, cls, status, problems, order, force=False
    ):
        flt = ses.queue_filter(split, cls, status, problems, order)
        with open_project(self.root, slug) as store:
            e = _editing(slug, cursor, history, editor_v, default_id)
            v = ses.refilter(store, e, flt, force=force)
        return gr.skip() if v is None else self.view.show(v)

    @guarded
    def save(self, slug, cursor, history, editor_v, default_id):
        with open_project(self.root, slug) as store:
            return self.view.show(ses.save(store, _editing(slug, cursor, history, editor_v, default_id)))

    @guarded
    def mark_empty(self, slug, cursor, history, editor_v, default_id):
        with open_project(self.root, slug) as store:
            return self.view.show(
                ses.mark_empty(store, _editing(slug, cursor, history, editor_v, default_id))
            )

    @guarded
    def undo(self, slug, cursor, history, default_id):
        with open_project(self.root, slug) as store:
            return self.view.show(ses.undo(store, cursor, history, default_id))

    @guarded
    def create_class(self, slug, cursor, history, editor_v, default_id, name):
        with open_project(self.root, slug) as store:
            v = ses.create_class(store, _editing(slug, cursor, history, editor_v, default_id), name)
        return {**self.view.show(v), self.tab.buttons.new_class: ""}

    @guarded
    def set_split(self, slug, cursor: LabelCursor, split):
        if cursor.image_id is None or split is None:
            return ""
        with open_project(self.root, slug) as store:
            spl.set_split(store, cursor.image_id, split)
        return f"Split set to **{md_text(split)}**."

    @guarded
    def auto_split(self, slug, cursor: LabelCursor, train, valid, test, seed, only):
        ratios = {"train": train or 0, "valid": valid or 0, "test": test or 0}
        with open_project(self.root, slug) as store:
            res = spl.auto_split(
                store, ratios, int(seed or 0), only_unassigned=bool(only), image_id=cursor.image_id
            )
        return res.to_markdown(), gr.Radio(value=res.image_split or lab.UNASSIGNED)

    @guarded
    def propose(self, slug, cursor, history, editor_v, default_id, run_path, path_text, threshold):
        model = ses.ModelChoice(run_path, path_text, float(threshold))
        with open_project(self.root, slug) as store:
            v, text = ses.propose(store, _editing(slug, cursor, history, editor_v, default_id), model)
        return {**self.view.show(v), self.tab.model.message: text}

    @guarded
    def prelabel_all(
        self,
        slug,
        cursor,
        history,
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
        model = ses.ModelChoice(run_path, path_text, float(threshold))
        with open_project(self.root, slug) as store:
            v, text = ses.prelabel_all(
                store,
                _editing(slug, cursor, history, editor_v, default_id),
                model,
                progress=lambda f, m: progress(f, desc=m),
                should_stop=stop.is_set,
            )
        return {**self.view.show(v), self.tab.model.message: text}

    @staticmethod
    def cancel(request: gr.Request):
        _CANCEL.setdefault(request.session_hash or "", threading.Event()).set()
        return "Cancelling after the current image…"

    @guarded
    def review(self, slug, cursor, history, editor_v, default_id, pick_id, accept: bool, one: bool):
        with open_project(self.root, slug) as store:
            e = _editing(slug, cursor, history, editor_v, default_id)
            return self.view.show(ses.review(store, e, pick_id, accept=accept, one=one))

    @guarded
    def add_images(self, slug, files, path_text, progress=gr.Progress()):
        typed = (path_text or "").strip()
        sources = [Path(f) for f in files or []] or ([Path(typed)] if typed else [])
        with open_project(self.root, slug) as store:
            try:
                report = lab.add_images(store, sources, progress=lambda f, m: progress(f, desc=m))
            except ImportAborted as exc:
                gr.Warning(f"Nothing was added: {md_text(exc)}")
                return exc.report.to_markdown() if exc.report else f"**Import aborted:** {md_text(exc)}"
        gr.Info(report.summary())
        return report.to_markdown()


# -- wiring ----------------------------------------------------------------------------------------------


def _wire_editing(ctx: PageContext, t: LabelTab, h: Handlers) -> None:
    """Queue navigation, filters, save / undo / no objects, new class, splits."""
    v, b, f = t.view, t.buttons, t.filters
    state_in = [ctx.project, v.cursor, t.history, v.editor, v.class_radio]
    outputs = v.list()
    b.prev.click(lambda *a: h.navigate(*a, -1), [*state_in, *f.list()], outputs)
    b.next.click(lambda *a: h.navigate(*a, +1), [*state_in, *f.list()], outputs)
    for component in f.list():
        component.input(h.refilter, [*state_in, *f.list()], outputs, trigger_mode="always_last")
    b.save.click(h.save, state_in, outputs)
    b.empty.click(h.mark_empty, state_in, outputs)
    b.undo.click(h.undo, [ctx.project, v.cursor, t.history, v.class_radio], outputs)
    b.new_class_btn.click(h.create_class, [*state_in, b.new_class], [*outputs, b.new_class])
    v.split.input(h.set_split, [ctx.project, v.cursor, v.split], [v.message])
    a = t.auto
    a.run.click(
        h.auto_split,
        [ctx.project, v.cursor, a.train, a.valid, a.test, a.seed, a.only_new],
        [a.result, v.split],
    )


def _wire_model_and_add(ctx: PageContext, t: LabelTab, h: Handlers) -> None:
    """Model-assisted labeling and adding images."""
    v, m, f = t.view, t.model, t.filters
    state_in = [ctx.project, v.cursor, t.history, v.editor, v.class_radio]
    outputs = v.list()
    model_in = [*state_in, m.run, m.path, m.threshold]
    m.propose.click(h.propose, model_in, [*outputs, m.message])
    m.batch.click(h.prelabel_all, model_in, [*outputs, m.message])
    m.cancel.click(h.cancel, None, [m.message])
    for button, accept, one in (
        (m.accept_all, True, False),
        (m.reject_all, False, False),
        (m.accept_one, True, True),
        (m.reject_one, False, True),
    ):
        button.click(lambda *a, _acc=accept, _one=one: h.review(*a, _acc, _one), [*state_in, v.pick], outputs)
    add = t.add
    add.run.click(h.add_images, [ctx.project, add.files, add.path], [add.report]).success(
        lambda *a: h.refilter(*a, force=True), [*state_in, *f.list()], outputs
    ).then(ctx.header_text, [ctx.project], [ctx.header])


def _wire_reload(ctx: PageContext, t: LabelTab, h: Handlers) -> None:
    """Redraw when the app refreshes the tab; open images that Review's *Fix in editor* asks for."""
    v = t.view
    state_in = [ctx.project, v.cursor, t.history, v.editor, v.class_radio]
    goto_in = [ctx.label_goto] if ctx.label_goto is not None else []
    t.token.change(h.reload, [*state_in, *t.filters.list(), *goto_in], v.list())
    if ctx.label_goto is not None:
        ctx.label_goto.change(h.goto, [ctx.project, v.cursor, ctx.label_goto], [*v.list(), *t.filters.list()])


# -- page -------------------------------------------------------------------------------------------------


def build(ctx: PageContext) -> PageHooks:
    tab = _layout()
    handlers = Handlers(ctx.root, tab)
    _wire_editing(ctx, tab, handlers)
    _wire_model_and_add(ctx, tab, handlers)
    _wire_reload(ctx, tab, handlers)
    return PageHooks(
        refresh=handlers.refresh, outputs=[tab.token, tab.filters.cls, tab.model.run, tab.filters.order]
    )
