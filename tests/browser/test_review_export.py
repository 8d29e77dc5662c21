"""Review and Export pages in headless Chromium, on a project with a finished tiny run.

The app is started by ``launch.py`` on a projects folder holding a copy of the session's finished-run
project (trained once, see ``tests/conftest.py``), so Review has a real checkpoint to run and Export a
real model to convert.
"""

from __future__ import annotations

import re
import shutil
import urllib.request
import zipfile
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import ARTIFACTS, StudioServer, launch_studio

pytestmark = pytest.mark.browser
SLOW_MS = 240_000  # model runs on 2 shared CPU cores


@pytest.fixture(scope="module")
def run_server(tmp_path_factory: pytest.TempPathFactory, finished_run_template) -> Iterator[StudioServer]:
    project, _ = finished_run_template
    work = tmp_path_factory.mktemp("studio-review")
    shutil.copytree(project, work / "projects" / "shapes-run")
    with launch_studio(work, "--no-demo") as server:
        yield server


@pytest.fixture()
def run_page(browser, run_server: StudioServer, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(run_server.url)
    expect(page.locator("#current-project")).to_contain_text("tiny")
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def _count(page: Page, name: str) -> int:
    return int(page.locator(f"#review-counts .review-count[data-name='{name}'] b").inner_text())


def _counts(page: Page) -> tuple[int, ...]:
    return tuple(_count(page, n) for n in ("TP", "Wrong class", "Duplicate", "Background", "Missed"))


def _set_confidence(page: Page, value: float) -> None:
    box = page.locator("#review-conf input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_review_slider_matrix_filter_and_fix_in_editor(run_page: Page) -> None:
    page = run_page
    page.get_by_role("tab", name="Review").click()
    expect(page.locator("#review-status")).to_contain_text("Compute predictions")
    page.locator("#review-compute").click()
    expect(page.locator("#review-status")).to_contain_text("training reported", timeout=SLOW_MS)
    # the review's mAP is the run's own validation mAP (same checkpoint, same split)
    status = page.locator("#review-status").inner_text()
    ours = re.search(r"mAP@50:95 ([0-9.]+)", status).group(1)
    reported = re.search(r"training reported ([0-9.]+)", status).group(1)
    assert ours == reported, status

    _set_confidence(page, 0.9)
    expect(page.locator("#review-counts .review-counts[data-conf='0.9']")).to_be_attached()
    high = _counts(page)
    _set_confidence(page, 0.05)
    expect(page.locator("#review-counts .review-counts[data-conf='0.05']")).to_be_attached()
    low = _counts(page)
    assert sum(low[:4]) > sum(high[:4]), (high, low)  # more predictions kept at a lower confidence

    # a click on a confusion-matrix cell filters the gallery
    page.locator("#review-filter-kind input").click()
    page.get_by_role("option", name="All images").click()
    expect(page.locator("#review-counts .review-counts[data-view='all||']")).to_be_attached()
    expect(page.locator("#review-gallery img").first).to_be_visible()
    all_images = page.locator("#review-gallery img").count()
    plot = page.locator("#review-confusion .nsewdrag").first
    plot.scroll_into_view_if_needed()  # a mouse click lands only inside the viewport
    box = plot.bounding_box()
    n = len(page.locator("#review-confusion .ytick").all())  # classes + background
    # the top-right cell: boxes of the first class the model missed (ground truth → background)
    x, y = box["x"] + box["width"] * (n - 0.5) / n, box["y"] + box["height"] * 0.5 / n
    page.mouse.move(x - 5, y - 5)
    page.mouse.move(x, y, steps=5)  # plotly reports a click on the point it last hovered
    expect(page.locator("#review-confusion .hoverlayer .hovertext")).to_be_attached()
    page.mouse.click(x, y)
    expect(page.locator("#review-filter-cell")).to_contain_text("→ predicted background")
    matching = int(re.search(r"(\d+) image", page.locator("#review-filter-cell").inner_text()).group(1))
    assert matching < all_images  # not every valid image has a missed box of that class
    expect(page.locator("#review-gallery img")).to_have_count(matching)
    page.locator("#review-clear-cell").click()
    expect(page.locator("#review-filter-cell")).not_to_contain_text("Matrix filter")

    # Fix in editor opens the selected image on the Label page
    page.locator("#review-gallery img").first.click()
    expect(page.locator("#review-detail img")).to_be_visible()
    # wait for the clicked image's own detail (the one drawn before may still be showing)
    first = page.locator("#review-gallery .caption-label").first.inner_text().split(" · ")[0]
    expect(page.locator("#review-detail-info")).to_contain_text(f"{first} · image #")
    info = page.locator("#review-detail-info").inner_text()
    image_id = re.search(r"image #(\d+)", info).group(1)
    page.locator("#review-fix").click()
    expect(page.locator("#label-editor")).to_be_visible()
    expect(page.locator("#label-message")).to_contain_text("Opened from Review")
    expect(page.locator("#label-image-info")).to_contain_text(f"image #{image_id}")
    # back on Review, the page is redrawn from the current labels at the user's thresholds
    drawn = page.locator("#review-counts .review-counts").get_attribute("data-drawn")
    page.get_by_role("tab", name="Review").click()
    expect(page.locator("#review-counts .review-counts")).not_to_have_attribute("data-drawn", drawn)
    expect(page.locator("#review-counts .review-counts")).to_have_attribute("data-conf", "0.05")
    assert _counts(page) == low


def test_export_onnx_and_download_zip(run_page: Page, tmp_path) -> None:
    page = run_page
    page.get_by_role("tab", name="Export").click()
    expect(page.locator("#export-run input")).not_to_have_value("")
    page.locator("#export-format").get_by_text("ONNX").click()
    page.locator("#export-start").click()
    expect(page.locator("#export-result")).to_contain_text("Verified", timeout=SLOW_MS)
    expect(page.locator("#export-result")).to_contain_text("mAP@50:95")
    expect(page.locator("#export-history")).to_contain_text("onnx")
    with page.expect_download() as info:
        page.locator("#export-file a").first.click()
    target = tmp_path / "export.zip"
    info.value.save_as(target)
    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
    assert any(n.endswith(".onnx") for n in names), names
    assert any(n.endswith("class_names.txt") for n in names), names
    assert any(n.endswith(".json") for n in names), names


def test_open_in_fiftyone_shows_a_working_link(run_page: Page) -> None:
    """The real FiftyOne (its own mongod) gets the run's predictions; its mAP is the review's."""
    page = run_page
    page.get_by_role("tab", name="Review").click()
    status = page.locator("#review-status")
    expect(status).to_contain_text(re.compile("No predictions|Predictions of run"))
    if "No predictions" in status.inner_text():  # this test may run alone
        page.locator("#review-compute").click()
    expect(status).to_contain_text("training reported", timeout=SLOW_MS)
    page.locator("#review-fiftyone-panel").get_by_text("Open in FiftyOne").click()
    page.locator("#review-fiftyone").click()
    link = page.locator("#review-fiftyone-link")
    expect(link).to_contain_text("Open the FiftyOne App", timeout=SLOW_MS)
    fo_map, review_map = re.search(r"mAP ([0-9.]+) \(Review: ([0-9.]+)\)", link.inner_text()).groups()
    assert fo_map == review_map
    href = link.locator("a").first.get_attribute("href")
    assert href.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(href, timeout=60) as resp:
        assert resp.status == 200
