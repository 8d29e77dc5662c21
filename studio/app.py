"""The studio's Gradio Blocks: a header with the open project and one tab per page.

Adding a page is one line: append its module to :data:`PAGES` (it must expose ``TITLE``, ``TAB_ID``
and ``build(ctx) -> PageHooks``, see :mod:`studio.pages`).

The open project is per browser tab (``gr.State``) and remembered in the browser's localStorage
(``gr.BrowserState``), so a reload or an app restart reopens the same project.

Refreshing (issue 15 §4): a project change refreshes only the tab on screen; every other page is
hidden (:data:`STALE_CLASS`) until it is selected, and selecting a tab refreshes it, so counts are
never stale and a page never shows another project's data, not even for the moment its refresh takes.
Refreshing all eight pages on every project change cost 1.75 s of server work at 100k images and a
first page that stayed "processing" for seconds on a busy machine. The project change and the tab
selections share one queue (:data:`REFRESH_QUEUE`), so their answers arrive in the order they were
asked: opening a project (which also switches to Data) can never hide Data again after it refreshed.
Which tab is on screen and which project each page shows is kept per browser tab (:class:`PagesShown`).

Files: the Label editor shows project images in place (no copy per image), so each project's
``images/`` folder is a Gradio static path — that folder only, never the projects folder itself, whose
``project.db``, runs and exports must not be reachable by URL (:mod:`studio.security` refuses them too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from studio.pages import (
    PageContext,
    PageHooks,
    augment,
    classes,
    data,
    export,
    guarded,
    label,
    projects,
    review,
    train,
)
from studio.services.projects.catalog import header_markdown, list_projects
from studio.store.db import IMAGES_DIR

PAGES = [projects, data, classes, label, augment, train, review, export]
CSS_PATH = Path(__file__).resolve().parents[1] / "assets" / "studio.css"
BROWSER_KEY = "rfdetr-studio-project"
STALE_CLASS = "studio-stale"  # a page that still shows the previous project: hidden until refreshed
STALE_CSS = f".{STALE_CLASS} {{ visibility: hidden; }}"
REFRESH_QUEUE = "studio-page-refresh"
_SERVED_IMAGE_FOLDERS: set[Path] = set()  # Gradio's static paths are process-wide, and so is this
log = logging.getLogger(__name__)


def launch_kwargs() -> dict[str, Any]:
    """Arguments for ``Blocks.launch`` that belong to the look (Gradio 6 takes theme/css at launch)."""
    kwargs: dict[str, Any] = {
        "theme": gr.themes.Soft(primary_hue="indigo"),
        "show_error": False,
        "css": STALE_CSS,
    }
    if CSS_PATH.is_file():
        kwargs["css_paths"] = [CSS_PATH]
    return kwargs


def _header_text(root: Path, slug: str | None) -> str:
    return header_markdown(root, slug)


def _initial_project(root: Path, remembered: str | None) -> str | None:
    """The project to open on page load: the one this browser had open, else the first one."""
    slugs = [p.slug for p in list_projects(root)]
    if remembered in slugs:
        return remembered
    return slugs[0] if slugs else None


def serve_project_images(root: Path, slug: str | None) -> None:
    """Let Gradio serve ``<root>/<slug>/images`` in place (idempotent; new projects get it when opened)."""
    if not slug:
        return
    folder = (Path(root) / slug / IMAGES_DIR).resolve()
    if folder not in _SERVED_IMAGE_FOLDERS:
        _SERVED_IMAGE_FOLDERS.add(folder)
        gr.set_static_paths([folder])


def _unserve_projects_folder(root: Path) -> None:
    """Withdraw the projects folder itself from Gradio's static paths (a page registering it would make
    every export a static file served by URL instead of a download copied into Gradio's cache)."""
    from gradio.data_classes import _StaticFiles

    whole = Path(root).resolve()
    _StaticFiles.all_paths[:] = [p for p in _StaticFiles.all_paths if Path(p) != whole]


@dataclass(frozen=True)
class PagesShown:
    """Which project each page last showed, per browser tab (a page never refreshed shows none)."""

    by_tab: tuple[tuple[str, str | None], ...] = ()

    def of(self, tab_id: str) -> str | None:
        return dict(self.by_tab).get(tab_id)

    def with_page(self, tab_id: str, slug: str | None) -> PagesShown:
        return PagesShown(tuple({**dict(self.by_tab), tab_id: slug}.items()))


