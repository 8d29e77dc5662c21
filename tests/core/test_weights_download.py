"""Pretrained-weight download against a real HTTP server on 127.0.0.1 (no internet involved)."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
from pathlib import Path

import pytest
import torch

from rfdetr_core import weights
from rfdetr_core.weights import WeightAsset, WeightsChecksumError, WeightsDownloadError


class _Server:
    """Serves ``payload`` at any path; ``mode`` = "ok" | "truncate" | "404". Counts GET requests."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.mode, self.hits = payload, "ok", 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                if outer.mode == "404":
                    self.send_error(404, "no such weights")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.payload)))
                self.end_headers()
                body = outer.payload if outer.mode == "ok" else outer.payload[: len(outer.payload) // 3]
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def payload() -> bytes:
    """A real (tiny) checkpoint in the official layout, serialised to bytes."""
    buf = io.BytesIO()
    torch.save({"model": {"class_embed.bias": torch.randn(4)}, "args": {"num_classes": 3}}, buf)
    return buf.getvalue()


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RF_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(weights.MIRROR_ENV_VAR, raising=False)
    return tmp_path / "cache"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _registry(
    url: str, data: bytes, name: str = "tiny.pth", md5: str | None = None
) -> dict[str, WeightAsset]:
    return {name: WeightAsset(name, f"{url}/{name}", md5 or hashlib.md5(data).hexdigest())}


def test_download_to_cache_with_progress_and_reuse(payload: bytes, cache: Path, capfd) -> None:
    with _Server(payload) as server:
        registry = _registry(server.url, payload)
        path = weights.resolve_pretrain_weights("tiny.pth", registry=registry, progress=True)
        assert path == cache / "tiny.pth"
        assert path.read_bytes() == payload
        assert "100%" in capfd.readouterr().err  # the progress bar ran to completion
        assert torch.load(path, weights_only=True)["args"]["num_classes"] == 3
        again = weights.resolve_pretrain_weights("tiny.pth", registry=registry)
        assert again == path and server.hits == 1  # cached file reused, no second request
    assert [p.name for p in cache.iterdir()] == ["tiny.pth"]  # no temporary files left


def test_checksum_mismatch_leaves_nothing(payload: bytes, cache: Path) -> None:
    with _Server(payload) as server:
        registry = _registry(server.url, payload, md5="0" * 32)
        with pytest.raises(WeightsChecksumError, match="Checksum mismatch for 'tiny.pth'"):
            weights.resolve_pretrain_weights("tiny.pth", registry=registry, progress=False)
    assert not any(cache.iterdir())


def test_interrupted_transfer_leaves_no_corrupt_file(payload: bytes, cache: Path) -> None:
    with _Server(payload) as server:
        server.mode = "truncate"
        with pytest.raises(WeightsDownloadError, match="interrupted") as info:
            weights.resolve_pretrain_weights(
                "tiny.pth", registry=_registry(server.url, payload), progress=False
            )
        assert not isinstance(info.value, WeightsChecksumError)
    assert not any(cache.iterdir())


def test_http_error_is_reported(payload: bytes, cache: Path) -> None:
    with _Server(payload) as server:
        server.mode = "404"
        with pytest.raises(WeightsDownloadError, match="HTTP 404"):
            weights.resolve_pretrain_weights(
                "tiny.pth", registry=_registry(server.url, payload), progress=False
            )
    assert not any(cache.iterdir())


def test_offline_error_names_file_and_ways_out(payload: bytes, cache: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(WeightsDownloadError) as info:
        weights.resolve_pretrain_weights("tiny.pth", registry=_registry(url, payload), progress=False)
    message = str(info.value)
    assert "'tiny.pth'" in message
    assert str(cache / "tiny.pth") in message
    assert "pretrain_weights=None" in message and "pretrain_weights='/path/to/your.pth'" in message
    assert not cache.exists() or not any(cache.iterdir())


def test_official_registry_entries() -> None:
    nano = weights.OFFICIAL_WEIGHTS["rf-detr-nano.pth"]
    assert nano.url == "https://storage.googleapis.com/rfdetr/nano_coco/checkpoint_best_regular.pth"
    assert nano.md5 == "fb6504cce7fbdc783f7a46991f07639f"
    expected = {
        "rf-detr-nano.pth",
        "rf-detr-small.pth",
        "rf-detr-medium.pth",
        "rf-detr-base.pth",
        "rf-detr-large-2026.pth",
    }
    assert expected <= set(weights.OFFICIAL_WEIGHTS)


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RF_HOME", raising=False)
    monkeypatch.delenv("ROBOFLOW_HOME", raising=False)
    assert weights.model_cache_dir() == Path("~/.roboflow/models").expanduser().resolve()
    monkeypatch.setenv("ROBOFLOW_HOME", str(tmp_path / "alias"))
    assert weights.model_cache_dir() == tmp_path / "alias"
    monkeypatch.setenv("RF_HOME", str(tmp_path / "canonical"))
    assert weights.model_cache_dir() == tmp_path / "canonical"


def test_unknown_missing_file_is_a_clear_error(cache: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither an existing file nor an official checkpoint"):
        weights.resolve_pretrain_weights("my-own-model.pth")


def test_official_name_through_mirror_checks_official_checksum(
    payload: bytes, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The façade path: an official name, fetched from a mirror, must carry the official MD5."""
    from rfdetr_core import RFDETRNano

    with _Server(payload) as server:
        monkeypatch.setenv(weights.MIRROR_ENV_VAR, server.url)
        with pytest.raises(WeightsChecksumError, match="fb6504cce7fbdc783f7a46991f07639f"):
            RFDETRNano(pretrain_weights="rf-detr-nano.pth")
        assert server.hits == 1
    assert not any(cache.iterdir())


def test_offline_through_the_facade(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rfdetr_core import RFDETRNano

    monkeypatch.setenv(weights.MIRROR_ENV_VAR, f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(WeightsDownloadError, match="'rf-detr-nano.pth'.*pretrain_weights=None"):
        RFDETRNano()  # default: the official COCO Nano weights in the cache directory
