"""Reading XML from someone else's dataset (Pascal VOC, CVAT) without the classic XML attacks.

Why ``defusedxml`` with ``forbid_dtd``: an annotation file never needs a DTD, and a DTD is what an
entity-expansion bomb ("billion laughs") or an external entity (``SYSTEM "file:///etc/passwd"``) is
written in. Refusing any DTD refuses both before a single entity is expanded or fetched. The file is
read through :func:`read_regular_file` (regular files only, size capped) so a pipe never blocks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from studio.services.data.importing import limits
from studio.services.data.importing.image_check import BadImage, read_regular_file

PEEK_BYTES = 4096


class BadXml(Exception):
    """The file cannot be used as XML; the message says why (for the report)."""


def parse_xml(path: Path, max_bytes: int = limits.MAX_LABEL_FILE_BYTES) -> Element:
    """The root element of ``path``; raises :class:`BadXml` with a reason a user can act on."""
    try:
        data = read_regular_file(path, max_bytes)
    except BadImage as e:
        raise BadXml(str(e)) from None
    try:
        return SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise BadXml(
            "declares a DTD or entities, which annotation files never need (refused: it could be an "
            "XML bomb or read files through an external entity)"
        ) from None
    except ParseError as e:
        raise BadXml(f"is not well-formed XML ({str(e)[:160]})") from None
    except RecursionError:
        raise BadXml("is nested too deeply to be an annotation file") from None


def peek(path: Path, n: int = PEEK_BYTES) -> str:
    """The first ``n`` bytes of a regular file as text (detection only; '' when it cannot be read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return ""
        os.set_blocking(f.fileno(), True)
        return f.read(n).decode("utf-8", errors="replace")


def xml_root_tag(path: Path) -> str | None:
    """'annotation' (Pascal VOC), 'annotations' (CVAT) … from the first bytes, without parsing."""
    head = peek(path)
    i = 0
    while True:
        i = head.find("<", i)
        if i < 0 or i + 1 >= len(head):
            return None
        if head[i + 1] not in "?!":
            tag = head[i + 1 :].split(">", 1)[0].split()[0] if head[i + 1 :].strip() else ""
            return tag.rstrip("/") or None
        i += 1


def text_of(el: Element | None, tag: str) -> str | None:
    """The stripped text of the child ``tag`` of ``el`` (None when missing or empty)."""
    child = el.find(tag) if el is not None else None
    if child is None or child.text is None:
        return None
    return child.text.strip() or None


def number(text: str | None) -> float | None:
    """``text`` as a finite float, or None (VOC writes '12', '12.0' and sometimes '12.5')."""
    if text is None or len(text) > 40:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if v == v and abs(v) != float("inf") else None
