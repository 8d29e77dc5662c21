"""What every command shares: the common options, the project lookup, progress bars, output, exit codes.

Exit codes: ``0`` done; ``1`` a user error (unknown project, bad dataset, a run that failed...), its
message on stderr (and ``{"error": ...}`` on stdout with ``--json``); ``2`` a usage error (argparse's
own); ``3`` an unexpected error, with its traceback on stderr. Human output goes to stdout, progress
bars and messages to stderr, so ``--json`` output can be piped as it is.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.store import ProjectStore

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
PROG = "rfdetr-studio"


class CommandError(Exception):
    """A user error raised by a command itself (exit code 1), e.g. a project that does not exist."""


@dataclass
class Outcome:
    """What a command hands back: the JSON document, its human text and the exit code."""

    doc: Any
    text: str
    code: int = EXIT_OK
    error: str | None = None  # shown on stderr (and put in the JSON) when ``code`` is not 0


Command = Callable[[argparse.Namespace], Outcome]


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--projects-dir`` (also accepted before the command) and ``--json``."""
    parser.add_argument(
        "--projects-dir",
        type=Path,
        default=argparse.SUPPRESS,  # keep a value given before the command name
        help="where projects live (default: $STUDIO_PROJECTS_DIR or ./projects)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def projects_root(args: argparse.Namespace) -> Path:
    from studio.cli import default_projects_dir

    return (getattr(args, "projects_dir", None) or default_projects_dir()).expanduser().resolve()


def find_project(root: Path, name: str) -> str:
    """The slug of the project called ``name`` (its folder name, or its display name, any case)."""
    from studio.services.projects.catalog import list_projects

    found = list_projects(root) if root.is_dir() else []
    for info in found:
        if info.slug == name:
            return info.slug
    matches = [p.slug for p in found if p.name.casefold() == name.casefold()]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(p.slug for p in found) or "none"
    raise CommandError(f"No project {name!r} in {root} (projects: {known}).")


@contextmanager
def project_store(args: argparse.Namespace) -> Iterator[ProjectStore]:
    """The store of ``args.project`` under the projects folder, closed afterwards."""
    from studio.services.projects.catalog import open_store

    root = projects_root(args)
    store = open_store(root, find_project(root, args.project))
    try:
        yield store
    finally:
        store.close()


@contextmanager
def progress_bar(desc: str, total: float = 1.0, unit: str = "%") -> Iterator[Any]:
    """A tqdm bar on stderr; ``bar.to(done, note)`` moves it to ``done`` of ``total``."""
    from tqdm import tqdm

    # a fraction (total 1.0) has no meaningful rate or count: show the percentage and the service's note
    shape = {"bar_format": "{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}"} if unit == "%" else {}
    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True, **shape)

    def to(done: float, note: str = "") -> None:
        bar.n = min(float(done), float(bar.total or done))
        if note:
            bar.set_postfix_str(note[:60], refresh=False)
        bar.refresh()

    bar.to = to
    try:
        yield bar
        if unit == "%":
            to(bar.total or 0)  # done, even when the service reported no progress on the way
    finally:
        bar.close()


def fraction_progress(bar: Any) -> Callable[[float, str], None]:
    """A service's ``progress(fraction, message)`` callback drawing on ``bar`` (total 1.0)."""
    return lambda fraction, message="": bar.to(max(0.0, min(1.0, float(fraction))), str(message))


def jsonable(value: Any) -> Any:
    """Paths and datetimes as strings, tuples as lists, recursively (what ``json.dumps`` needs)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; "not defined" is what it means here
    return value


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are the user's to fix (the pages show them as a popup)."""
    from studio.errors import StudioError
    from studio.store.db import StoreError

    return (CommandError, StudioError, StoreError, ValueError, FileNotFoundError, NotADirectoryError)


def run_command(command: Command, args: argparse.Namespace) -> int:
    """Run ``command`` and print its outcome; the exit code (see the module docstring)."""
    try:
        outcome = command(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not isinstance(exc, user_errors()):
            traceback.print_exc()
            print(f"{PROG}: internal error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
            return EXIT_INTERNAL
        outcome = Outcome({"error": str(exc) or exc.__class__.__name__}, "", EXIT_USER, str(exc))
    _print(outcome, args)
    return outcome.code


def _print(outcome: Outcome, args: argparse.Namespace) -> None:
    if getattr(args, "json", False):
        doc = outcome.doc
        if outcome.error is not None and isinstance(doc, dict) and "error" not in doc:
            doc = {**doc, "error": outcome.error}
        print(json.dumps(jsonable(doc), indent=2, allow_nan=False, default=str))
    elif outcome.text:
        print(outcome.text)
    if outcome.error is not None:
        print(f"{PROG}: error: {outcome.error}", file=sys.stderr)
