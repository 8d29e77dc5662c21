"""The Export tab's history: one ``Export`` row per model export or Roboflow deploy, the table the
page shows, and deletion.

Why rows are written before the work starts (``running``) and updated after: an export takes minutes
and can fail halfway; the row then says what failed (a one-line reason, never traceback text), and
the history shows every attempt, not only the ones that worked.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from studio.errors import StudioError
from studio.store import ProjectStore
from studio.store.models import Export, Run

FORMATS = {
    "onnx": "ONNX (onnxruntime)",
    "tflite_fp32": "TFLite FP32",
    "tflite_fp16": "TFLite FP16",
    "tflite_int8": "TFLite INT8",
    "roboflow": "Roboflow bundle (weights.pt + class_names.txt)",
}
DEPLOY_KIND = "roboflow_deploy"
EXPORTS_DIR = "exports"
TABLE_HEADERS = [
    "id",
    "date",
    "run",
    "format",
    "status",
    "PyTorch mAP",
    "exported mAP",
    "PyTorch ms",
    "exported ms",
    "size MB",
    "zip",
]


@dataclass
class ExportRow:
    """One line of the export history."""

    id: int
    run_id: int | None
    run_name: str
    kind: str
    status: str
    path: Path
    details: dict[str, Any]
    error: str | None
    created_at: datetime

    @property
    def format_label(self) -> str:
        if self.kind == DEPLOY_KIND:
            d = self.details
            return f"Roboflow deploy → {d.get('workspace')}/{d.get('project')} v{d.get('version')}"
        return FORMATS.get(self.kind, self.kind)

    @property
    def zip_path(self) -> Path | None:
        rel = self.details.get("zip")
        return self.path.parent / Path(rel).name if rel else None


def new_row(store: ProjectStore, run_id: int, kind: str, details: dict[str, Any]) -> int:
    """A ``running`` row for an export or deploy that is about to start; returns its id."""
    with store.session() as s:
        row = Export(run_id=int(run_id), kind=kind, path="", status="running", details=details)
        s.add(row)
        s.flush()
        return row.id


def update_row(store: ProjectStore, export_id: int, **values: Any) -> None:
    with store.session() as s:
        row = s.get(Export, export_id)
        if row is not None:
            for key, value in values.items():
                setattr(row, key, value)


def readable_error(exc: BaseException) -> str:
    """One or two lines for a person: the error's first line and, for tool output, its last."""
    if isinstance(exc, StudioError):
        return str(exc)
    skip = ("Traceback", "File ", "^", "During handling", "The above exception")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith(skip)]
    if not lines:
        return type(exc).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"
    if type(exc).__name__ not in text and not isinstance(exc, RuntimeError):
        text = f"{type(exc).__name__}: {text}"
    return text[:600]


def list_exports(store: ProjectStore) -> list[ExportRow]:
    """Model exports and deploys of this project, newest first."""
    kinds = [*FORMATS, DEPLOY_KIND]
    with store.session(readonly=True) as s:
        rows = list(s.scalars(select(Export).where(Export.kind.in_(kinds)).order_by(Export.id.desc())))
        run_names = dict(s.execute(select(Run.id, Run.name)).all())
    return [
        ExportRow(
            r.id,
            r.run_id,
            run_names.get(r.run_id, (r.details or {}).get("run") or "(deleted run)"),
            r.kind,
            r.status,
            store.path / r.path if r.path else store.path,
            dict(r.details or {}),
            r.error,
            r.created_at,
        )
        for r in rows
    ]


def find_export(store: ProjectStore, export_id: int) -> ExportRow | None:
    return next((r for r in list_exports(store) if r.id == int(export_id)), None)


def _num(value: Any, digits: int) -> Any:
    return round(float(value), digits) if isinstance(value, (int, float)) else ""


def export_table(store: ProjectStore) -> list[list]:
    """Rows for a ``gr.Dataframe`` with :data:`TABLE_HEADERS` columns."""
    out = []
    for row in list_exports(store):
        d = row.details
        zip_path = row.zip_path
        out.append(
            [
                row.id,
                row.created_at.strftime("%Y-%m-%d %H:%M"),
                row.run_name,
                row.format_label,
                row.status,
                _num(d.get("map_pytorch"), 3),
                _num(d.get("map_exported"), 3),
                _num(d.get("latency_pytorch_ms"), 1),
                _num(d.get("latency_exported_ms"), 1),
                _num(d.get("size_mb"), 1),
                str(zip_path) if zip_path and zip_path.is_file() else "",
            ]
        )
    return out


@dataclass(frozen=True)
class HistoryView:
    """The history table and the export picker's choices (newest selected) for the page."""

    table: list[list]
    choices: list[tuple[str, int]]

    @property
    def selected(self) -> int | None:
        return self.choices[0][1] if self.choices else None


def history_view(store: ProjectStore) -> HistoryView:
    table = export_table(store)
    return HistoryView(table, [(f"#{r[0]} {r[3]} · run {r[2]} · {r[4]}", r[0]) for r in table])


def delete_export(store: ProjectStore, export_id: int) -> None:
    """Delete an export's row, its folder and its zip (files outside ``exports/`` are never touched)."""
    with store.session() as s:
        row = s.get(Export, int(export_id))
        if row is None:
            raise StudioError(f"Export {export_id} does not exist.")
        rel = row.path
        s.delete(row)
    root = (store.path / EXPORTS_DIR).resolve()
    folder = (store.path / rel).resolve() if rel else None
    if folder is not None and folder.is_relative_to(root) and folder != root:
        shutil.rmtree(folder, ignore_errors=True)
        folder.with_suffix(".zip").unlink(missing_ok=True)


__all__ = [
    "DEPLOY_KIND",
    "EXPORTS_DIR",
    "FORMATS",
    "TABLE_HEADERS",
    "ExportRow",
    "delete_export",
    "export_table",
    "find_export",
    "HistoryView",
    "history_view",
    "list_exports",
    "new_row",
    "readable_error",
    "update_row",
]
