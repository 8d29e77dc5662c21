"""Review page in headless Chromium: what the walk-through of issue 19 met, on a finished tiny run whose
images carry the user's own file names (one of them, and one class, spelled like an HTML payload).

The project is a copy of the session's finished run (``tests/conftest.py``), renamed in its SQLite file
before the app starts: images get ``slide_NN.png`` names (the stored files keep their hash names), and
the run's first class becomes :data:`HOSTILE_CLASS` — in the run record and the category alike, as if a
dataset had been imported with that class.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from studio.store import Category, Image, ProjectStore, Run
from tests.support.browser import ARTIFACTS, StudioServer, launch_studio
from tests.support.studio_run_fixtures import XSS_GLOBAL

pytestmark = pytest.mark.browser
SLOW_MS = 240_000  # the model runs on 2 shared CPU cores
HOSTILE_FILE = XSS_GLOBAL + "_*x*_.png"
HOSTILE_CLASS = "<b>" + XSS_GLOBAL + "</b>"


def _rename(project: Path, run_id: int) -> None:
    store = ProjectStore.open(project)
    try:
        with store.session() as s:
            images = list(s.scalars(select(Image).order_by(Image.id)))
            for k, image in enumerate(images):
                image.original_name = f"slide_{k:02d}.png"
            first_valid = next(im for im in images if im.split == "valid")
            first_valid.original_name = HOSTILE_FILE
            run = s.get(Run, run_id)
            old = run.class_names[0]
            run.class_names = [HOSTILE_CLASS, *run.class_names[1:]]
            s.scalars(select(Category).where(Category.name == old)).one().name = HOSTILE_CLASS
    finally:
        store.close()


@pytest.fixture(scope="module")
def review_server(tmp_path_factory: pytest.TempPathFactory, finished_run_template) -> Iterator[StudioServer]:
    project, run_id = finished_run_template
    work = tmp_path_factory.mktemp("studio-review-names")
    shutil.copytree(project, work / "projects" / "shapes-run")
    _rename(work / "projects" / "shapes-run", run_id)
    with launch_studio(work, "--no-demo") as server:
        yield server


@pytest.fixture(scope="module")
def review_page(browser, review_server: StudioServer) -> Iterator[Page]:
    """One page for the module: predictions are computed once, by the first test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(review_server.url)
    expect(page.locator("#current-project")).to_contain_text("tiny")
    page.get_by_role("tab", name="Review").click()
    status = page.locator("#review-status")
    expect(status).to_contain_text("Compute predictions")
    page.locator("#review-compute").click()
    expect(status).to_contain_text("training reported", timeout=SLOW_MS)
    yield page
    context.close()


@pytest.fixture()
def review(review_page: Page, request: pytest.FixtureRequest) -> Iterator[Page]:
    yield review_page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        review_page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)


