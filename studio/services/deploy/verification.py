"""What the Export tab shows of a verification report: the figures stored on the history row, the
summary in words (zip README, progress), and the side-by-side HTML of the result panel.

Why the row keeps its own copy of the figures (``details``) instead of the report: the history table
and the result panel must still show an export after its folder was deleted or moved, and they need
a dozen numbers, not the whole report.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from rfdetr_core.export.report import BundleReport, VerificationReport
from studio.store import ProjectStore

Report = VerificationReport | BundleReport


def _map_and_latency(report: Report) -> dict[str, Any]:
    mp, lat = report.map, report.latency_ms
    return {
        "map_pytorch": mp.pytorch.map50_95 if mp else None,
        "map_exported": mp.artefact.map50_95 if mp else None,
        "map50_pytorch": mp.pytorch.map50 if mp else None,
        "map50_exported": mp.artefact.map50 if mp else None,
        "map_images": mp.images if mp else None,
        "latency_pytorch_ms": lat.pytorch if lat else None,
        "latency_exported_ms": lat.artefact if lat else None,
        "latency_ratio": lat.ratio if lat else None,
    }


def row_details(
    report: Report,
    fmt: str,
    run_name: str,
    seconds: dict[str, float],
    files: list[Path],
    zip_path: Path,
    store: ProjectStore,
) -> dict[str, Any]:
    """The key figures of a verification report, as stored on the row (and shown by the table)."""
    if isinstance(report, VerificationReport):
        diff: float = max(report.max_abs_diff.boxes, report.max_abs_diff.logits)
        matched, compared, warnings = report.detections.matched, report.detections.compared, report.warnings
    else:
        diff, matched, compared, warnings = report.max_abs_diff, None, None, []
    return {
        "format": fmt,
        "run": run_name,
        "verification": report.status,
        "failures": report.failures,
        "warnings": warnings,
        "max_abs_diff": diff,
        "detections_matched": matched,
        "detections_compared": compared,
        **_map_and_latency(report),
        "export_seconds": seconds["export_s"],
        "verify_seconds": seconds["verify_s"],
        "images": report.images,
        "model_files": [str(p.relative_to(store.path)) for p in files],
        "zip": str(zip_path.relative_to(store.path)),
    }


def summary(report: Report) -> str:
    """The verification in words (the core's summary; for the bundle, the reload check and mAP)."""
    if isinstance(report, VerificationReport):
        from rfdetr_core.export import summarise

        return summarise(report)
    lines = [
        f"Verification {report.status.upper()} for the Roboflow bundle: reloaded weights.pt, "
        f"max |diff| {report.max_abs_diff:.2e} on {report.images} images"
    ]
    if report.map:
        m = report.map
        lines.append(f"  mAP@50:95 run model {m.pytorch.map50_95:.3f} vs bundle {m.artefact.map50_95:.3f}")
    return "\n".join(lines + [f"  FAILED: {f}" for f in report.failures])


def _num(value: Any, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _extra(details: dict[str, Any]) -> list[str]:
    extra = []
    if details.get("map_images"):
        extra.append(f"mAP on {details['map_images']} validation images")
    if details.get("detections_matched") is not None:
        extra.append(
            f"top detections matched {details['detections_matched']}/{details.get('detections_compared')}"
        )
    if details.get("max_abs_diff") is not None:
        extra.append(f"max |Δ| {details['max_abs_diff']:.2e}")
    if details.get("size_mb") is not None:
        extra.append(f"{details['size_mb']:.1f} MB")
    if details.get("export_seconds") is not None:
        extra.append(f"exported in {details['export_seconds']:.1f} s")
    return extra


def result_html(details: dict[str, Any], status: str, error: str | None) -> str:
    """The verification side by side: what the user needs to trust (or not) the exported file."""
    if status == "done":
        head = "<div class='export-verdict ok'>✔ Verified: the exported model reproduces the PyTorch model.</div>"
    else:
        why = error or "; ".join(details.get("failures") or []) or status
        head = (
            f"<div class='export-verdict bad'>✖ {html.escape(why)} — the zip holds the full report; "
            f"do not deploy it without reading it.</div>"
        )
    rows = [
        ("mAP@50:95", _num(details.get("map_pytorch"), ".4f"), _num(details.get("map_exported"), ".4f")),
        ("mAP@50", _num(details.get("map50_pytorch"), ".4f"), _num(details.get("map50_exported"), ".4f")),
        (
            "median latency (ms)",
            _num(details.get("latency_pytorch_ms"), ".1f"),
            _num(details.get("latency_exported_ms"), ".1f"),
        ),
    ]
    body = "".join(f"<tr><td>{name}</td><td>{a}</td><td>{b}</td></tr>" for name, a, b in rows)
    warn = "".join(f"<li>{html.escape(str(w), quote=False)}</li>" for w in details.get("warnings") or [])
    return (
        f"{head}<table class='export-compare'><tr><th></th><th>PyTorch</th><th>exported</th></tr>{body}</table>"
        f"<div class='export-extra'>{' · '.join(_extra(details))}</div>"
        + (f"<ul>{warn}</ul>" if warn else "")
    )


__all__ = ["Report", "result_html", "row_details", "summary"]
