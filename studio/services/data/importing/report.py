"""The import report.

Why: an import returns (or, when aborted, carries) an :class:`ImportReport` listing each skipped item
with its file and reason, so the user sees what was lost and why instead of a traceback.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from studio.errors import StudioError

MAX_PROBLEMS_IN_MARKDOWN = 200


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

    def add(self, file: object, reason: str, severity: str = "error") -> None:
        self.problems.append(Problem(str(file), reason, severity))

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    @property
    def ok(self) -> bool:
        return self.fatal is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "counts": dict(self.counts),
            "problems": [asdict(p) for p in self.problems],
            "fatal": self.fatal,
            "timings": dict(self.timings),
        }

    def summary(self) -> str:
        c = self.counts
        return (
            f"{c['images_imported']} images and {c['boxes_imported']} boxes imported; "
            f"{c['images_skipped']} images and {c['boxes_skipped']} boxes skipped; "
            f"{len(self.problems)} problems"
        )

    def to_markdown(self) -> str:
        """Readable report for the UI: status line, counts table, problems table (truncated)."""
        head = f"**Import aborted:** {self.fatal}" if self.fatal else "**Import finished.** " + self.summary()
        lines = [
            head,
            "",
            f"Source: `{self.source}` — format: **{self.format}**",
            "",
            "| count | value |",
            "|---|---|",
        ]
        lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in sorted(self.counts.items())]
        if self.problems:
            lines += [
                "",
                f"### Problems ({len(self.problems)})",
                "",
                "| severity | file | reason |",
                "|---|---|---|",
            ]
            for p in self.problems[:MAX_PROBLEMS_IN_MARKDOWN]:
                lines.append(f"| {p.severity} | `{_md(p.file)}` | {_md(p.reason)} |")
            if len(self.problems) > MAX_PROBLEMS_IN_MARKDOWN:
                lines.append(f"| | | … and {len(self.problems) - MAX_PROBLEMS_IN_MARKDOWN} more |")
        return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class ImportAborted(StudioError):
    """A fatal problem: nothing was imported and the project is exactly as before."""

    def __init__(self, message: str, report: ImportReport | None = None) -> None:
        super().__init__(message)
        self.report = report


__all__ = ["ImportAborted", "ImportReport", "Problem"]
