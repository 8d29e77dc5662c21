"""``python launch.py`` / ``rfdetr-studio``: start the studio web app and open it in the browser.

``rfdetr-studio <command>`` runs one action headless instead (``projects``, ``import``, ``export``,
``train``, ``runs``, ``review``, ``export-model``: :mod:`studio.commands`, documented in ``docs/cli.md``).

Why the order of things below: the login rule is checked before anything heavy is imported, so a
refused start is instant; Gradio (~2 s to import) is imported only after the arguments are valid;
torch and fiftyone are never imported at start-up (pages import them when first used). The demo
project is created before the server starts so the first page load already shows it.

The server answers only its own host names and origins, serves only project images from the projects
folder and throttles login guesses (:mod:`studio.security`); its temporary files are pruned on start and
hourly (:mod:`studio.housekeeping`). The password is best given through ``$STUDIO_PASSWORD`` or the
prompt: a ``--password`` value is visible to every user of the machine in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import logging
import os
import re
import signal
import sys
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
USERNAME_ENV = "STUDIO_USERNAME"
PASSWORD_ENV = "STUDIO_PASSWORD"
PROJECTS_DIR_ENV = "STUDIO_PROJECTS_DIR"
LOG_LEVEL_ENV = "STUDIO_LOG_LEVEL"  # e.g. INFO: the studio's own log lines (page refreshes) on stderr
DEFAULT_MAX_UPLOAD = "20gb"  # a whole COCO train2017 zip (18 GB) fits; a runaway upload cannot fill a disk
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}  # as Gradio's FileSize


class AuthRequired(SystemExit):
    """Raised when the server would be reachable from other machines without a login."""


def default_projects_dir() -> Path:
    """``projects/`` next to ``launch.py`` in a source checkout, else ``./projects``."""
    if os.environ.get(PROJECTS_DIR_ENV):
        return Path(os.environ[PROJECTS_DIR_ENV])
    repo = Path(__file__).resolve().parents[1]
    return repo / "projects" if (repo / "launch.py").is_file() else Path.cwd() / "projects"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rfdetr-studio", description="RF-DETR Studio: label, train, review, export."
    )
    p.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default 7860)")
    p.add_argument("--projects-dir", type=Path, default=None, help="where projects live (default ./projects)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    p.add_argument("--no-demo", action="store_true", help="do not create the demo project on first start")
    p.add_argument("--username", default=None, help=f"login name (or ${USERNAME_ENV}); required off loopback")
    p.add_argument(
        "--password",
        default=None,
        help=f"login password; prefer ${PASSWORD_ENV} or the prompt shown when only a username is given "
        "(a value given here is visible to other users in the process list)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME[:PORT]",
        help="also answer requests for this host name (repeatable), e.g. a reverse proxy's name; "
        "localhost, 127.0.0.1, [::1] and the --host address are always answered",
    )
    p.add_argument(
        "--max-upload-size",
        default=DEFAULT_MAX_UPLOAD,
        type=parse_size,
        metavar="SIZE",
        help=f"largest file one upload may be, e.g. 500mb, 20gb (default {DEFAULT_MAX_UPLOAD})",
    )
    from studio.commands import add_subcommands  # light: the commands import services when they run

    add_subcommands(p)
    return p


def parse_size(text: str) -> int:
    """``"20gb"`` → bytes (binary units, as Gradio's ``max_file_size``); argparse-friendly errors."""
    m = re.fullmatch(r"\s*(\d+)\s*(b|kb|mb|gb|tb)?\s*", text.lower())
    if m is None or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 500mb or 20gb")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2) or "b"]


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, 'localhost')."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so treat it as exposed


def resolve_auth(
    host: str,
    username: str | None,
    password: str | None,
    prompt: Callable[[str], str] | None = None,
) -> tuple[str, str] | None:
    """The (username, password) Gradio should ask for, or ``None`` on loopback without credentials.

    A username without a password is completed by ``prompt`` (``getpass`` on a terminal), so the password
    never has to appear on the command line. Binding to any other address without a login would hand
    the projects (and the machine's disk via imports) to the network, so that start is refused with
    :class:`AuthRequired`.
    """
    username = username or os.environ.get(USERNAME_ENV) or None
    password = password or os.environ.get(PASSWORD_ENV) or None
    if username and not password and prompt is not None:
        password = prompt(f"Password for {username}: ") or None
    if username and password:
        return (username, password)
    if is_loopback(host):
        if username or password:
            raise AuthRequired("Give both a username and a password, or neither.")
        return None
    raise AuthRequired(
        f"Refusing to listen on {host}: other machines could reach the studio without a login.\n"
        f"Set a login with --username and ${PASSWORD_ENV} (or the password prompt), or the "
        f"{USERNAME_ENV}/{PASSWORD_ENV} environment variables, or bind to {DEFAULT_HOST}."
    )


