"""``studio.housekeeping``: pruning the studio's temporary folders by age and size, on real files with
their modification times set (the clock is a parameter, so no test waits)."""

from __future__ import annotations

import os
from pathlib import Path

from studio.housekeeping import CleanupPolicy, Janitor, clean_temp_dir, export_temp_dir, temp_root

NOW = 2_000_000_000.0
HOUR = 3600.0


def _entry(folder: Path, name: str, size: int, age_s: float, nested: bool = True) -> Path:
    """An upload-like entry: ``<hash>/<file>`` (Gradio's layout) or a bare file, ``age_s`` old."""
    target = folder / name / "file.bin" if nested else folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"x" * size)
    for path in [target, target.parent] if nested else [target]:
        os.utime(path, (NOW - age_s, NOW - age_s))
    return folder / name


def test_old_entries_go_fresh_ones_stay(tmp_path: Path) -> None:
    old = _entry(tmp_path, "old", 10, 25 * HOUR)
    old_file = _entry(tmp_path, "old.zip", 10, 30 * HOUR, nested=False)
    recent = _entry(tmp_path, "recent", 10, 2 * HOUR)
    report = clean_temp_dir(tmp_path, CleanupPolicy(max_age_s=24 * HOUR), now=NOW)
    assert not old.exists() and not old_file.exists() and recent.exists()
    assert (report.removed, report.freed_bytes, report.kept, report.kept_bytes) == (2, 20, 1, 10)


def test_size_cap_removes_oldest_first_but_never_fresh(tmp_path: Path) -> None:
    a = _entry(tmp_path, "a", 400, 5 * HOUR)
    b = _entry(tmp_path, "b", 400, 4 * HOUR)
    c = _entry(tmp_path, "c", 400, 3 * HOUR)
    writing = _entry(tmp_path, "writing", 5000, 60)  # an upload in progress: younger than min_age_s
    policy = CleanupPolicy(max_age_s=24 * HOUR, max_total_bytes=5500, min_age_s=HOUR)
    report = clean_temp_dir(tmp_path, policy, now=NOW)
    assert not a.exists() and not b.exists() and c.exists() and writing.exists()
    assert report.removed == 2 and report.kept_bytes == 5400


def test_a_fresh_file_inside_an_old_folder_keeps_it(tmp_path: Path) -> None:
    folder = _entry(tmp_path, "mixed", 10, 48 * HOUR)
    fresh = folder / "new.bin"
    fresh.write_bytes(b"y")
    os.utime(fresh, (NOW - 60, NOW - 60))
    assert clean_temp_dir(tmp_path, CleanupPolicy(), now=NOW).removed == 0 and fresh.exists()


def test_links_are_removed_not_followed(tmp_path: Path) -> None:
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "data.txt").write_text("keep me")
    temp = tmp_path / "temp"
    temp.mkdir()
    link = temp / "link"
    os.symlink(keep, link)
    os.utime(link, (NOW - 48 * HOUR, NOW - 48 * HOUR), follow_symlinks=False)
    assert clean_temp_dir(temp, CleanupPolicy(), now=NOW).removed == 1
    assert not os.path.lexists(link) and (keep / "data.txt").read_text() == "keep me"


def test_missing_folder_and_janitor(tmp_path: Path) -> None:
    assert clean_temp_dir(tmp_path / "absent").removed == 0
    old = tmp_path / "old.zip"
    old.write_bytes(b"z")
    os.utime(old, (1.0, 1.0))  # 1970
    janitor = Janitor([tmp_path, tmp_path / "absent"], interval_s=3600).start()  # cleans at once
    janitor.stop()
    assert not old.exists()


def test_own_temp_folders() -> None:
    assert temp_root().name.startswith("rfdetr-studio-")
    assert export_temp_dir().is_dir() and export_temp_dir().parent == temp_root()
