"""The page layer without a browser: the error boundary and the documented element ids."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import gradio as gr
import pytest

from studio.errors import StudioError
from studio.pages import guarded
from studio.services.data.importing.report import ImportAborted

UI_DOC = Path(__file__).resolve().parents[2] / "docs" / "ui.md"


def test_user_errors_become_plain_messages() -> None:
    @guarded
    def fails(kind: str) -> None:
        raise {"studio": StudioError, "value": ValueError, "abort": ImportAborted}[kind]("Bad name.")

    for kind in ["studio", "value", "abort"]:
        with pytest.raises(gr.Error) as err:
            fails(kind)
        assert err.value.message == "Bad name."
        assert err.value.__cause__ is None and err.value.__suppress_context__


def test_user_error_messages_are_escaped_for_the_toast() -> None:
    """A class or file name quoted in an error must show as text, not run as HTML in the toast."""

    @guarded
    def fails() -> None:
        raise StudioError("A class named '<img src=x onerror=alert(1)>' already exists.")

    with pytest.raises(gr.Error) as err:
        fails()
    assert "<img" not in err.value.message and "&lt;img src=x" in err.value.message


def test_unexpected_errors_are_summarised_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    @guarded
    def crashes() -> None:
        {}["missing"]

    with pytest.raises(gr.Error) as err:
        crashes()
    assert err.value.title == "Unexpected error"
    assert "KeyError" in err.value.message and "Traceback" not in err.value.message
    assert "Traceback" in caplog.text  # the details go to the console, not the browser


def test_guarded_keeps_the_signature_gradio_inspects() -> None:
    def handler(slug: str, progress=gr.Progress()):  # noqa: B008
        return slug

    wrapped = guarded(handler)
    assert list(inspect.signature(wrapped).parameters) == ["slug", "progress"]
    assert wrapped("x") == "x"


def test_every_documented_elem_id_exists(tmp_path: Path) -> None:
    from studio.app import PAGES, build_app

    app = build_app(tmp_path)
    ids = {block.elem_id for block in app.blocks.values() if getattr(block, "elem_id", None)}
    documented = set()
    for line in UI_DOC.read_text().splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`([a-z0-9-]+)`", line.split("|")[1]))
    assert documented, "docs/ui.md lists no ids"
    assert documented - ids == set(), "documented but missing in the app"
    assert ids - documented == set(), "in the app but not documented in docs/ui.md"
    assert {f"tab-{p.TITLE.lower()}" for p in PAGES} <= ids
