"""``rfdetr-studio <command>``: the studio's long or scriptable actions from a terminal (issue 21 §3).

Why a package of its own: each command is a thin layer over the same service function the page calls
(no second implementation), with the terminal's conventions instead of Gradio's: progress bars (tqdm)
on stderr, ``--json`` output on stdout, exit codes a script can test (:mod:`.common`). The parser is
built without importing any service (they import SQLAlchemy, torch...), so ``rfdetr-studio --help``
and the bare ``rfdetr-studio`` (start the app) stay as fast as before; a command imports what it uses
when it runs. Every command and its JSON keys are documented in ``docs/cli.md``.
"""

from __future__ import annotations

import argparse

from studio.commands import data, deploy, projects, quality, review, train
from studio.commands.common import run_command

MODULES = (projects, data, train, review, deploy, quality)
COMMANDS = tuple(name for module in MODULES for name in module.NAMES)


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    """The subcommands under ``parser`` (``args.command`` is None when none is given: the app starts)."""
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands (without one, the app starts)"
    )
    for module in MODULES:
        module.add_parsers(sub)


__all__ = ["COMMANDS", "add_subcommands", "run_command"]
