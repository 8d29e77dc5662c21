"""Retake the README's screenshots from the real app: ``.venv/bin/python docs/screenshots.py``.

Starts ``launch.py`` on a temporary projects folder (the demo project is created on first start), opens
it in Debian's Chromium and writes ``docs/screenshot.png`` (the Data tab: all eight tabs visible in the
tab bar) and ``docs/classes.png`` (the Classes tab with its chart). Run it after a visible change.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, launch_studio  # noqa: E402

SHOTS = {"Data": "screenshot.png", "Classes": "classes.png"}


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory() as work, launch_studio(Path(work)) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server.url)
        expect(page.locator("#current-project")).to_contain_text("images", timeout=60_000)
        for tab, name in SHOTS.items():
            page.get_by_role("tab", name=tab).click()
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(1500)  # let plotly and the gallery finish drawing
            page.screenshot(path=str(REPO / "docs" / name))
            print("wrote", REPO / "docs" / name)
        browser.close()


if __name__ == "__main__":
    main()
