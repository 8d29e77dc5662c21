"""Extract an uploaded zip without trusting it.

Why: a zip is attacker-shaped input. Entries can name absolute paths or ``..`` to write outside the
target folder, carry symlinks that later reads would follow, or expand to terabytes (a zip bomb). We
check every entry *before* writing anything, then count the bytes actually produced while extracting
(header sizes can lie) and stop at the limits. Any violation refuses the whole archive.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from studio.errors import StudioError

MAX_TOTAL_BYTES = 20 * 1024**3  # 20 GiB uncompressed
MAX_ENTRIES = 500_000
MAX_RATIO = 200  # uncompressed / compressed, per entry larger than RATIO_MIN_BYTES
RATIO_MIN_BYTES = 16 * 1024**2


class UnsafeZip(StudioError):
    """The archive was refused; nothing was extracted (or what was extracted has been removed)."""


def _check_name(name: str) -> PurePosixPath:
    if "\\" in name:
        name = name.replace("\\", "/")
    p = PurePosixPath(name)
    if p.is_absolute() or (p.parts and p.parts[0].endswith(":")) or ".." in p.parts:
        raise UnsafeZip(f"zip entry '{name}' points outside the target folder; archive refused")
    return p


def _check_entries(zf: zipfile.ZipFile, max_total: int) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise UnsafeZip(f"zip has {len(infos):,} entries (limit {MAX_ENTRIES:,}); archive refused")
    total = 0
    for info in infos:
        _check_name(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeZip(f"zip entry '{info.filename}' is a symbolic link; archive refused")
        total += info.file_size
        big = info.file_size > RATIO_MIN_BYTES
        if big and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise UnsafeZip(
                f"zip entry '{info.filename}' expands {info.file_size / max(info.compress_size, 1):.0f}x "
                "(decompression bomb); archive refused"
            )
    if total > max_total:
        raise UnsafeZip(
            f"zip expands to {total / 1024**3:.1f} GiB (limit {max_total / 1024**3:.0f} GiB); archive refused"
        )
    return infos


def safe_extract(zip_path: Path, dest: Path, max_total: int = MAX_TOTAL_BYTES) -> Path:
    """Extract ``zip_path`` into ``dest`` (created) and return ``dest``. Raises :class:`UnsafeZip`."""
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise UnsafeZip(f"'{Path(zip_path).name}' is not a valid zip file") from None
    except OSError as e:
        raise UnsafeZip(f"cannot read '{zip_path}': {e.strerror or e}") from None
    with zf:
        infos = _check_entries(zf, max_total)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written = 0
        try:
            for info in infos:
                target = (root / _check_name(info.filename)).resolve()
                if root not in target.parents and target != root:
                    raise UnsafeZip(
                        f"zip entry '{info.filename}' points outside the target folder; archive refused"
                    )
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                written = _copy_entry(zf, info, target, written, max_total)
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            shutil.rmtree(dest, ignore_errors=True)
            raise UnsafeZip(f"zip is corrupt ({e}); archive refused") from None
        except UnsafeZip:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    return dest


def _copy_entry(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, written: int, max_total: int
) -> int:
    """Stream one entry, counting real output bytes (the header's size may lie)."""
    produced = 0
    with zf.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(1 << 20):
            produced += len(chunk)
            written += len(chunk)
            if produced > info.file_size or written > max_total:
                raise UnsafeZip(
                    f"zip entry '{info.filename}' expands beyond its declared size; archive refused"
                )
            out.write(chunk)
    return written


def dataset_root(folder: Path) -> Path:
    """Descend through a single wrapping folder (``data.zip`` -> ``data/``), ignoring macOS junk."""
    folder = Path(folder)
    while True:
        entries = [p for p in folder.iterdir() if p.name not in {"__MACOSX", ".DS_Store"}]
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
        else:
            return folder


__all__ = ["UnsafeZip", "dataset_root", "safe_extract"]
