"""The studio's Gradio Blocks: a header with the open project and one tab per page.

Adding a page is one line: append its module to :data:`PAGES` (it must expose ``TITLE``, ``TAB_ID``
and ``build(ctx) -> PageHooks``, see :mod:`studio.pages`).

The open project is per browser tab (``gr.State``) and remembered in the browser's localStorage
(``gr.BrowserState``), so a reload or an app restart reopens the same project. Whenever it changes,
every page refreshes; selecting a tab refreshes that page, so counts are never stale.

Files: the Label editor shows project images in place (no copy per image), so each project's
``images/`` folder is a Gradio static path — that folder only, never the projects folder itself, whose
``project.db``, runs and exports must not be reachable by URL (:mod:`studio.security` refuses them too).
"""

from __future__ import annotations

import logging
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
_SERVED_IMAGE_FOLDERS: set[Path] = set()  # Gradio's static paths are process-wide, and so is this


def launch_kwargs() -> dict[str, Any]:
    """Arguments for ``Blocks.launch`` that belong to the look (Gradio 6 takes theme/css at launch)."""
    kwargs: dict[str, Any] = {"theme": gr.themes.Soft(primary_hue="indigo"), "show_error": False}
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


def build_app(root: Path) -> gr.Blocks:
    root = Path(root)
    with gr.Blocks(title="RF-DETR Studio", analytics_enabled=False, fill_width=True) as app:
        project = gr.State(None)
        remembered = gr.BrowserState(None, storage_key=BROWSER_KEY, secret="rfdetr-studio")
        header = gr.Markdown(_header_text(root, None), elem_id="current-project")
        label_goto = gr.State(None)
        with gr.Tabs(elem_id="studio-tabs") as tabs:
            ctx = PageContext(root, project, tabs, header, lambda slug: _header_text(root, slug), label_goto)
            hooks: list[tuple[gr.Tab, PageHooks]] = []
            for page in PAGES:
                with gr.Tab(page.TITLE, id=page.TAB_ID, elem_id=page.TAB_ID) as tab:
                    hooks.append((tab, page.build(ctx)))

        _unserve_projects_folder(root)
        for info in list_projects(root):
            serve_project_images(root, info.slug)
        for tab, hook in hooks:
            tab.select(guarded(hook.refresh), [project, *hook.select_inputs], hook.outputs)

        def on_project(slug: str | None):
            serve_project_images(root, slug)  # before the pages refresh: the editor may show an image
            values: list[Any] = [_header_text(root, slug), slug]
            for _, hook in hooks:
                try:
                    out = hook.refresh(slug)
                except Exception:
                    logging.getLogger(__name__).exception("refreshing a page for project %r failed", slug)
                    out = [gr.skip()] * len(hook.outputs)
                values.extend(out if isinstance(out, tuple | list) else [out])
            return values

        all_outputs = [header, remembered] + [c for _, h in hooks for c in h.outputs]
        project.change(guarded(on_project), [project], all_outputs)
        app.load(lambda r: _initial_project(root, r), [remembered], [project])
    return app
