"""``launch.py`` / ``studio.cli``: the login rule, the default bind address, the demo on first start."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from studio import cli

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch.py"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (cli.USERNAME_ENV, cli.PASSWORD_ENV)}
    env.update(GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", **extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "studio.example.org"])
def test_refuses_non_loopback_without_credentials(host: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(LAUNCH), "--host", host, "--no-browser", "--projects-dir", str(tmp_path / "p")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Refusing to listen" in proc.stderr and "STUDIO_USERNAME" in proc.stderr
    assert not (tmp_path / "p").exists()  # refused before touching anything


def test_auth_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli.USERNAME_ENV, raising=False)
    monkeypatch.delenv(cli.PASSWORD_ENV, raising=False)
    for host in ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"]:
        assert cli.resolve_auth(host, None, None) is None
    assert cli.resolve_auth("0.0.0.0", "ann", "s3cret") == ("ann", "s3cret")
    with pytest.raises(cli.AuthRequired):
        cli.resolve_auth("0.0.0.0", "ann", None)  # a username alone is not a login
    with pytest.raises(cli.AuthRequired, match="both"):
        cli.resolve_auth("127.0.0.1", None, "pw")
    monkeypatch.setenv(cli.USERNAME_ENV, "env-user")
    monkeypatch.setenv(cli.PASSWORD_ENV, "env-pw")
    assert cli.resolve_auth("10.0.0.5", None, None) == ("env-user", "env-pw")


def test_defaults() -> None:
    args = cli.build_parser().parse_args([])
    assert (args.host, args.port, args.no_browser) == ("127.0.0.1", 7860, False)
    assert cli.display_url("0.0.0.0", 7860) == "http://127.0.0.1:7860/"
    assert cli.display_url("::1", 80) == "http://[::1]:80/"


def _start(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start launch.py (default host) and return the process and the URL it printed."""
    port = free_port()
    cmd = [
        sys.executable,
        str(LAUNCH),
        "--no-browser",
        "--port",
        str(port),
        "--projects-dir",
        str(tmp_path),
        *extra,
    ]
    proc = subprocess.Popen(
        cmd, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"running at (http://\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise AssertionError("launch.py did not start:\n" + "".join(lines))


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_default_bind_and_demo_on_first_start(tmp_path: Path) -> None:
    from studio.services.projects.catalog import list_projects
    from studio.services.projects.demo import DEMO_NAME

    proc, url = _start(tmp_path)
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200
            assert "RF-DETR Studio" in resp.read().decode()
        # bound to loopback only: the same port on this machine's other addresses refuses
        port = int(url.rsplit(":", 1)[1].strip("/"))
        for addr in _other_local_addresses():
            with pytest.raises(OSError), socket.create_connection((addr, port), timeout=2):
                pass
    finally:
        _stop(proc)
    projects = list_projects(tmp_path)
    assert [p.name for p in projects] == [DEMO_NAME]
    demo = projects[0]
    assert demo.n_images == 60 and demo.n_boxes > 100 and demo.n_classes == 8

    # second start: the demo is not created again, even after the user deleted it
    from studio.services.projects.catalog import delete_project

    delete_project(tmp_path, demo.slug)
    proc, _ = _start(tmp_path)
    _stop(proc)
    assert list_projects(tmp_path) == []


def _other_local_addresses() -> list[str]:
    """Non-loopback IPv4 addresses of this machine (may be none in a sandbox without a network)."""
    found = set()
    try:
        found |= {i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it only picks the outgoing address
            found.add(s.getsockname()[0])
        except OSError:
            pass
    return sorted(a for a in found if not a.startswith("127.") and a != "0.0.0.0")


@pytest.mark.slow
def test_login_is_asked_when_credentials_are_given(tmp_path: Path) -> None:
    env = _env(**{cli.USERNAME_ENV: "ann", cli.PASSWORD_ENV: "s3cret"})
    proc, url = _start(tmp_path, "--no-demo", env=env)
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "config", timeout=30)
        assert err.value.code == 401
        data = b"username=ann&password=s3cret"
        with urllib.request.urlopen(urllib.request.Request(url + "login", data=data), timeout=30) as resp:
            assert resp.status == 200
    finally:
        _stop(proc)


def test_prepare_projects_creates_the_demo_once(tmp_path: Path) -> None:
    """In-process: the demo is a real imported project with a two-level hierarchy and 5 leaves."""
    from studio.services.data import classes
    from studio.services.projects.catalog import list_projects, open_store
    from studio.services.projects.demo import DEMO_MARKER, LEAF_CLASSES

    slug = cli.prepare_projects(tmp_path)
    assert slug and (tmp_path / DEMO_MARKER).is_file()
    assert cli.prepare_projects(tmp_path) is None  # not twice
    with open_store(tmp_path, slug) as store:
        assert sorted(c.name for c in classes.trainable_classes(store)) == sorted(LEAF_CLASSES)
        (root,) = classes.class_tree(store)
        assert [g.name for g in root.children] == ["round", "angular"]
        assert all(g.children and not g.trained for g in root.children)
        counts = {c.name: c for c in classes.class_counts(store)}
        assert all(counts[n].boxes[s] > 0 for n in ["circle", "square"] for s in ["train", "valid", "test"])
        assert "rare" in {w.kind for w in classes.class_warnings(store)}
    assert list_projects(tmp_path)[0].n_images == 60


def test_no_demo_flag(tmp_path: Path) -> None:
    assert cli.prepare_projects(tmp_path / "p", with_demo=False) is None
    assert list((tmp_path / "p").iterdir()) == []


@pytest.mark.slow
def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                str(LAUNCH),
                "--no-browser",
                "--no-demo",
                "--port",
                str(port),
                "--projects-dir",
                str(tmp_path),
            ],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr


