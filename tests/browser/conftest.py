"""Browser-test fixtures: the real app started by ``launch.py`` and headless Debian Chromium.

The app runs as a subprocess exactly as a user starts it, so the tests exercise the CLI, the demo
project, the server and the pages together (see ``tests/support/browser.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    EXPECT_TIMEOUT_MS,
    StudioServer,
    launch_studio,
)


@pytest.fixture(scope="session")
def studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    with launch_studio(tmp_path_factory.mktemp("studio")) as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser, studio_server: StudioServer, request: pytest.FixtureRequest) -> Iterator:
    """A fresh browser context on the studio; a screenshot is kept in test-artifacts/ on failure."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(studio_server.url)
    pg.wait_for_selector("#studio-tabs")
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
