"""The first page load and project switches (issue 15 §4): only the tab on screen refreshes when a
project opens; every other tab refreshes when it is selected and then shows the new project's data.

The server runs with ``STUDIO_LOG_LEVEL=INFO``, so each page refresh is one log line
(``refresh <tab> (<why>) for project '<slug>'``) that the tests count.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from studio import cli
from studio.services.data import classes
from studio.services.data.importing.importer import import_dataset
from studio.services.projects.catalog import create_project, open_store
from tests.support import datagen
from tests.support.browser import StudioServer, launch_studio

pytestmark = pytest.mark.browser
REFRESH_LINE = re.compile(r"refresh (tab-[a-z]+) \((project|selected)\) for project '([^']*)'")
#: JS: nothing on the page is still running an event (Gradio's status tracker is gone).
IDLE_JS = (
    "() => [...document.querySelectorAll('.progress-text, .eta-bar')].every(e => e.offsetParent === null)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    """The demo project plus "Gadgets": 4 loose images and one class, ``gizmo``."""
    work = tmp_path_factory.mktemp("first_load")
    root = work / "projects"
    cli.prepare_projects(root)
    info = create_project(root, "Gadgets")
    datagen.loose_images(work / "loose", n=4)
    with open_store(root, info.slug) as store:
        import_dataset(store, work / "loose")
        classes.add_class(store, "gizmo")
    with launch_studio(work, STUDIO_LOG_LEVEL="INFO") as srv:
        yield srv


@pytest.fixture()
def tab(browser, server: StudioServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def _refreshes(server: StudioServer, since: int = 0) -> list[tuple[str, str, str]]:
    """(tab id, why, slug) of every page refresh the server logged after the first ``since``."""
    return REFRESH_LINE.findall(server.log_path.read_text())[since:]


def _settle(page: Page) -> None:
    """Wait until no event runs any more (twice in a row, 0.3 s apart: one event may start another)."""
    for _ in range(2):
        page.wait_for_function(IDLE_JS)
        time.sleep(0.3)


def _open(page: Page, slug: str) -> None:
    page.get_by_role("tab", name="Projects").click()
    page.locator("#projects-select input").first.click()
    page.locator("li[data-testid=dropdown-option]", has_text=f"({slug})").first.click()
    page.locator("#projects-open").click()
    expect(page.locator("#data-import-btn")).to_be_visible()  # opening a project switches to Data


def test_first_load_refreshes_only_the_visible_tab(tab: Page, server: StudioServer) -> None:
    before = len(_refreshes(server))
    tab.goto(server.url)
    expect(tab.locator("#current-project")).to_contain_text("RF-DETR Studio ·")
    expect(tab.locator("#projects-table")).to_contain_text("gadgets")
    _settle(tab)
    refreshed = _refreshes(server, before)
    assert refreshed, "the page on screen was not refreshed"
    assert {t for t, _, _ in refreshed} == {"tab-projects"}, refreshed
    # a tab never selected was not refreshed; selecting it refreshes it (and only it)
    tab.get_by_role("tab", name="Classes").click()
    expect(tab.locator("#classes-table")).to_contain_text("Total boxes")
    _settle(tab)
    assert {t for t, _, _ in _refreshes(server, before)} == {"tab-projects", "tab-classes"}


def test_every_tab_shows_the_project_switched_to(tab: Page, server: StudioServer) -> None:
    tab.goto(server.url)
    expect(tab.locator("#current-project")).to_contain_text("RF-DETR Studio ·")
    _open(tab, "demo-shapes")
    expect(tab.locator("#current-project")).to_contain_text("Demo shapes")
    for name in ("Data", "Classes"):  # both pages have shown the demo once
        tab.get_by_role("tab", name=name).click()
    expect(tab.locator("#classes-warnings")).to_contain_text("'star' is rare")

    _open(tab, "gadgets")
    expect(tab.locator("#current-project")).to_contain_text("Gadgets")
    expect(tab.locator("#data-summary")).to_contain_text("4 images")
    tab.get_by_role("tab", name="Classes").click()
    expect(tab.locator("#classes-table")).to_contain_text("gizmo")
    expect(tab.locator("#classes-table")).not_to_contain_text("circle")

    _open(tab, "demo-shapes")  # back: Classes showed Gadgets last, so it is stale now
    expect(tab.locator("#data-summary")).to_contain_text("60 images")
    tab.get_by_role("tab", name="Classes").click()
    expect(tab.locator("#classes-table")).to_contain_text("circle")
    expect(tab.locator("#classes-table")).not_to_contain_text("gizmo")
    expect(tab.locator("#tab-classes .studio-stale")).to_have_count(0)
