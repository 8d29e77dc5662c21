"""``rfdetr-studio import`` and ``export``: the Data page's importer and dataset export services."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from studio.commands.common import (
    EXIT_USER,
    Outcome,
    add_common,
    fraction_progress,
    progress_bar,
    project_store,
)

NAMES = ("import", "export")
FORMATS = ("coco", "yolo", "voc")


def add_parsers(sub: Any) -> None:
    imp = sub.add_parser("import", help="import a dataset (folder, .zip, COCO .json, YOLO .yaml, images)")
    imp.add_argument("project", help="folder name (slug) or display name")
    imp.add_argument("source", type=Path, help="dataset folder or file on this machine")
    add_common(imp)
    imp.set_defaults(handler=run_import)
    exp = sub.add_parser("export", help="the project's labels and images as a COCO / YOLO zip")
    exp.add_argument("project", help="folder name (slug) or display name")
    exp.add_argument("--format", required=True, choices=FORMATS, help="dataset format")
    exp.add_argument(
        "out", type=Path, help="the zip to write (or a folder to write <project>-<format>.zip in)"
    )
    add_common(exp)
    exp.set_defaults(handler=run_export)


def _report_text(doc: dict[str, Any]) -> str:
    counts = ", ".join(f"{v} {k}" for k, v in sorted(doc.get("counts", {}).items()))
    lines = [f"Imported {doc.get('format')} from {doc.get('source')}: {counts or 'nothing'}"]
    if doc.get("note"):
        lines.append(str(doc["note"]))
    for problem in doc.get("problems", [])[:20]:
        lines.append(f"  {problem['severity']}: {problem['file']}: {problem['reason']}")
    if doc.get("problems_total", 0) > 20:
        lines.append(f"  ... {doc['problems_total']} problems in all (--json lists them)")
    return "\n".join(lines)


def run_import(args: argparse.Namespace) -> Outcome:
    from studio.services.data.importing.importer import import_dataset
    from studio.services.data.importing.report import ImportAborted

    with project_store(args) as store, progress_bar("import", 1.0) as bar:
        try:
            report = import_dataset(store, args.source, progress=fraction_progress(bar))
        except ImportAborted as exc:
            doc = exc.report.to_dict() if exc.report is not None else {}
            return Outcome(doc, _report_text(doc) if doc else "", EXIT_USER, str(exc))
    doc = report.to_dict()
    return Outcome(doc, _report_text(doc))


def _export(store: Any, fmt: str, out: Path, progress: Any) -> Path:
    """The Data page's zip export for ``fmt``, with ``progress`` when the service reports it (a
    streaming export does)."""
    from studio.services.data.dataset_export import export_zip
    from studio.services.data.voc_export import export_voc_zip

    fn, args = (export_voc_zip, (store, out)) if fmt == "voc" else (export_zip, (store, fmt, out))
    extra = {"progress": progress} if "progress" in inspect.signature(fn).parameters else {}
    return Path(fn(*args, **extra))


def run_export(args: argparse.Namespace) -> Outcome:
    with project_store(args) as store:
        out = Path(args.out).expanduser()
        if out.is_dir():
            out = out / f"{store.path.name}-{args.format}.zip"
        elif out.suffix.lower() != ".zip":
            out = out.with_name(out.name + ".zip")
        with progress_bar(f"export {args.format}", 1.0) as bar:
            path = _export(store, args.format, out, fraction_progress(bar)).resolve()
    doc = {"project": store.path.name, "format": args.format, "path": path, "bytes": path.stat().st_size}
    return Outcome(doc, f"Wrote {path} ({doc['bytes'] / 2**20:.1f} MB)")
