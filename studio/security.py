"""The local web server's own guard: which Host and Origin it answers, which files under the projects
folder it serves, and how fast a client may guess the login.

Why a guard in front of Gradio and not Gradio's settings:

* **DNS rebinding.** A web page on ``evil.example`` can re-point its own name at 127.0.0.1 and then call
  the studio as "same origin"; Gradio answers any Host and, when the Host is not ``localhost``, reflects
  any ``Origin`` in ``Access-Control-Allow-Origin``. As in Jupyter, only the names this machine means
  (``localhost``, loopback addresses, the bound address, ``--allowed-host``) are answered, and a browser
  request from another origin is refused (403, no CORS header).
* **The projects folder.** The Label editor shows project images straight from disk, so the folder is
  known to Gradio's file route; without a rule every ``project.db``, checkpoint, log and export would be
  downloadable by URL. Under the projects folder only ``<project>/images/<file>`` is served; everything
  else answers 404. Files outside it are left to Gradio's own allow-list (its upload/cache folder).
* **Login guessing.** Gradio's ``auth=`` callable is not told who is calling, so the throttle watches
  ``POST /login`` here, per client address: after :attr:`LoginThrottle.free_attempts` failures in a row
  the address is locked out, for twice as long after each further failure (capped).

The guard is installed as the outermost ASGI layer, above Gradio's CORS middleware, from the app's
lifespan (:func:`guard_lifespan`): that runs after Gradio built its middleware stack and before the
server accepts its first connection.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from studio.store.db import IMAGES_DIR
from studio.text import quote

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")  # Gradio 6's routes that read a path from the URL
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def split_host(value: str | None) -> tuple[str, int | None] | None:
    """``"Name:7860"`` → ``("name", 7860)``; ``"[::1]:80"`` → ``("::1", 80)``; None when unparsable."""
    value = (value or "").strip().lower()
    if not value:
        return None
    port: str | None = None
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
        elif rest:
            return None
    elif value.count(":") == 1:
        name, port = value.split(":")
    elif ":" in value:
        name = value  # a bare IPv6 address (only seen in --allowed-host / --host values)
    else:
        name = value
    name = name.rstrip(".")
    if not name or (port is not None and not port.isdigit()):
        return None
    return name, (int(port) if port else None)


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


@dataclass(frozen=True)
class HostPolicy:
    """The Host names this server answers and the browser origins it accepts.

    ``extra`` are ``--allowed-host`` values: ``name`` (any port) or ``name:port``; ``*`` turns the Host
    check off (only behind a proxy that checks it). An IP address in the Host header cannot come from DNS
    rebinding, so when bound to all interfaces any address is answered (the login protects it).
    """

    bind: str
    extra: tuple[str, ...] = ()

    def _entries(self) -> list[tuple[str, int | None]]:
        return [e for e in (split_host(x) for x in self.extra if x != "*") if e is not None]

    def host_ok(self, header: str | None) -> bool:
        if "*" in self.extra:
            return True
        parsed = split_host(header)
        if parsed is None:
            return False
        name, port = parsed
        bind = self.bind.strip("[]").lower()
        ip = _ip(name)
        if name in LOOPBACK_NAMES or name == bind or (ip is not None and ip.is_loopback):
            return True
        if ip is not None and bind in WILDCARD_BINDS:
            return True
        return any(name == n and (p is None or p == port) for n, p in self._entries())

    def origin_ok(self, origin: str | None, host_header: str | None) -> bool:
        """True for no Origin (not a cross-site browser request), the page's own origin, or an allowed host."""
        if origin is None:
            return True
        try:
            parts = urlsplit(origin.strip().lower())
            name, port = (parts.hostname or "").rstrip("."), parts.port
        except ValueError:
            return False
        if parts.scheme not in DEFAULT_PORTS or not name:
            return False  # "null" (sandboxed frames, file:// pages) and anything odd
        port = port or DEFAULT_PORTS[parts.scheme]
        host = split_host(host_header)
        if host is not None and host[0] == name and (host[1] or DEFAULT_PORTS[parts.scheme]) == port:
            return True
        return any(name == n and (p is None or p == port) for n, p in self._entries())


@dataclass(frozen=True)
class FilePolicy:
    """Which paths Gradio's file route may serve under the projects folder: only project images."""

    root: Path

    def allowed(self, requested: str) -> bool:
        # the same normalisation as Gradio's file route (os.path.abspath, then symlinks resolved)
        path = Path(os.path.abspath(requested)).resolve()
        try:
            rel = path.relative_to(self.root.resolve())
        except ValueError:
            return True  # outside the projects folder: Gradio's own allow-list decides
        return len(rel.parts) >= 3 and rel.parts[1] == IMAGES_DIR


