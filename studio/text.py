"""Untrusted text made safe to show: short quotes of file-derived values, and escaping for HTML/Markdown.

Why: class names, file names, run errors and import problems come from files the user got elsewhere.
Formatting such a value whole (``f"{v!r}"``) can expand a YAML alias bomb into megabytes, and putting it
into ``gr.HTML`` unescaped runs whatever script it carries. Every page and every message builds its text
through these functions instead.
"""

from __future__ import annotations

import html
import re

MAX_QUOTE = 120  # characters of an untrusted value quoted in a message
MAX_MESSAGE = 2000  # characters of one message or stored error
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def quote(value: object, limit: int = MAX_QUOTE) -> str:
    """A short, printable description of an untrusted value for a message.

    Only plain scalars are turned into text; a container is described by its type and size, never
    formatted whole (its elements may be shared references that expand without bound).
    """
    if isinstance(value, bool) or value is None:
        text = repr(value)
    elif isinstance(value, int | float):
        text = repr(value) if abs(value) < 1e30 else f"{type(value).__name__} (huge)"
    elif isinstance(value, str):
        text = value if len(value) <= limit else value[:limit] + "…"
        return repr(text)
    elif isinstance(value, list | tuple | dict | set):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    else:
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit] + "…"


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text) - limit} more characters)"


def html_text(value: object, limit: int = MAX_MESSAGE) -> str:
    """``value`` as text safe inside HTML (elements and attributes), clipped to ``limit``."""
    return html.escape(clip(str(value), limit), quote=True)


def md_text(value: object, limit: int = MAX_MESSAGE) -> str:
    """``value`` as literal text inside Markdown: HTML escaped and Markdown syntax characters
    backslash-escaped, so a file name like ``*_x_*`` or ``<img onerror=…>`` shows as typed."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(clip(str(value), limit), quote=False))
