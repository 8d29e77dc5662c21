"""Keep a secret (the Roboflow API key) out of what a call prints, warns and logs, and leave every
other thread's output alone.

Why not ``contextlib.redirect_stdout`` plus a swapped log-record factory: both are process-wide. While
a deploy ran, every other thread's ``print`` went into the deploy's buffer (swallowed), the SDK's
stderr and warnings were not redacted at all, and two overlapping deploys restored each other's
factory in the wrong order, which dropped the redaction of the one still running.

Here, while at least one :func:`redacted` block is active:

- ``sys.stdout`` / ``sys.stderr`` are wrapped once. A write from a thread that is inside a block is
  redacted and captured for that block, which logs it afterwards. A write from any other thread goes
  to the real stream at once, unchanged except that an active secret becomes ``***``, so threads the
  SDK starts itself cannot leak the key either.
- ``warnings.showwarning`` is wrapped once: every warning is still shown (or recorded, e.g. by a
  test runner), with active secrets masked in its message.
- One log-record factory, installed once and shared by all blocks, replaces every active secret in
  a record's message (and drops an exception whose text holds one). It does nothing when no secret
  is active.

A secret split across two ``write`` calls is not recognised. ``print`` writes its text in one call,
so this does not happen in practice.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

MASK = "***"

_lock = threading.RLock()
_secrets: dict[int, str] = {}  # block token -> secret
_captures: dict[int, io.StringIO] = {}  # thread id -> buffer of the block that thread is in
_tokens = itertools.count()
_saved_streams: tuple[TextIO, TextIO] | None = None
_saved_showwarning: Any = None
_factory_installed = False


def scrub(text: str) -> str:
    """*text* with every active secret replaced by :data:`MASK`."""
    for secret in list(_secrets.values()):
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


class _RedactingStream:
    """A text stream that redacts writes and captures those of threads inside a block."""

    def __init__(self, target: TextIO) -> None:
        self._target = target

    def write(self, text: str) -> int:
        buffer = _captures.get(threading.get_ident())
        clean = scrub(text)
        if buffer is not None:
            buffer.write(clean)
        else:
            self._target.write(clean)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._target.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno … of the real stream
        return getattr(self._target, name)


def _redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with active secrets masked; an exception whose text holds one is folded into the
    message (masked) and dropped, since its traceback would print the text again."""
    try:
        text = record.getMessage()
    except Exception:  # a malformed record: leave it to logging's own error handling
        return record
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None and scrub(str(exc)) != str(exc):
        text, record.exc_info = f"{text} ({type(exc).__name__}: {scrub(str(exc))})", None
        record.msg, record.args = text, ()
    clean = scrub(text)
    if clean != text:
        record.msg, record.args = clean, ()
    return record


def _install_factory() -> None:
    """Chain one redacting factory in front of the current one, once per process."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        return _redact_record(record) if _secrets else record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


class _RedactingShowwarning:
    """``warnings.showwarning`` that masks active secrets in the message, then shows it as before."""

    def __init__(self, previous: Any) -> None:
        self._previous = previous

    def __call__(
        self, message: Any, category: type[Warning], filename: str, lineno: int, file=None, line=None
    ):
        text = str(message)
        clean = scrub(text)
        if clean != text:
            message = clean  # a str shows the same ("Category: text") and fits any category
        self._previous(message, category, filename, lineno, file, line)


def _wrap_streams() -> None:
    global _saved_streams, _saved_showwarning
    if _saved_streams is None:
        _saved_streams = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _RedactingStream(sys.stdout), _RedactingStream(sys.stderr)
        _saved_showwarning = warnings.showwarning
        warnings.showwarning = _RedactingShowwarning(_saved_showwarning)


def _unwrap_streams() -> None:
    """Put the real streams and ``showwarning`` back, unless someone replaced our wrappers meanwhile."""
    global _saved_streams, _saved_showwarning
    if _saved_streams is None:
        return
    out, err = _saved_streams
    if isinstance(sys.stdout, _RedactingStream):
        sys.stdout = out
    if isinstance(sys.stderr, _RedactingStream):
        sys.stderr = err
    if isinstance(warnings.showwarning, _RedactingShowwarning):
        warnings.showwarning = _saved_showwarning
    _saved_streams = _saved_showwarning = None


@contextlib.contextmanager
def redacted(secret: str) -> Iterator[io.StringIO]:
    """While active, *secret* becomes ``***`` in all output and log records; this thread's stdout and
    stderr go to the yielded buffer (already redacted) instead of the console."""
    buffer = io.StringIO()
    thread = threading.get_ident()
    with _lock:
        token = next(_tokens)
        _secrets[token] = secret
        outer = _captures.get(thread)
        _captures[thread] = buffer
        _install_factory()
        _wrap_streams()
    try:
        yield buffer
    finally:
        with _lock:
            del _secrets[token]
            if outer is None:
                _captures.pop(thread, None)
            else:
                _captures[thread] = outer
            if not _secrets:
                _unwrap_streams()


__all__ = ["MASK", "redacted", "scrub"]
