"""Browser-test fixtures: the real app started by ``launch.py`` and headless Debian Chromium.

The app runs as a subprocess exactly as a user starts it (``--no-browser``, a free port, a temporary
``--projects-dir``), so the tests exercise the CLI, the demo project, the server and the pages together.
Playwright cannot download browsers here, so it drives the system ``/usr/bin/chromium``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"
EXPECT_TIMEOUT_MS = 30_000  # generous: CI has 2 shared cores; a pass is usually far quicker


@dataclass
class StudioServer:
    url: str
    projects_dir: Path
    log_path: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_200(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"launch.py exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"no HTTP 200 from {url} within {timeout} s:\n{log_path.read_text()}")


@contextmanager
def launch_studio(work: Path, *args: str, **env_extra: str) -> Iterator[StudioServer]:
    """``launch.py --no-browser`` on a free port with ``work/projects`` (plus *args*), as a user starts it;
    stopped (SIGTERM, a clean exit) afterwards."""
    projects = work / "projects"
    port = _free_port()
    log_path = work / "server.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", **env_extra)
    env.pop("STUDIO_USERNAME", None)
    env.pop("STUDIO_PASSWORD", None)
    cmd = [sys.executable, str(REPO / "launch.py"), "--no-browser", "--port", str(port), "--projects-dir",
           str(projects), *args]  # fmt: skip
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for_200(url, proc, log_path)
        yield StudioServer(url, projects, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