def requested_file(path: str) -> str | None:
    """The file path a Gradio file-route URL asks for, None for any other URL."""
    for route in FILE_ROUTES:
        at = path.find(route)
        if at >= 0:
            return path[at + len(route) :]
    return None


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


@dataclass
class LoginThrottle:
    """Failed logins per client address → a lockout that doubles with every further failure.

    ``free_attempts`` failures in a row cost nothing (typos); the next failure locks the address out for
    ``base_lockout_s``, each one after that doubles it up to ``max_lockout_s``. A success, or
    ``forget_after_s`` without a failure, clears the address.
    """

    free_attempts: int = 5
    base_lockout_s: float = 30.0
    max_lockout_s: float = 900.0
    forget_after_s: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    _clients: dict[str, _Failures] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0 when it may now)."""
        with self._lock:
            entry = self._clients.get(client)
            return 0.0 if entry is None else max(0.0, entry.locked_until - self.clock())

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            self._forget_old(now)
            entry = self._clients.setdefault(client, _Failures())
            entry.count += 1
            entry.last = now
            over = entry.count - self.free_attempts
            if over >= 0:
                entry.locked_until = now + min(self.base_lockout_s * 2**over, self.max_lockout_s)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def _forget_old(self, now: float) -> None:
        stale = [
            c
            for c, e in self._clients.items()
            if now - e.last > self.forget_after_s and e.locked_until <= now
        ]
        for client in stale:
            del self._clients[client]


async def _plain(send: Callable, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> None:
    body = text.encode()
    head = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    head += [(k.encode(), v.encode()) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class StudioGuard:
    """ASGI middleware applying :class:`HostPolicy`, :class:`FilePolicy` and :class:`LoginThrottle`."""

    def __init__(
        self, app: Any, hosts: HostPolicy, files: FilePolicy, throttle: LoginThrottle | None = None
    ) -> None:
        self.app, self.hosts, self.files, self.throttle = app, hosts, files, throttle

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, text = refusal
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                await _plain(send, status, text)
            return
        if (
            self.throttle is not None
            and scope["method"] == "POST"
            and scope["path"].rstrip("/").endswith("/login")
        ):
            await self._login(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: dict) -> tuple[int, str] | None:
        host = _header(scope, b"host")
        if not self.hosts.host_ok(host):
            log.warning("refused a request for Host %s (start with --allowed-host to allow it)", quote(host))
            return 403, (
                "This RF-DETR Studio does not answer requests for that host name. If you reach it through "
                "a name of your own, start it with --allowed-host NAME."
            )
        origin = _header(scope, b"origin")
        if not self.hosts.origin_ok(origin, host):
            log.warning("refused a cross-origin request from %s", quote(origin))
            return 403, "Requests from other web sites are not accepted."
        wanted = requested_file(scope["path"]) if scope["type"] == "http" else None
        if wanted is not None and not self.files.allowed(wanted):
            return 404, "Not found."
        return None

    async def _login(self, scope: dict, receive: Callable, send: Callable) -> None:
        assert self.throttle is not None
        client = str((scope.get("client") or ("unknown",))[0])
        wait = self.throttle.retry_after(client)
        if wait > 0:
            seconds = math.ceil(wait)
            detail = json.dumps({"detail": f"Too many failed logins. Try again in {seconds} s."})
            await _plain(send, 429, detail, [("retry-after", str(seconds))])
            return
        status: list[int] = []

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] == 200:
            self.throttle.succeeded(client)
        elif status and status[0] == 400:  # Gradio's "Incorrect credentials."
            self.throttle.failed(client)


def guard_lifespan(
    hosts: HostPolicy, files: FilePolicy, throttle: LoginThrottle | None
) -> Callable[[Any], Any]:
    """A lifespan for ``launch(app_kwargs={"lifespan": ...})`` that puts :class:`StudioGuard` outermost.

    Starlette builds the middleware stack on the first ASGI call, the lifespan's own; wrapping it there
    puts the guard above Gradio's CORS layer (so a refusal carries no CORS header) before any request.
    """

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        stack = app.middleware_stack or app.build_middleware_stack()
        app.middleware_stack = StudioGuard(stack, hosts, files, throttle)
        yield

    return lifespan


def is_guarded(app: Any) -> bool:
    """True once the running server app answers through :class:`StudioGuard` (checked after launch)."""
    return isinstance(getattr(app, "middleware_stack", None), StudioGuard)
