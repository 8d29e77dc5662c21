"""Cold start of ``launch.py``: to the first HTTP 200, and (``--browser``) to the first page fully drawn.

Each run starts a fresh Python process and polls ``GET /`` every 50 ms; the time is from ``Popen`` to
the first 200. Variants:

- ``studio first start``: empty projects folder, so the demo dataset is generated and imported;
- ``studio later start``: the folder already holds the demo project;
- ``bare gradio``: ``import gradio`` + a one-Markdown ``Blocks`` + ``launch`` — what any Gradio app pays.

``--browser`` (issue 15 §4) also opens each server in headless Chromium (started once, before the
timing) right after its first 200 and measures until the first page is fully drawn: the studio's header
names the open project and no Gradio progress indicator ("processing | 1.2 s") is left on the page for
0.3 s; the bare page is drawn when its Markdown is visible and nothing is pending. That is what a user
waits for after the server answers, and what "refresh only the visible tab" shortens.

Usage: ``.venv/bin/python bench/cold_start.py [--runs 5] [--browser] [--baseline OLD_CHECKOUT]``.
Prints medians and the ratio to bare gradio. ``--baseline`` adds ``baseline later start``: the same
projects folder served by another checkout's ``launch.py`` (e.g. a copy of the tree before a change),
interleaved with the others so a busy machine slows both alike. ``--server-work`` instead times each
page's refresh on the demo project in one process: a project change's server work before (all pages)
and now (the page on screen).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BARE = (
    "import sys, gradio as gr\n"
    "with gr.Blocks() as app:\n"
    "    gr.Markdown('hello', elem_id='bare-hello')\n"
    "app.launch(server_port=int(sys.argv[1]), quiet=True)\n"
)
CHROMIUM = "/usr/bin/chromium"
BUSY_SELECTOR = ".progress-text, .eta-bar, .generating"  # Gradio's status tracker while an event runs
QUIET_S = 0.3  # no progress indicator for this long = the page's events are done
#: JS: true when the page is drawn — ``marker`` matches, its text contains ``text``, nothing is busy.
DRAWN_JS = """([marker, text, busy]) => {
  const m = document.querySelector(marker);
  if (!m || !m.innerText.includes(text)) return false;
  return [...document.querySelectorAll(busy)].every(e => e.offsetParent === null);
}"""

Drawn = Callable[[str], float]  # url -> seconds until drawn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_200(
    cmd: list[str], port: int, timeout: float = 300.0, after: Drawn | None = None
) -> tuple[float, float]:
    """(seconds to the first 200, seconds from it until ``after(url)`` says drawn; 0 without ``after``)."""
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        first = time.perf_counter() - t0
                        return first, (after(url) if after else 0.0)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"no HTTP 200 within {timeout} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def studio_cmd(port: int, projects: Path, repo: Path = REPO) -> list[str]:
    return [
        sys.executable,
        str(repo / "launch.py"),
        "--no-browser",
        "--port",
        str(port),
        "--projects-dir",
        str(projects),
    ]


def browser_timer(browser, marker: str, text: str) -> Drawn:
    """A :data:`Drawn` for ``marker``/``text`` on a fresh page of ``browser`` (Playwright)."""

    def drawn(url: str) -> float:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        t0 = time.perf_counter()
        try:
            page.goto(url)
            quiet_since = None
            while time.perf_counter() - t0 < 120:
                if page.evaluate(DRAWN_JS, [marker, text, BUSY_SELECTOR]):
                    quiet_since = quiet_since or time.perf_counter()
                    if time.perf_counter() - quiet_since >= QUIET_S:
                        return quiet_since - t0
                else:
                    quiet_since = None
                page.wait_for_timeout(25)
            raise RuntimeError(f"{url} was not drawn within 120 s")
        finally:
            context.close()

    return drawn


def measure(runs: int, browser=None, baseline: Path | None = None) -> dict[str, list[tuple[float, float]]]:
    work = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    bare = work / "bare.py"
    bare.write_text(BARE)
    bare_drawn = browser_timer(browser, "#bare-hello", "hello") if browser else None
    studio_drawn = browser_timer(browser, "#current-project", "RF-DETR Studio ·") if browser else None
    results: dict[str, list[tuple[float, float]]] = {
        "bare gradio": [],
        "studio first start": [],
        "studio later start": [],
    }
    try:
        for i in range(runs):  # interleaved so machine load affects every variant alike
            port = free_port()
            results["bare gradio"].append(
                time_to_200([sys.executable, str(bare), str(port)], port, after=bare_drawn)
            )
            fresh = work / f"fresh{i}"
            port = free_port()
            results["studio first start"].append(
                time_to_200(studio_cmd(port, fresh), port, after=studio_drawn)
            )
            port = free_port()
            results["studio later start"].append(
                time_to_200(studio_cmd(port, fresh), port, after=studio_drawn)
            )
            if baseline is not None:  # the same projects folder, served by another checkout's code
                port = free_port()
                cmd = studio_cmd(port, fresh, baseline)
                results.setdefault("baseline later start", []).append(
                    time_to_200(cmd, port, after=studio_drawn)
                )
            shutil.rmtree(fresh, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def report(results: dict[str, list[tuple[float, float]]], runs: int, with_browser: bool) -> None:
    columns = [("first HTTP 200", 0)] + ([("first page drawn after the 200", 1)] if with_browser else [])
    for title, k in columns:
        base = statistics.median(t[k] for t in results["bare gradio"])
        print(f"{title}, {runs} runs each (seconds)")
        print(f"{'variant':<22}{'median':>8}{'min':>8}{'max':>8}{'vs bare':>9}")
        for name, times in results.items():
            values = [t[k] for t in times]
            med = statistics.median(values)
            print(f"{name:<22}{med:8.2f}{min(values):8.2f}{max(values):8.2f}{med / base:8.2f}x")


def server_work(repeats: int) -> None:
    """Server-side seconds of opening the demo project: every page's ``refresh`` timed in one process
    (medians of ``repeats``), i.e. what a project change cost when it refreshed all pages, next to what
    it costs now (the page on screen: Projects on a first load, Data after *Open*)."""
    import gradio as gr

    from studio import cli
    from studio.app import PAGES, _header_text
    from studio.pages import PageContext

    root = Path(tempfile.mkdtemp(prefix="studio-bench-work-"))
    try:
        slug = cli.prepare_projects(root)
        with gr.Blocks():
            project, header = gr.State(None), gr.Markdown()
            with gr.Tabs() as tabs:
                ctx = PageContext(
                    root, project, tabs, header, lambda s: _header_text(root, s), gr.State(None)
                )
                hooks = {}
                for page in PAGES:
                    with gr.Tab(page.TITLE, id=page.TAB_ID):
                        hooks[page.TAB_ID] = page.build(ctx)
        times = {tab: [] for tab in hooks}
        for _ in range(repeats):
            for tab, hook in hooks.items():
                t0 = time.perf_counter()
                hook.refresh(slug)
                times[tab].append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {tab: statistics.median(v) for tab, v in times.items()}
    print(f"server work of one page refresh on the demo project, median of {repeats} (seconds)")
    for tab, t in med.items():
        print(f"{tab:<16}{t:8.3f}")
    print(f"{'all pages':<16}{sum(med.values()):8.3f}  (a project change before)")
    print(
        f"{'visible page':<16}{med['tab-projects']:8.3f}  (first load now) / {med['tab-data']:.3f} (Open now)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--browser", action="store_true", help="also time the first page drawn in Chromium")
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a copy of an older checkout: its launch.py is timed too, interleaved (before/after side by side)",
    )
    ap.add_argument("--server-work", action="store_true", help="time each page's refresh in-process instead")
    args = ap.parse_args()
    if args.server_work:
        server_work(args.runs)
        return
    if not args.browser:
        report(measure(args.runs, baseline=args.baseline), args.runs, False)
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            results = measure(args.runs, browser, args.baseline)
        finally:
            browser.close()
    report(results, args.runs, True)


if __name__ == "__main__":
    main()
