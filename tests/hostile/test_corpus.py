"""Every case of the hostile corpus imported into a real project.

For each case: the import ends in the expected report or a clear abort (asserted on the message);
nothing is written outside the project folder (the extraction temp folder is inside the test folder
and must be empty afterwards; every other file there is unchanged); a fatal case leaves the project
folder byte-identical (every file hashed before and after); a finished case leaves only image files
that rows reference, and a report that stays small however many problems the input had.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from studio.services.data.importing.importer import ImportAborted, import_dataset
from studio.services.data.importing.limits import MAX_PROBLEMS_KEPT
from studio.store import Image, ImportRecord, ProjectStore
from tests.hostile.corpus import CASES, Case, base_dataset

MAX_MARKDOWN_CHARS = 250_000
MAX_STORED_REPORT_BYTES = 1_000_000
MAX_MESSAGE_CHARS = 2_000


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project that already holds one import (so "unchanged" and "already present" are real)."""
    d = tmp_path_factory.mktemp("template")
    with ProjectStore.create(d / "proj", "Hostile") as store:
        import_dataset(store, base_dataset(d))
    return d / "proj"


def tree(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every entry under ``root`` -> content hash (files), 'dir', or its kind; never opens a pipe."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath) == skip.parent:
            dirnames[:] = [n for n in dirnames if Path(dirpath) / n != skip]
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            mode = os.lstat(p).st_mode
            key = str(p.relative_to(root))
            if stat.S_ISREG(mode):
                out[key] = (
                    hashlib.sha256(p.read_bytes()).hexdigest() if name.endswith("-shm") is False else "shm"
                )
            elif stat.S_ISLNK(mode):
                out[key] = "link:" + os.readlink(p)
            else:
                out[key] = "dir" if stat.S_ISDIR(mode) else f"mode:{stat.S_IFMT(mode)}"
    return out


def _run(case: Case, store: ProjectStore, source: Path) -> tuple[object, str]:
    if case.fatal:
        with pytest.raises(ImportAborted) as info:
            import_dataset(store, source)
        message = str(info.value)
        assert re.search(case.fatal, message), message
        assert info.value.report is not None and info.value.report.fatal
        return info.value.report, message
    report = import_dataset(store, source)
    return report, report.summary()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "proj"
    shutil.copytree(template, project, symlinks=True)
    (tmp_path / "input").mkdir()
    source = case.build(tmp_path / "input")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # zip extraction lands under the test folder
    outside_before, project_before = tree(tmp_path, skip=project), tree(project)

    with ProjectStore.open(project) as store:
        report, message = _run(case, store, source)
        assert len(message) <= MAX_MESSAGE_CHARS
        markdown = report.to_markdown()
        assert len(markdown) <= MAX_MARKDOWN_CHARS and "<img" not in markdown
        if case.fatal:
            assert "Import aborted" in markdown
        else:
            _check_finished(case, store, report)

    assert not any(scratch.iterdir()), "the extraction folder was not cleaned up"
    assert tree(tmp_path, skip=project) == outside_before, "something was written outside the project"
    if case.fatal:
        assert _without_shm(tree(project)) == _without_shm(project_before)


def _without_shm(t: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in t.items() if not k.endswith("-shm")}


def _check_finished(case: Case, store: ProjectStore, report) -> None:
    texts = [p.reason for p in report.problems] + [report.note or ""]
    if case.problem:
        assert any(re.search(case.problem, t) for t in texts), texts[:20]
    if case.imported is not None:
        assert report.counts["images_imported"] == case.imported, texts[:20]
    assert len(report.problems) <= MAX_PROBLEMS_KEPT + 1
    with store.session(readonly=True) as s:
        referenced = set(s.scalars(select(Image.file_name)))
        stored = s.scalars(select(ImportRecord.report).order_by(ImportRecord.id.desc())).first()
    assert len(json.dumps(stored)) <= MAX_STORED_REPORT_BYTES
    on_disk = {f"images/{p.name}" for p in store.images_dir.iterdir()}
    assert on_disk == referenced, "an image file no row references, or a row without its file"
