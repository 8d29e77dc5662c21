"""Loose images with no labels: every image under the folder, to be labeled in the studio.

The split is taken from a folder name when there is an obvious one (``train/``, ``val/``, ``test/``),
otherwise left unassigned for the automatic split later.
"""

from __future__ import annotations

from pathlib import Path

from studio.services.data.importing.formats.common import (
    SPLIT_ALIASES,
    RawDataset,
    RawImage,
    list_files,
    rel,
    split_images,
)
from studio.services.data.importing.report import ImportReport


def read_loose(root: Path, report: ImportReport, files: list[Path] | None = None) -> RawDataset:
    ds = RawDataset(format="images")
    for p in split_images(files if files is not None else list_files(root), report, root):
        parts = [q.lower() for q in p.relative_to(root).parts[:-1]] if p.is_relative_to(root) else []
        split = next((SPLIT_ALIASES[q] for q in parts if q in SPLIT_ALIASES), None)
        ds.images.append(RawImage(path=p, name=rel(p, root), split=split, labeled=False, where=rel(p, root)))
    return ds
