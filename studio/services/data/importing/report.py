"""The import report.

Why: an import returns (or, when aborted, carries) an :class:`ImportReport` listing each skipped item
with its file and reason, so the user sees what was lost and why instead of a traceback. Every text in
it comes from files someone else made, so each row is clipped when it is added, only the first
:data:`~limits.MAX_PROBLEMS_KEPT` rows are kept (the rest are counted by severity), and the Markdown
escapes what it shows: a hostile dataset can neither blow up the stored report nor inject markup.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from studio.errors import StudioError
from studio.services.data.importing import limits
from studio.text import clip, md_text

MAX_PROBLEMS_IN_MARKDOWN = 200
LIMITS_LINE = (
    f"Limits: {limits.size_text(limits.MAX_IMAGE_BYTES)} and {limits.MAX_PIXELS:,} pixels per image, "
    f"{limits.MAX_BOXES_PER_IMAGE:,} boxes per image, class names up to {limits.MAX_CLASS_NAME_CHARS} "
    f"characters, {limits.MAX_CLASSES:,} classes, zips up to {limits.size_text(limits.MAX_ZIP_TOTAL_BYTES)} "
    f"expanded; the first {limits.MAX_PROBLEMS_KEPT:,} problems are kept."
)


@dataclass
class Problem:
    """One thing wrong in the input. ``severity``: 'fatal' aborts, 'error' skips the item, 'warning'
    means the item was fixed (e.g. a box clipped to the image) and kept."""

    file: str
    reason: str
    severity: str = "error"


@dataclass
class ImportReport:
    source: str
    format: str = "unknown"
    counts: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    fatal: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase (read, images, database)
    dropped: Counter = field(default_factory=Counter)  # problems counted but not kept, by severity
    note: str | None = None  # a headline that is neither success nor abort ("nothing new")
    frame_times: dict[str, float] = field(default_factory=dict)  # video import: frame name -> seconds
    settings: dict[str, str] = field(default_factory=dict)  # options the import ran with (video sampling)

    def add(self, file: object, reason: str, severity: str = "error") -> None:
        if severity != "fatal" and len(self.problems) >= limits.MAX_PROBLEMS_KEPT:
            self.dropped[severity] += 1
            return
        self.problems.append(
            Problem(clip(str(file), limits.MAX_WHERE_CHARS), clip(reason, limits.MAX_REASON_CHARS), severity)
        )

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    @property
    def ok(self) -> bool:
        return self.fatal is None

    @property
    def problems_total(self) -> int:
        return len(self.problems) + sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": clip(self.source, limits.MAX_WHERE_CHARS),
            "format": self.format,
            "counts": dict(self.counts),
            "problems": [asdict(p) for p in self.problems],
            "problems_total": self.problems_total,
            "problems_not_kept": dict(self.dropped),
            "fatal": self.fatal,
            "note": self.note,
            "timings": dict(self.timings),
            "limits": limits.as_dict(),
            **({"frame_times": dict(self.frame_times)} if self.frame_times else {}),
            **({"settings": dict(self.settings)} if self.settings else {}),
        }

    def summary(self) -> str:
        if self.note:
            return self.note
        c = self.counts
        return (
            f"{c['images_imported']} images and {c['boxes_imported']} boxes imported; "
            f"{c['images_skipped']} images and {c['boxes_skipped']} boxes skipped; "
            f"{self.problems_total} problems"
        )

    def to_markdown(self) -> str:
        """Readable report for the UI: status line, counts table, problems table (truncated)."""
        if self.fatal:
            head = f"**Import aborted:** {md_text(self.fatal)}"
        elif self.note:
            head = f"**Nothing new to import:** {md_text(self.note)}"
        else:
            head = "**Import finished.** " + md_text(self.summary())
        lines = [
            head,
            "",
            f"Source: {md_text(self.source, limits.MAX_WHERE_CHARS)} — format: **{md_text(self.format)}**",
            "",
            "| count | value |",
            "|---|---|",
        ]
        lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in sorted(self.counts.items())]
        if self.settings:
            lines += ["", "Settings: " + "; ".join(f"{k} {md_text(v)}" for k, v in self.settings.items())]
        if self.problems:
            lines += _problem_lines(self)
        lines += ["", LIMITS_LINE]
        return "\n".join(lines)


def _problem_lines(report: ImportReport) -> list[str]:
    lines = [
        "",
        f"### Problems ({report.problems_total})",
        "",
        "| severity | file | reason |",
        "|---|---|---|",
    ]
    shown = report.problems[:MAX_PROBLEMS_IN_MARKDOWN]
    lines += [f"| {p.severity} | {md_text(p.file)} | {md_text(p.reason)} |" for p in shown]
    more = report.problems_total - len(shown)
    if more > 0:
        lines.append(f"| | | … and {more:,} more |")
    if report.dropped:
        by = ", ".join(f"{n:,} {sev}s" for sev, n in sorted(report.dropped.items()))
        lines += [
            "",
            f"Only the first {limits.MAX_PROBLEMS_KEPT:,} problems are kept in the report; "
            f"{by} more were counted.",
        ]
    return lines


class ImportAborted(StudioError):
    """A fatal problem: nothing was imported and the project is exactly as before."""

    def __init__(self, message: str, report: ImportReport | None = None) -> None:
        super().__init__(message)
        self.report = report


__all__ = ["ImportAborted", "ImportReport", "Problem"]
