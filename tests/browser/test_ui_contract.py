"""docs/ui.md is a contract: one flow driven with only the selectors that page writes down.

Why: an outside script (a user's own automation, the walk-through of issue 19) relies on the document,
not on our tests' helpers. Every selector below is quoted from docs/ui.md: tab buttons
``#<tab id>-button``, a dropdown opened by ``#<id> input`` with options ``ul.option-list li[role=option]``,
buttons by their id, text by the wrapper id.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def _pick(page: Page, elem_id: str, text: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.locator("ul.option-list li[role=option]", has_text=text).first.click()


def test_open_demo_and_filter_the_gallery_with_documented_selectors(page: Page) -> None:
    page.locator("#tab-projects-button").click()
    _pick(page, "projects-select", "(demo-shapes)")
    page.locator("#projects-open").click()
    expect(page.locator("#current-project")).to_contain_text("Demo shapes")

    page.locator("#tab-data-button").click()
    info = page.locator("#data-page-info")
    expect(info).to_contain_text(re.compile(r"of \d+"))
    total = int(re.findall(r"of (\d+)", info.inner_text())[-1])
    _pick(page, "data-filter-split", "valid")
    expect(info).not_to_contain_text(f"of {total}")
    valid = int(re.findall(r"of (\d+)", info.inner_text())[-1])
    assert 0 < valid < total
    expect(page.locator("#data-gallery img").first).to_be_visible()
