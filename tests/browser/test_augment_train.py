"""Augment and Train pages in headless Chromium on the demo project, with a real (tiny) training run.

The Train test starts its own app with ``$STUDIO_RUN_OVERRIDES`` (a tiny network; the UI has no
such knob) so the run reaches its first validation in seconds rather than minutes on a CPU.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import StudioServer, launch_studio

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


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    overrides = {"model_overrides": TINY_ARCH, "num_workers": 0}
    with launch_studio(
        tmp_path_factory.mktemp("studio-train"), STUDIO_RUN_OVERRIDES=json.dumps(overrides)
    ) as srv:
        yield srv


def test_train_tiny_run_live_plot_stop_and_table(browser, tiny_server: StudioServer) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(tiny_server.url)
        page.get_by_role("tab", name="Train").click()
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
        expect(page.locator("#train-metrics-plot g.points path").first).to_be_attached(
            timeout=TRAIN_TIMEOUT_MS
        )
        page.locator("#train-stop").click()
        expect(page.locator("#train-message")).to_contain_text("Stop requested")
        expect(page.locator("#train-progress .train-status")).to_have_text(
            "stopped", timeout=TRAIN_TIMEOUT_MS
        )
        row = page.locator("#train-runs-table tr", has_text="stopped")
        expect(row).to_contain_text("Nano")
        page.reload()  # the run and its curves survive a reload
        page.get_by_role("tab", name="Train").click()
        expect(page.locator("#train-runs-table")).to_contain_text("stopped")
        expect(page.locator("#train-metrics-plot g.points path").first).to_be_attached()
    finally:
        context.close()