@dataclass
class Page:
    """One tab of the app: its id, its hooks and the column around its content (hidden while stale)."""

    tab_id: str
    tab: gr.Tab
    body: gr.Column
    hooks: PageHooks

    @property
    def outputs(self) -> list[gr.components.Component]:
        return [self.body, *self.hooks.outputs]

    def refresh(self, slug: str | None, *extra: Any, why: str) -> list[Any]:
        """The page's values for ``slug``, shown; on an unexpected error the page is left as it was."""
        log.info("refresh %s (%s) for project %r", self.tab_id, why, slug)
        try:
            out = self.hooks.refresh(slug, *extra)
        except Exception:
            log.exception("refreshing %s for project %r failed", self.tab_id, slug)
            return [gr.Column(elem_classes=[])] + [gr.skip()] * len(self.hooks.outputs)
        return [gr.Column(elem_classes=[]), *(out if isinstance(out, tuple | list) else [out])]

    def stale(self) -> list[Any]:
        """Hide the page (it shows another project) without computing anything."""
        return [gr.Column(elem_classes=[STALE_CLASS])] + [gr.skip()] * len(self.hooks.outputs)

    def unchanged(self) -> list[Any]:
        return [gr.skip()] * len(self.outputs)


def _build_pages(ctx: PageContext) -> list[Page]:
    pages = []
    for module in PAGES:
        with gr.Tab(module.TITLE, id=module.TAB_ID, elem_id=module.TAB_ID) as tab:
            with gr.Column(elem_classes=[]) as body:
                hooks = module.build(ctx)
        pages.append(Page(module.TAB_ID, tab, body, hooks))
    return pages


def _on_select(page: Page) -> Callable[..., list[Any]]:
    """Selecting ``page``: remember it is on screen and refresh it (it may be stale, or show counts
    another page changed since); a page that shows no project and has none to show is left alone."""

    def on_select(slug: str | None, shown: PagesShown, *extra: Any) -> list[Any]:
        if slug is None and shown.of(page.tab_id) is None:
            return [page.tab_id, shown, *page.unchanged()]
        values = page.refresh(slug, *extra, why="selected")
        return [page.tab_id, shown.with_page(page.tab_id, slug), *values]

    return on_select


def _on_project(root: Path, pages: list[Page]) -> Callable[..., list[Any]]:
    """A project change: the header, the remembered slug, the page on screen refreshed, the others hidden
    until they are selected."""

    def on_project(slug: str | None, active: str) -> list[Any]:
        serve_project_images(root, slug)  # before the page refreshes: the editor may show an image
        shown = PagesShown()
        values: list[Any] = []
        for page in pages:
            if page.tab_id == active:
                values.extend(page.refresh(slug, why="project"))
                shown = shown.with_page(page.tab_id, slug)
            else:
                values.extend(page.stale())
        return [_header_text(root, slug), slug, shown, *values]

    return on_project


def build_app(root: Path) -> gr.Blocks:
    root = Path(root)
    with gr.Blocks(title="RF-DETR Studio", analytics_enabled=False, fill_width=True) as app:
        project = gr.State(None)
        remembered = gr.BrowserState(None, storage_key=BROWSER_KEY, secret="rfdetr-studio")
        active = gr.State(PAGES[0].TAB_ID)
        shown = gr.State(PagesShown())
        header = gr.Markdown(_header_text(root, None), elem_id="current-project")
        label_goto = gr.State(None)
        with gr.Tabs(elem_id="studio-tabs") as tabs:
            ctx = PageContext(root, project, tabs, header, lambda slug: _header_text(root, slug), label_goto)
            pages = _build_pages(ctx)

        _unserve_projects_folder(root)
        for info in list_projects(root):
            serve_project_images(root, info.slug)
        queue = {"concurrency_id": REFRESH_QUEUE, "concurrency_limit": 1}
        for page in pages:
            page.tab.select(
                guarded(_on_select(page)),
                [project, shown, *page.hooks.select_inputs],
                [active, shown, *page.outputs],
                **queue,
            )
        all_outputs = [header, remembered, shown] + [c for page in pages for c in page.outputs]
        project.change(guarded(_on_project(root, pages)), [project, active], all_outputs, **queue)
        app.load(lambda r: _initial_project(root, r), [remembered], [project])
    return app
