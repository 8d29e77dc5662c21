"""Scoped redaction of a secret (the Roboflow key): what the deploying thread prints, writes to stderr,
warns or logs is masked and kept off the console, while other threads' output still appears, in
order, and nothing of the wrappers is left behind afterwards. Real threads, real streams, real
logging and warnings machinery."""

from __future__ import annotations

import logging
import sys
import threading
import warnings

from studio.services.deploy.redact import MASK, redacted

SECRET = "rf_SECRET_0123456789abcdef"


def _printer(lines: int, started: threading.Event, go: threading.Event, done: threading.Event) -> None:
    started.set()
    go.wait(10)
    for i in range(lines):
        print(f"other thread line {i}")
    print(f"other thread saw {SECRET}", file=sys.stderr)
    done.set()


def test_other_threads_output_passes_through_while_this_thread_is_captured(capsys, caplog, recwarn):
    caplog.set_level(logging.INFO)
    started, go, done = threading.Event(), threading.Event(), threading.Event()
    other = threading.Thread(target=_printer, args=(50, started, go, done))
    other.start()
    started.wait(10)
    with redacted(SECRET) as captured:
        print(f"deploy prints {SECRET}")
        print(f"deploy complains {SECRET}", file=sys.stderr)
        go.set()
        assert done.wait(10)  # the other thread printed while the block is active
        warnings.warn(f"sdk warning {SECRET}", UserWarning, stacklevel=1)
        logging.getLogger("roboflow.sdk").warning("logged %s", SECRET)
        try:
            raise ConnectionError(f"https://api.example/?api_key={SECRET}")
        except ConnectionError:
            logging.getLogger("roboflow.sdk").exception("request failed")
    other.join(10)
    out, err = capsys.readouterr()
    assert [ln for ln in out.splitlines() if ln.startswith("other thread line")] == [
        f"other thread line {i}" for i in range(50)
    ]  # nothing swallowed, in order
    assert f"other thread saw {MASK}" in err  # other threads still get the key masked
    assert "deploy prints" not in out and "deploy complains" not in err  # captured, not on the console
    assert captured.getvalue().splitlines()[:2] == [f"deploy prints {MASK}", f"deploy complains {MASK}"]
    assert [str(w.message) for w in recwarn] == [f"sdk warning {MASK}"]  # shown (here: recorded), masked
    assert SECRET not in out + err + captured.getvalue() + caplog.text
    assert f"logged {MASK}" in caplog.text and f"api_key={MASK}" in caplog.text
    assert "Redacting" not in type(sys.stdout).__name__ + type(sys.stderr).__name__
    assert "Redacting" not in type(warnings.showwarning).__name__


def test_overlapping_blocks_in_two_threads_keep_both_secrets_masked(capsys, caplog):
    caplog.set_level(logging.INFO)
    other_secret = "rf_OTHER_fedcba9876543210"
    inside, leave = threading.Event(), threading.Event()

    def second_deploy() -> None:
        with redacted(other_secret):
            inside.set()
            leave.wait(10)
            logging.getLogger("roboflow.sdk").warning("second %s", other_secret)

    thread = threading.Thread(target=second_deploy)
    with redacted(SECRET):
        thread.start()
        assert inside.wait(10)
    # the first block ended while the second is still active: its secret must stay masked
    logging.getLogger("roboflow.sdk").warning("after first %s", other_secret)
    print(f"main prints {other_secret}")
    leave.set()
    thread.join(10)
    out, _ = capsys.readouterr()
    assert other_secret not in caplog.text + out
    assert f"after first {MASK}" in caplog.text and f"second {MASK}" in caplog.text
    assert f"main prints {MASK}" in out
    assert "Redacting" not in type(sys.stdout).__name__ + type(sys.stderr).__name__
    print(f"later {other_secret}")  # no block active: output is left as it is
    assert capsys.readouterr().out == f"later {other_secret}\n"


def test_warnings_on_a_plain_stderr_are_masked(tmp_path):
    """Outside a test runner, warnings go to stderr through the default ``showwarning``."""
    import subprocess
    from pathlib import Path

    script = tmp_path / "warn.py"
    script.write_text(
        "import sys, warnings\n"
        "from studio.services.deploy.redact import redacted\n"
        f"with redacted({SECRET!r}) as out:\n"
        f"    warnings.warn('inside ' + {SECRET!r})\n"
        f"print('captured:', out.getvalue().strip())\n"
        f"warnings.warn('after ' + {SECRET!r})\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=root, capture_output=True, text=True, timeout=60, check=True
    )
    assert f"captured: {script}:4: UserWarning: inside {MASK}" in proc.stdout
    assert SECRET not in proc.stdout
    assert f"UserWarning: after {SECRET}" in proc.stderr  # no block active: untouched
