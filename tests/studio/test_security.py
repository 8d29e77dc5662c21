"""``studio.security`` in process: the Host/Origin rule, the file rule under the projects folder, the
login throttle (with its own clock, so no test waits), and the guard against a real Starlette app."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from studio.security import (
    FilePolicy,
    HostPolicy,
    LoginThrottle,
    StudioGuard,
    requested_file,
    split_host,
)


def test_split_host() -> None:
    assert split_host("LocalHost:7860") == ("localhost", 7860)
    assert split_host("[::1]:80") == ("::1", 80)
    assert split_host("[::1]") == ("::1", None)
    assert split_host("example.org.") == ("example.org", None)
    assert split_host("::1") == ("::1", None)
    for bad in [None, "", "host:port", "[::1]x", ":80"]:
        assert split_host(bad) is None


def test_loopback_bind_answers_only_local_names() -> None:
    policy = HostPolicy("127.0.0.1")
    for ok in ["localhost:7860", "127.0.0.1:7860", "[::1]:7860", "127.0.0.2", "localhost:8000", "LOCALHOST"]:
        assert policy.host_ok(ok), ok
    for bad in ["evil.example", "evil.example:7860", "localhost.evil.example", "10.0.0.5:7860", None, ""]:
        assert not policy.host_ok(bad), bad


def test_bound_address_allowed_hosts_and_wildcard() -> None:
    lan = HostPolicy("192.168.1.20", ("studio.lan", "proxy.example:8443"))
    assert lan.host_ok("192.168.1.20:7860") and lan.host_ok("studio.lan:7860") and lan.host_ok("studio.lan")
    assert lan.host_ok("proxy.example:8443") and not lan.host_ok("proxy.example:9999")
    assert not lan.host_ok("192.168.1.21:7860")  # another address is not this server's
    everywhere = HostPolicy("0.0.0.0")
    assert everywhere.host_ok("10.1.2.3:7860") and everywhere.host_ok("[fe80::1]:7860")
    assert not everywhere.host_ok("evil.example:7860")  # a name can be rebound; an address cannot
    assert HostPolicy("127.0.0.1", ("*",)).host_ok("anything.example")
    assert HostPolicy("studio.example.org").host_ok("studio.example.org:7860")


def test_origin_rule() -> None:
    policy = HostPolicy("127.0.0.1", ("proxy.example",))
    host = "127.0.0.1:7860"
    assert policy.origin_ok(None, host)
    assert policy.origin_ok("http://127.0.0.1:7860", host)
    assert policy.origin_ok("http://localhost", "localhost")  # default port on both sides
    assert policy.origin_ok("https://proxy.example", host)
    for bad in [
        "http://evil.example",
        "http://127.0.0.1:3000",  # another local web app is another origin
        "http://localhost:7860",  # not the page's own origin (the page was 127.0.0.1)
        "null",
        "file://",
        "http://[::1",
    ]:
        assert not policy.origin_ok(bad, host), bad


def test_file_rule_serves_only_project_images(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    (root / "p" / "images").mkdir(parents=True)
    policy = FilePolicy(root)
    assert policy.allowed(str(root / "p" / "images" / "abc.png"))
    for refused in [
        root / "p" / "project.db",
        root / "p" / "runs" / "1" / "best.pth",
        root / "p" / "exports" / "1.zip",
        root / "p" / "images",
        root / "p",
        root,
        root / ".demo-offered",
    ]:
        assert not policy.allowed(str(refused)), refused
    assert not policy.allowed(f"{root}/p/images/../project.db")
    outside = tmp_path / "elsewhere.txt"  # outside the projects folder: Gradio's own rules apply
    assert policy.allowed(str(outside))
    link = root / "p" / "images" / "link.png"
    os.symlink(root / "p" / "project.db", link)
    assert not policy.allowed(str(link))  # judged by what it points to
    assert requested_file("/gradio_api/file=/a/b.png") == "/a/b.png"
    assert requested_file("/gradio_api/file//a/b.png") == "/a/b.png"
    assert requested_file("/gradio_api/upload") is None


def test_login_throttle_doubles_and_forgets() -> None:
    now = [1000.0]
    throttle = LoginThrottle(free_attempts=3, base_lockout_s=30, max_lockout_s=100, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("a")
    assert throttle.retry_after("a") == 0
    throttle.failed("a")  # the third failure in a row locks
    assert throttle.retry_after("a") == 30 and throttle.retry_after("b") == 0  # per address
    now[0] += 30
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    assert throttle.retry_after("a") == 60
    now[0] += 60
    throttle.failed("a")
    assert throttle.retry_after("a") == 100  # capped
    throttle.succeeded("a")
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    assert throttle.retry_after("a") == 0  # a success started the count again


def _guarded_client(tmp_path: Path, throttle: LoginThrottle | None = None) -> TestClient:
    async def login(request):
        form = await request.form()
        if form.get("password") == "right":
            return JSONResponse({"success": True})
        return JSONResponse({"detail": "Incorrect credentials."}, status_code=400)

    async def hello(request):
        return PlainTextResponse("hello", headers={"access-control-allow-origin": "*"})

    app = Starlette(routes=[Route("/login", login, methods=["POST"]), Route("/", hello)])
    guarded = StudioGuard(app, HostPolicy("127.0.0.1"), FilePolicy(tmp_path), throttle)
    return TestClient(guarded, base_url="http://127.0.0.1:7860")


def test_guard_refuses_before_the_app_answers(tmp_path: Path) -> None:
    client = _guarded_client(tmp_path)
    assert client.get("/").text == "hello"
    forged = client.get("/", headers={"host": "evil.example", "origin": "http://evil.example"})
    assert forged.status_code == 403 and "access-control-allow-origin" not in forged.headers
    foreign = client.get("/", headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403 and "access-control-allow-origin" not in foreign.headers
    assert client.get(f"/gradio_api/file={tmp_path}/p/project.db").status_code == 404


def test_guard_locks_out_a_guessing_client(tmp_path: Path) -> None:
    now = [0.0]
    client = _guarded_client(tmp_path, LoginThrottle(free_attempts=2, clock=lambda: now[0]))
    assert client.post("/login", data={"password": "wrong"}).status_code == 400
    assert client.post("/login", data={"password": "wrong"}).status_code == 400
    locked = client.post("/login", data={"password": "right"})  # even the right password waits
    assert locked.status_code == 429 and locked.headers["retry-after"] == "30"
    assert "Too many failed logins" in locked.json()["detail"]
    now[0] += 30
    assert client.post("/login", data={"password": "right"}).status_code == 200