def test_no_demo_when_the_folder_already_has_projects(tmp_path: Path) -> None:
    from studio.services.projects.catalog import create_project, delete_project, list_projects
    from studio.services.projects.demo import DEMO_MARKER

    info = create_project(tmp_path, "Bottles")
    assert cli.prepare_projects(tmp_path) is None
    assert [p.name for p in list_projects(tmp_path)] == ["Bottles"]
    assert (tmp_path / DEMO_MARKER).is_file()  # not a first start, also after deleting everything
    delete_project(tmp_path, info.slug)
    assert cli.prepare_projects(tmp_path) is None


def test_password_prompt_instead_of_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli.USERNAME_ENV, raising=False)
    monkeypatch.delenv(cli.PASSWORD_ENV, raising=False)
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "typed"

    assert cli.resolve_auth("0.0.0.0", "ann", None, prompt) == ("ann", "typed")
    assert asked == ["Password for ann: "]
    assert cli.resolve_auth("0.0.0.0", "ann", "given", prompt) == ("ann", "given") and len(asked) == 1
    with pytest.raises(cli.AuthRequired):
        cli.resolve_auth("0.0.0.0", "ann", None, lambda _: "")  # an empty answer is no password
    monkeypatch.setenv(cli.PASSWORD_ENV, "from-env")
    assert cli.resolve_auth("0.0.0.0", "ann", None, prompt) == ("ann", "from-env") and len(asked) == 1


def test_help_names_the_safe_ways_and_the_new_options() -> None:
    text = " ".join(cli.build_parser().format_help().split())
    assert f"${cli.PASSWORD_ENV}" in text and "process list" in text
    assert "--allowed-host" in text and "--max-upload-size" in text
    args = cli.build_parser().parse_args(["--allowed-host", "a.lan", "--allowed-host", "b.lan:8443"])
    assert args.allowed_host == ["a.lan", "b.lan:8443"]
    assert args.max_upload_size == 20 * 1024**3  # the default, in the binary units Gradio shows


def test_parse_size() -> None:
    import argparse

    assert cli.parse_size("500mb") == 500 * 1024**2 and cli.parse_size("20 GB") == 20 * 1024**3
    assert cli.parse_size("1024") == 1024
    for bad in ["0", "12 parsecs", "-5mb", "", "1.5gb"]:
        with pytest.raises(argparse.ArgumentTypeError):
            cli.parse_size(bad)


@pytest.mark.slow
def test_password_flag_still_works_with_a_warning(tmp_path: Path) -> None:
    proc, url = _start(tmp_path, "--no-demo", "--username", "ann", "--password", "s3cret")
    try:
        data = b"username=ann&password=s3cret"
        with urllib.request.urlopen(urllib.request.Request(url + "login", data=data), timeout=30) as resp:
            assert resp.status == 200
    finally:
        _stop(proc)


def test_password_flag_warns_before_anything_else(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(LAUNCH),
            "--password",
            "pw",
            "--no-browser",
            "--projects-dir",
            str(tmp_path / "p"),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "both a username and a password" in proc.stderr
    assert "visible to other users in the process list" in proc.stderr and cli.PASSWORD_ENV in proc.stderr
