"""Starting the real app for browser tests: ``launch.py`` as a subprocess on a free port, exactly as a user
starts it (``--no-browser``, a temporary ``--projects-dir``), and the system Chromium that drives it
(Playwright cannot download browsers here)."""

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
    cmd = [
        sys.executable,
        str(REPO / "launch.py"),
        "--no-browser",
        "--port",
        str(port),
        "--projects-dir",
        str(projects),
        *args,
    ]
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