def display_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def prepare_projects(root: Path, with_demo: bool = True) -> str | None:
    """Create the projects folder (and the demo project on first start). Returns the demo slug."""
    root.mkdir(parents=True, exist_ok=True)
    if not with_demo:
        return None
    from studio.services.projects.demo import ensure_demo_project

    slug = ensure_demo_project(root)
    if slug:
        print(f"Created the demo project '{slug}' in {root}", flush=True)
    return slug


def _password_prompt() -> Callable[[str], str] | None:
    """``getpass`` when someone can type at a terminal, else None (a service cannot answer a prompt)."""
    return getpass.getpass if sys.stdin is not None and sys.stdin.isatty() else None


def _temp_folders() -> list[Path]:
    """Point Gradio's uploads at the studio's own temp folder (unless the user chose one) and return the
    folders the janitor may prune: a ``GRADIO_TEMP_DIR`` set by the user may be shared, so it is not."""
    from studio.housekeeping import export_temp_dir, gradio_temp_dir

    folders = [export_temp_dir()]
    if not os.environ.get("GRADIO_TEMP_DIR"):
        os.environ["GRADIO_TEMP_DIR"] = str(gradio_temp_dir())
        folders.append(gradio_temp_dir())
    return folders


def _server_options(args: argparse.Namespace, root: Path, auth: tuple[str, str] | None) -> dict[str, Any]:
    """``Blocks.launch`` arguments for the network side: the guard, the upload limit, the login."""
    from studio.security import FilePolicy, HostPolicy, LoginThrottle, guard_lifespan

    hosts = HostPolicy(args.host, tuple(args.allowed_host))
    lifespan = guard_lifespan(hosts, FilePolicy(root), LoginThrottle() if auth else None)
    return {
        "server_name": args.host,
        "server_port": args.port,
        "auth": auth,
        # the Export page hands over zips under the projects folder; Gradio copies them into its cache
        # (served from there), the guard still refuses every non-image URL under this folder
        "allowed_paths": [str(root)],
        "max_file_size": args.max_upload_size,
        "app_kwargs": {"lifespan": lifespan},
    }


def configure_logging() -> None:
    """``$STUDIO_LOG_LEVEL`` (e.g. ``INFO``) shows the studio's own log lines on stderr: which page
    refreshed for which project and why (tests count them). Unset, logging is left as Python's default
    (warnings and errors only), and other libraries' loggers are never touched."""
    level = os.environ.get(LOG_LEVEL_ENV, "").strip().upper()
    if not level:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    studio_log = logging.getLogger("studio")
    studio_log.addHandler(handler)
    studio_log.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    if args.command is not None:  # a headless command (docs/cli.md), not the app
        from studio.commands import run_command

        return run_command(args.handler, args)
    if args.password:
        print(
            f"rfdetr-studio: warning: a --password value is visible to other users in the process list; "
            f"use ${PASSWORD_ENV} or leave it out to be asked.",
            file=sys.stderr,
        )
    try:
        auth = resolve_auth(args.host, args.username, args.password, _password_prompt())
    except AuthRequired as exc:
        print(f"rfdetr-studio: {exc.code}", file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from a local tool
    root = (args.projects_dir or default_projects_dir()).expanduser().resolve()
    # Sequential on purpose: making the demo in a thread while Gradio imports measured no faster on
    # 2 busy cores (bench/cold_start.py), and one thread keeps start-up errors simple.
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"rfdetr-studio: cannot use projects folder {root}: {exc}", file=sys.stderr)
        return 1
    try:
        prepare_projects(root, with_demo=not args.no_demo)
    except Exception as exc:
        print(f"rfdetr-studio: warning: the demo project could not be created: {exc}", file=sys.stderr)
    from studio.housekeeping import Janitor

    janitor = Janitor(_temp_folders()).start()  # before Gradio is imported: it reads GRADIO_TEMP_DIR
    try:
        return _serve(args, root, auth)
    finally:
        janitor.stop()


def _serve(args: argparse.Namespace, root: Path, auth: tuple[str, str] | None) -> int:
    from studio.app import build_app, launch_kwargs
    from studio.security import is_guarded

    app = build_app(root)
    try:
        app.launch(
            prevent_thread_lock=True, quiet=True, **_server_options(args, root, auth), **launch_kwargs()
        )
    except OSError as exc:
        print(f"rfdetr-studio: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    if not is_guarded(app.server_app):  # never serve without the Host/Origin/file guard
        app.close()
        print("rfdetr-studio: internal error: the request guard is not installed", file=sys.stderr)
        return 1
    url = display_url(args.host, args.port)
    print(f"RF-DETR Studio is running at {url}  (projects in {root}; Ctrl+C to stop)", flush=True)
    if not args.no_browser:
        webbrowser.open(url)
    # SIGTERM (a service manager, the test harness) ends like Ctrl+C, so exit handlers run — e.g. the
    # FiftyOne App server started from the Review page is stopped instead of being left behind.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app.block_thread()
    except KeyboardInterrupt:
        pass
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
