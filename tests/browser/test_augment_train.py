"""Augment and Train pages in headless Chromium on the demo project, with a real (tiny) training run.

The Train tests start their own app with ``$STUDIO_RUN_OVERRIDES`` (a tiny network; the UI has no
such knob) so the run reaches its first validation in seconds rather than minutes on a CPU, an empty
weights cache and a weights mirror on a closed port (so "official pretrained" is refused as offline,
the same on every machine). They run in file order on one server: refused start, run, hostile run.
"""

from __future__ import annotations

import json
import math
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import StudioServer, launch_studio
from tests.support.studio_run_fixtures import XSS_GLOBAL, write_hostile_checkpoint

pytestmark = pytest.mark.browser
TINY_ARCH = dict(
    vit_encoder_num_layers=2,
    out_feature_indexes=[1, 2],
    num_queries=20,
    group_detr=2,
    dec_layers=2,
    dim_feedforward=256,
    hidden_dim=128,
)
TRAIN_TIMEOUT_MS = 600_000  # a first epoch on 2 shared CPU cores


def _fill(page: Page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(text)
    box.press("Tab")


def _grid_sources(page: Page) -> list[str]:
    return page.locator("#augment-grid img").evaluate_all("els => els.map(e => e.src)")


def test_augment_grid_changes_on_reroll(page: Page) -> None:
    page.get_by_role("tab", name="Augment").click()
    expect(page.locator("#augment-grid img")).to_have_count(12, timeout=60_000)
    expect(page.locator("#augment-hflip input[type=number]")).to_have_value("0.5")  # the trainer's default
    before = _grid_sources(page)
    seed_before = page.locator("#augment-seed input").input_value()
    page.locator("#augment-reroll").click()
    expect(page.locator("#augment-seed input")).not_to_have_value(seed_before)
    expect(page.locator("#augment-grid img")).to_have_count(12)
    page.wait_for_function(
        "before => { const s = [...document.querySelectorAll('#augment-grid img')].map(e => e.src);"
        " return s.length === before.length && s.some((x, i) => x !== before[i]); }",
        arg=before,
    )
    page.locator("#augment-save").click()
    expect(page.locator("#augment-message")).to_contain_text("Saved")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once the socket is closed


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    overrides = {"model_overrides": TINY_ARCH, "num_workers": 0}
    work = tmp_path_factory.mktemp("studio-train")
    with launch_studio(
        work,
        STUDIO_RUN_OVERRIDES=json.dumps(overrides),
        RF_HOME=str(work / "empty-weights-cache"),
        RFDETR_WEIGHTS_MIRROR=f"http://127.0.0.1:{_closed_port()}",
    ) as srv:
        yield srv


@pytest.fixture()
def train_page(browser, tiny_server: StudioServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(tiny_server.url)
        page.get_by_role("tab", name="Train").click()
        yield page
    finally:
        context.close()


def _no_error_badges(page: Page) -> None:
    """No component of the Train tab shows Gradio's red "Error" status (what an exception leaves)."""
    expect(page.locator("#tab-train [data-testid=status-tracker] .error")).to_have_count(0)


def test_a_refused_start_says_why_in_the_message_and_breaks_nothing(train_page: Page) -> None:
    page = train_page
    expect(page.locator("#train-defaults-why")).to_contain_text("training images")
    page.locator("#train-start").click()
    message = page.locator("#train-message")
    expect(message).to_contain_text("Cannot download the official pretrained weights")
    expect(message).to_contain_text("offline")
    _no_error_badges(page)
    expect(page.locator("#train-progress")).to_contain_text("No run yet")
    page.wait_for_timeout(1000)  # a late error would arrive with the same event; give it the chance
    _no_error_badges(page)
    expect(message).to_contain_text("offline")  # still there: not a toast that vanishes


def _lr_axis(page: Page) -> dict:
    return page.locator("#train-lr-plot .js-plotly-plot").evaluate(
        "el => ({type: el._fullLayout.yaxis.type, range: el._fullLayout.yaxis.range,"
        " y: [].concat(...el.data.map(t => Array.from(t.y || [])))})"
    )


def test_train_tiny_run_live_plot_stop_and_table(train_page: Page) -> None:
    page = train_page
    expect(page.locator("#train-defaults-why")).to_contain_text("training images")
    expect(page.locator("#train-model-size")).to_contain_text("30.5 M parameters")
    page.locator("#train-advanced").get_by_text("Advanced settings").click()
    # many epochs: the Stop click, not the end of training, must finish the run (no race on a fast machine)
    for elem_id, value in (("train-epochs", "300"), ("train-batch", "8"), ("train-resolution", "64")):
        _fill(page, elem_id, value)
    page.locator("#train-pretrained").get_by_text("From scratch").click()
    page.locator("#train-start").click()
    expect(page.locator("#train-message")).to_contain_text("Started run #1")
    expect(page.locator("#train-progress")).to_contain_text("running", timeout=120_000)
    # the first validation point appears on the mAP plot without any click (gr.Timer polling)
    expect(page.locator("#train-metrics-plot g.points path").first).to_be_attached(timeout=TRAIN_TIMEOUT_MS)
    page.locator("#train-stop").click()
    expect(page.locator("#train-message")).to_contain_text("Stop requested")
    expect(page.locator("#train-progress .train-status")).to_have_text("stopped", timeout=TRAIN_TIMEOUT_MS)
    row = page.locator("#train-runs-table tr", has_text="stopped")
    expect(row).to_contain_text("Nano")
    # the Run picker follows the status (it read "#1 Nano · queued" until a reload)
    expect(page.locator("#train-run-select input")).to_have_value(re.compile(r"#1 Nano · stopped"))
    # the learning rate on a log axis fitted to it (not a flat line on -1...1)
    axis = _lr_axis(page)
    rates = [y for y in axis["y"] if y > 0]
    assert axis["type"] == "log" and rates, axis
    low, high = axis["range"]
    assert low < math.log10(min(rates)) <= math.log10(max(rates)) < high and high - low < 4, axis
    # the log box shows our own lines, the full log is a download
    log_text = page.locator("#train-log textarea").input_value()
    assert "epoch 1/300 done" in log_text and "run 1 stopped" in log_text, log_text
    assert "eval mode" not in log_text and "Tip" not in log_text, log_text
    expect(page.locator("#train-log-file a").first).to_have_attribute("href", re.compile(r"train\.log$"))
    _no_error_badges(page)
    page.reload()  # the run and its curves survive a reload
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-runs-table")).to_contain_text("stopped")
    expect(page.locator("#train-metrics-plot g.points path").first).to_be_attached()


def test_a_hostile_checkpoints_error_is_shown_as_text_and_runs_no_script(
    train_page: Page, tmp_path: Path
) -> None:
    page = train_page
    weights = write_hostile_checkpoint(tmp_path / "weights.pth")
    page.locator("#train-advanced").get_by_text("Advanced settings").click()
    page.locator("#train-pretrained").get_by_text("Local .pth file").click()
    _fill(page, "train-weights-path", str(weights))
    page.locator("#train-start").click()
    expect(page.locator("#train-message")).to_contain_text("Started run #2")
    expect(page.locator("#train-progress .train-status")).to_have_text("failed", timeout=TRAIN_TIMEOUT_MS)
    error = page.locator("#train-progress .train-error")
    expect(error).to_contain_text(XSS_GLOBAL)  # visible as the text it is
    expect(error).to_contain_text("Refusing to unpickle")
    assert page.locator("#tab-train img[src=x]").count() == 0
    assert page.evaluate("() => window.__xss") is None
