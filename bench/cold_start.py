"""Cold start of ``launch.py`` to the first HTTP 200, next to a bare Gradio app as the floor.

Each run starts a fresh Python process and polls ``GET /`` every 50 ms; the time is from ``Popen`` to
the first 200. Variants:

- ``studio first start``: empty projects folder, so the demo dataset is generated and imported;
- ``studio later start``: the folder already holds the demo project;
- ``bare gradio``: ``import gradio`` + a one-Markdown ``Blocks`` + ``launch`` — what any Gradio app pays.

Usage: ``.venv/bin/python bench/cold_start.py [--runs 5]``. Prints medians and the ratio to bare gradio.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BARE = (
    "import sys, gradio as gr\n"
    "with gr.Blocks() as app:\n"
    "    gr.Markdown('hello')\n"
    "app.launch(server_port=int(sys.argv[1]), quiet=True)\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_200(cmd: list[str], port: int, timeout: float = 120.0) -> float:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
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


def studio_cmd(port: int, projects: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "launch.py"),
        "--no-browser",
        "--port",
        str(port),
        "--projects-dir",
        str(projects),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    bare = work / "bare.py"
    bare.write_text(BARE)
    results: dict[str, list[float]] = {"bare gradio": [], "studio first start": [], "studio later start": []}
    try:
        for i in range(args.runs):  # interleaved so machine load affects every variant alike
            port = free_port()
            results["bare gradio"].append(time_to_200([sys.executable, str(bare), str(port)], port))
            fresh = work / f"fresh{i}"
            port = free_port()
            results["studio first start"].append(time_to_200(studio_cmd(port, fresh), port))
            port = free_port()
            results["studio later start"].append(time_to_200(studio_cmd(port, fresh), port))
            shutil.rmtree(fresh, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(results["bare gradio"])
    print(f"cold start to first HTTP 200, {args.runs} runs each (seconds)")
    print(f"{'variant':<22}{'median':>8}{'min':>8}{'max':>8}{'vs bare':>9}")
    for name, times in results.items():
        med = statistics.median(times)
        print(f"{name:<22}{med:8.2f}{min(times):8.2f}{max(times):8.2f}{med / base:8.2f}x")


if __name__ == "__main__":
    main()
