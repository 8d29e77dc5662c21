"""The local web server as an attacker meets it (issue 13, items 3–5 and 8): real HTTP against the real app
started by ``launch.py``, and the real browser for what a user must still see.

* a forged ``Host`` (DNS rebinding) and a foreign ``Origin`` are refused, with no CORS header;
* ``project.db``, a checkpoint, an export and the folders themselves are not served by URL, while the
  Label editor's image (a file under ``images/``) and the Data gallery still load in the browser;
* failed logins lock the guessing address out (another address can still log in);
* an upload over ``--max-upload-size`` is refused with a readable message.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest
from playwright.sync_api import Page, expect

from studio.services.deploy.model_export import EXPORTS_DIR
from studio.services.train.runs import RUNS_DIR
from studio.store.db import DB_NAME, IMAGES_DIR
from tests.support.browser import StudioServer, launch_studio

pytestmark = pytest.mark.browser
DEMO = "demo-shapes"
USER, PASSWORD = "ann", "s3cret"
UPLOAD_LIMIT = 4000  # bytes, --max-upload-size of the login server


def _port(server: StudioServer) -> int:
    return int(urlsplit(server.url).port or 80)


def _request(
    server: StudioServer,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
    source: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request to the server (Host and Origin exactly as given), from ``source`` if given."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", _port(server), timeout=60, source_address=(source, 0) if source else None
    )
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _file_url(path: Path) -> str:
    return "/gradio_api/file=" + quote(str(path))


@pytest.fixture(scope="module")
def login_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    args = ["--no-demo", "--username", USER, "--password", PASSWORD, "--max-upload-size", str(UPLOAD_LIMIT)]
    with launch_studio(tmp_path_factory.mktemp("studio-login"), *args) as server:
        yield server


def test_forged_host_and_foreign_origin_are_refused(studio_server: StudioServer) -> None:
    port = _port(studio_server)
    for headers in [
        {"Host": "evil.example", "Origin": "http://evil.example"},  # DNS rebinding
        {"Host": f"evil.example:{port}"},
        {"Host": f"127.0.0.1:{port}", "Origin": "http://evil.example"},  # a cross-site request
        {"Host": f"127.0.0.1:{port}", "Origin": "null"},
    ]:
        for path in ["/", "/config", "/gradio_api/info"]:
            status, got, _ = _request(studio_server, path, headers)
            assert status == 403, (headers, path)
            assert "access-control-allow-origin" not in got, (headers, path)
    status, got, _ = _request(
        studio_server,
        "/gradio_api/queue/join",
        {"Origin": "http://evil.example", "Content-Type": "application/json"},
        method="POST",
        body=b"{}",
    )
    assert status == 403 and "access-control-allow-origin" not in got
    # the names this machine means, and the page's own origin, are answered
    for host in [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]:
        assert _request(studio_server, "/config", {"Host": host})[0] == 200, host
    own = f"http://127.0.0.1:{port}"
    status, got, _ = _request(studio_server, "/config", {"Host": f"127.0.0.1:{port}", "Origin": own})
    assert status == 200 and got.get("access-control-allow-origin") in (None, own)


def _demo_folder(server: StudioServer) -> Path:
    folder = server.projects_dir / DEMO
    assert (folder / DB_NAME).is_file()
    return folder


def test_project_files_are_not_served_but_images_show(page: Page, studio_server: StudioServer) -> None:
    folder = _demo_folder(studio_server)
    checkpoint = folder / RUNS_DIR / "9999" / "checkpoint_best_total.pth"
    export = folder / EXPORTS_DIR / "9999" / "model.zip"
    for path in (checkpoint, export):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"secret")
    page.locator("#projects-select input").first.click()
    page.locator("li[data-testid=dropdown-option]", has_text=f"({DEMO})").first.click()
    page.locator("#projects-open").click()
    expect(page.locator("#current-project")).to_contain_text("Demo shapes")
    page.get_by_role("tab", name="Label").click()
    expect(page.locator("#label-position")).to_have_text(re.compile(r"1 / \d+"))
    page.wait_for_timeout(300)  # let the tab's own reload start, as tests/browser/test_label.py does
    expect(page.locator("#label-position [data-testid=status-tracker]")).to_have_class(
        re.compile(r"\bhide\b")
    )
    with page.expect_response(lambda r: "/gradio_api/file=" in r.url and f"/{IMAGES_DIR}/" in r.url) as shown:
        page.locator("#label-next").click()  # image 2 was never shown: the editor must fetch it now
    assert shown.value.status == 200
    editor_image = shown.value.url
    assert f"{folder}/{IMAGES_DIR}/" in unquote(urlsplit(editor_image).path)

    page.get_by_role("tab", name="Data").click()
    first = page.locator("#data-gallery img").first
    expect(first).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=first.element_handle())

    fetch = "async url => (await fetch(url)).status"  # from the page itself: same origin, its cookies
    assert page.evaluate(fetch, editor_image) == 200
    refused = [
        folder / DB_NAME,
        checkpoint,
        export,
        folder / IMAGES_DIR,
        folder,
        studio_server.projects_dir,
        Path(f"{folder}/{IMAGES_DIR}/../{DB_NAME}"),
    ]
    for path in refused:
        assert page.evaluate(fetch, _file_url(path)) == 404, path
        assert _request(studio_server, _file_url(path))[0] == 404, path
        assert _request(studio_server, "/gradio_api/file/" + quote(str(path)))[0] in (403, 404), path


def _login(server: StudioServer, password: str, source: str) -> tuple[int, dict[str, str], bytes]:
    body = f"username={USER}&password={password}".encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return _request(server, "/login", headers, method="POST", body=body, source=source)


def test_failed_logins_lock_out_the_guessing_address(login_server: StudioServer) -> None:
    assert _request(login_server, "/config")[0] == 401
    guesser, other = "127.0.0.2", "127.0.0.3"  # both loopback: the server sees two client addresses
    for _ in range(5):
        assert _login(login_server, "wrong", guesser)[0] == 400
    status, headers, body = _login(login_server, PASSWORD, guesser)  # even the right password waits
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert "Too many failed logins" in json.loads(body)["detail"]
    assert _login(login_server, "wrong", guesser)[0] == 429  # no more guesses while locked
    status, headers, _ = _login(login_server, PASSWORD, other)
    assert status == 200 and "access-token" in headers.get("set-cookie", "")


def test_upload_over_the_limit_is_refused_readably(
    page: Page, login_server: StudioServer, tmp_path: Path
) -> None:
    page.goto(login_server.url)
    page.get_by_label("username").fill(USER)
    page.get_by_label("password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#studio-tabs")
    big = tmp_path / "too-big.zip"
    big.write_bytes(b"\0" * (UPLOAD_LIMIT * 3))
    page.get_by_role("tab", name="Data").click()
    page.locator("#data-import-zip input[type=file]").set_input_files(str(big))
    expect(page.get_by_text("exceed the maximum allowed size").first).to_contain_text("too-big.zip")
    # the server refuses it as well, whatever the page does
    cookie = page.context.cookies()
    token = next(c for c in cookie if c["name"].startswith("access-token-unsecure"))
    boundary = "studioboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="too-big.zip"\r\n'
            f"Content-Type: application/zip\r\n\r\n"
        ).encode()
        + big.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, _, text = _request(
        login_server,
        "/gradio_api/upload",
        {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Cookie": f"{token['name']}={token['value']}",
        },
        method="POST",
        body=body,
    )
    assert status == 413 and b"maximum allowed size" in text
