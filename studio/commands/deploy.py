"""``rfdetr-studio export-model``: the Export page's verified export of a run, copied to ``OUT``.

The export is the page's own (:func:`studio.services.deploy.model_export.export_run`): written, verified
on the run's validation split and zipped under the project's ``exports/`` folder, where the Export page
lists it; the zip is then copied to ``OUT``. A failed verification still writes the zip (its report says
why), and the command exits 1 with the reasons.
"""

from __future__ import annotations

import argparse
import shutil
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

NAMES = ("export-model",)
#: command-line format -> the export service's format key
FORMATS = {
    "onnx": "onnx",
    "tflite-fp32": "tflite_fp32",
    "tflite-fp16": "tflite_fp16",
    "tflite-int8": "tflite_int8",
    "bundle": "roboflow",
}


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("export-model", help="export a run's best checkpoint (verified) as a deployable zip")
    p.add_argument("project", help="folder name (slug) or display name")
    p.add_argument("--run", type=int, required=True, help="run id (see `runs`)")
    p.add_argument("--format", required=True, choices=tuple(FORMATS), help="model format")
    p.add_argument("out", type=Path, help="the zip to write (or a folder to copy the export's zip into)")
    p.add_argument(
        "--verify-images", type=int, default=16, help="validation images to verify on (default 16)"
    )
    add_common(p)
    p.set_defaults(handler=run_export_model)


def _copy(zip_path: Path, out: Path) -> Path:
    out = Path(out).expanduser()
    target = out / zip_path.name if out.is_dir() else out
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(zip_path, target)
    return target.resolve()


def run_export_model(args: argparse.Namespace) -> Outcome:
    from studio.services.deploy.model_export import export_run

    with project_store(args) as store:
        with progress_bar(f"export {args.format}", 1.0) as bar:
            result = export_run(
                store,
                args.run,
                FORMATS[args.format],
                fraction_progress(bar),
                max_verify_images=args.verify_images,
            )
        path = _copy(result.zip_path, args.out)
    doc = {
        "export_id": result.export_id,
        "run_id": result.run_id,
        "format": args.format,
        "status": result.status,
        "path": path,
        "bytes": path.stat().st_size,
        "project_zip": result.zip_path,
        "model_files": [p.name for p in result.model_files],
        "details": result.details,
        "summary": result.summary,
        "error": result.error,
    }
    text = f"{result.summary}\nWrote {path}"
    if result.status != "done":
        return Outcome(doc, text, EXIT_USER, f"verification failed: {result.error or result.summary}")
    return Outcome(doc, text)