def _pick(page: Page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def _view(page: Page) -> str:
    return page.locator("#review-counts .review-counts").get_attribute("data-view")


def _show_all(page: Page) -> None:
    if _view(page) != "all||":
        _pick(page, "review-filter-kind", "All images")
        expect(page.locator("#review-counts .review-counts[data-view='all||']")).to_be_attached()


def test_one_filter_pick_sends_one_request(review: Page) -> None:
    """Issue 19 item 2: one mouse pick sent the filter request twice (and a pick made while the
    duplicate was pending sent nothing: the dropdown showed one filter, the gallery another)."""
    page = review
    _show_all(page)
    joins: list[str] = []
    page.on("request", lambda r: joins.append(r.url) if "/queue/join" in r.url else None)
    _pick(page, "review-filter-kind", "Missed (FN)")
    expect(page.locator("#review-counts .review-counts[data-view='fn||']")).to_be_attached()
    assert len(joins) == 1, joins  # one request for one pick (a duplicate is sent with the first)
    _show_all(page)


def test_quick_filter_picks_are_not_lost(review: Page) -> None:
    """Issue 19 item 2: a pick made while an earlier request is pending is drawn after it, and the
    newest pick is what the page shows in the end."""
    page = review
    _show_all(page)
    # a slow network (as on a remote server) keeps each request pending while the next pick is made
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 1500, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    try:
        _pick(page, "review-filter-class", HOSTILE_CLASS)
        for kind in ("Missed (FN)", "No errors", "Background (FP)"):
            _pick(page, "review-filter-kind", kind)
        expect(page.locator("#review-counts .review-counts[data-view='fp_background|0|']")).to_be_attached()
    finally:
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        cdp.detach()
    assert _view(page) == "fp_background|0|"  # no older answer arrived after the newest
    expect(page.locator("#review-filter-kind input")).to_have_value("Background (FP)")
    _pick(page, "review-filter-class", "All classes")
    _show_all(page)


def test_gallery_and_detail_show_the_users_file_names(review: Page) -> None:
    """Issue 19 item 7: "img 49" in the gallery, a content hash in the detail, the real name in Label."""
    page = review
    _show_all(page)
    gallery = page.locator("#review-gallery")
    expect(gallery.locator("img").first).to_be_visible()
    captions = gallery.locator(".caption-label").all_inner_texts()
    assert captions and all(
        re.match(r"slide_\d\d\.png · ", c) or c.startswith(HOSTILE_FILE) for c in captions
    )
    assert any(c.startswith(HOSTILE_FILE + " · ") for c in captions), captions  # shown as typed
    info = page.locator("#review-detail-info")
    expect(info).to_contain_text(re.compile(r"(slide_\d\d\.png|onerror).* · image #\d+ · "))
    assert not re.search(r"[0-9a-f]{16}", info.inner_text())  # no stored (hash) file name
    hostile = captions.index(next(c for c in captions if c.startswith(HOSTILE_FILE)))
    gallery.locator("img").nth(hostile).click()
    expect(info).to_contain_text(HOSTILE_FILE + " · image #")
    assert info.locator("img").count() == 0
    assert page.evaluate("window.__xss") is None


def test_selecting_a_thumbnail_keeps_the_grid(review: Page) -> None:
    """Issue 19 item 8: a click on a thumbnail must not turn the gallery into one enlarged picture; the
    selected image goes to the detail view beside the grid."""
    page = review
    _show_all(page)
    gallery = page.locator("#review-gallery")
    assert gallery.get_by_role("button", name=re.compile("fullscreen", re.I)).count() == 0
    thumbs = gallery.locator("button.thumbnail-item")
    expect(thumbs.first).to_be_visible()
    n = thumbs.count()
    assert n > 1
    captions = gallery.locator(".caption-label").all_inner_texts()
    info = page.locator("#review-detail-info")
    for k in (1, 2, 1):
        thumbs.nth(k).click()
        expect(info).to_contain_text(captions[k].split(" · ")[0] + " · image #")
        expect(thumbs).to_have_count(n)
        assert gallery.locator(".preview").count() == 0  # no enlarged preview inside the gallery
    grid = gallery.bounding_box()
    detail = page.locator("#review-detail").bounding_box()
    assert grid["x"] + grid["width"] <= detail["x"] + 1  # the detail sits beside the grid
    for k in range(min(n, 3)):
        box = thumbs.nth(k).bounding_box()
        assert box["width"] < grid["width"] / 2, box  # still thumbnails, several per row


def test_class_names_are_shown_as_text(review: Page) -> None:
    """Issue 13 item 2 on this page: a class name from the dataset is never markup (matrix filter,
    confusion matrix axes, per-class table)."""
    page = review
    _show_all(page)
    plot = page.locator("#review-confusion .nsewdrag").first
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    n = len(page.locator("#review-confusion .ytick").all())
    x, y = box["x"] + box["width"] * (n - 0.5) / n, box["y"] + box["height"] * 0.5 / n
    page.mouse.move(x - 5, y - 5)
    page.mouse.move(x, y, steps=5)
    expect(page.locator("#review-confusion .hoverlayer .hovertext")).to_contain_text(HOSTILE_CLASS)
    page.mouse.click(x, y)
    cell = page.locator("#review-filter-cell")
    expect(cell).to_contain_text(f"ground truth {HOSTILE_CLASS} → predicted background")
    assert cell.locator("img, b b").count() == 0
    expect(page.locator("#review-confusion .ytick", has_text=HOSTILE_CLASS)).to_have_count(1)
    expect(page.locator("#review-ap-table")).to_contain_text(HOSTILE_CLASS)
    assert page.locator("#review-ap-table img").count() == 0
    assert page.evaluate("window.__xss") is None
    page.locator("#review-clear-cell").click()
    expect(cell).not_to_contain_text("Matrix filter")
