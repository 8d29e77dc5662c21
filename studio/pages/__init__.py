"""Gradio pages of the studio: one module per tab, each only wiring components to service functions.

A page module exposes ``TITLE``, ``TAB_ID`` and ``build(ctx) -> PageHooks``; :mod:`studio.app` lists
the modules in ``PAGES``. ``PageHooks.refresh`` is called with the current project slug whenever the
project changes or the tab is selected, so pages never show stale counts after another page edited
the project.

Every event handler goes through :func:`guarded`: user-facing errors (``StudioError``, store errors,
``ValueError`` from validation) become a readable ``gr.Error`` popup; anything unexpected is logged
with its traceback on the console and shown as a short message — never a traceback in the browser.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from studio.errors import StudioError
from studio.store.db import ProjectStore, StoreError
from studio.text import html_text

log = logging.getLogger("studio.pages")
USER_ERRORS = (StudioError, StoreError, ValueError, FileNotFoundError)


@dataclass
class PageContext:
    """What every page may use: the projects root and the app-wide components it can drive."""

    root: Path
    project: gr.State  # slug of the open project (or None)
    tabs: gr.Tabs
    header: gr.Markdown
    header_text: Callable[[str | None], str]
    # ``{"image_id": id, "at": time}`` set by another page (Review's *Fix in editor*): the Label page
    # opens that image; ``at`` makes every request a change even for the same image.
    label_goto: gr.State | None = None


@dataclass
class PageHooks:
    """How the app refreshes a page: ``refresh(slug) -> values`` for ``outputs`` (same order)."""

    refresh: Callable[..., Any]
    outputs: list[gr.components.Component] = field(default_factory=list)
    # Extra inputs passed to ``refresh`` (after the slug) when the tab is selected, so a page can keep
    # what the user chose (e.g. Review's run and thresholds); a project change calls ``refresh(slug)``.
    select_inputs: list[gr.components.Component] = field(default_factory=list)


def guarded(fn: Callable) -> Callable:
    """Wrap an event handler so no exception reaches the browser as a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as exc:
            # Gradio renders toast messages as HTML; ours quote file- and user-derived text.
            raise gr.Error(html_text(str(exc) or exc.__class__.__name__), print_exception=False) from None
        except Exception as exc:
            log.error("Unexpected error in %s:\n%s", fn.__name__, traceback.format_exc())
            raise gr.Error(
                html_text(
                    f"Something went wrong ({exc.__class__.__name__}: {exc}). Details are in the terminal."
                ),
                title="Unexpected error",
                print_exception=False,
            ) from None

    return wrapper


@contextmanager
def open_project(root: Path, slug: str | None) -> Iterator[ProjectStore]:
    """The open project's store for one handler call (closed afterwards)."""
    from studio.services.projects.catalog import open_store

    if not slug:
        raise StudioError("Open or create a project first (Projects tab).")
    store = open_store(root, slug)
    try:
        yield store
    finally:
        store.close()
