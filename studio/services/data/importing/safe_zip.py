"""Extract an uploaded zip without trusting it.

Why: a zip is attacker-shaped input. Entries can name absolute paths or ``..`` to write outside the
target folder, carry symlinks that later reads would follow, or expand to terabytes (a zip bomb, or
many small bombs that each stay under a per-entry threshold). We check every entry *before* writing
anything (names, links, encryption, declared size and ratio per entry and in total), then count the
bytes actually produced while extracting (header sizes can lie) and stop the moment an entry passes its
declared size. Any violation refuses the whole archive and removes what was extracted.

Names: zip tools that do not set the UTF-8 flag still often write UTF-8 (macOS, 7-Zip, Python); Python
decodes such names as cp437, which turns ``café.jpg`` into ``cafÃ©.jpg`` and the image into "not
found". We use the Info-ZIP Unicode Path field when present, else UTF-8 when the raw bytes are valid
UTF-8, and keep cp437 only as the fallback (it maps every byte, so it always round-trips).
"""

from __future__ import annotations

import shutil
import stat
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from studio.errors import StudioError
from studio.services.data.importing import limits
from studio.text import quote

MAX_TOTAL_BYTES = limits.MAX_ZIP_TOTAL_BYTES
MAX_ENTRIES = limits.MAX_ZIP_ENTRIES
MAX_RATIO = limits.MAX_ZIP_RATIO
_FLAG_ENCRYPTED = 0x1
_FLAG_STRONG_ENCRYPTION = 0x40
_FLAG_UTF8 = 0x800
_UNICODE_PATH_EXTRA = 0x7075
_CHUNK = 1 << 20


class UnsafeZip(StudioError):
    """The archive was refused; nothing was extracted (or what was extracted has been removed)."""


def entry_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as the zip tool meant it (see the module docstring)."""
    if info.flag_bits & _FLAG_UTF8:
        return info.filename
    raw = info.orig_filename.encode("cp437", errors="replace")
    unicode_path = _unicode_path_field(info.extra, raw)
    if unicode_path is not None:
        return unicode_path.replace("\\", "/")
    try:
        return raw.decode("utf-8").replace("\\", "/")
    except UnicodeDecodeError:
        return info.filename


def _unicode_path_field(extra: bytes, raw_name: bytes) -> str | None:
    """Info-ZIP's 0x7075 field: version 1, CRC-32 of the header name, the UTF-8 name."""
    i = 0
    while i + 4 <= len(extra):
        kind, size = struct.unpack("<HH", extra[i : i + 4])
        body = extra[i + 4 : i + 4 + size]
        if kind == _UNICODE_PATH_EXTRA and len(body) > 5 and body[0] == 1:
            if struct.unpack("<I", body[1:5])[0] == zlib.crc32(raw_name):
                try:
                    return body[5:].decode("utf-8")
                except UnicodeDecodeError:
                    return None
        i += 4 + size
    return None


def _check_name(name: str) -> PurePosixPath:
    if "\\" in name:
        name = name.replace("\\", "/")
    shown = quote(name)
    p = PurePosixPath(name)
    if p.is_absolute() or (p.parts and p.parts[0].endswith(":")) or ".." in p.parts:
        raise UnsafeZip(f"zip entry {shown} points outside the target folder; archive refused")
    if "\x00" in name:
        raise UnsafeZip(f"zip entry {shown} has a NUL character in its name; archive refused")
    too_long = [part for part in p.parts if len(part.encode("utf-8")) > limits.MAX_PATH_PART_BYTES]
    if too_long or len(name) > limits.MAX_PATH_CHARS:
        raise UnsafeZip(
            f"zip entry {shown} has a name too long for the file system "
            f"(limit {limits.MAX_PATH_PART_BYTES} bytes per name, {limits.MAX_PATH_CHARS} characters "
            "per path); archive refused"
        )
    return p


def _check_entry(info: zipfile.ZipInfo, name: str) -> None:
    shown = quote(name)
    if info.flag_bits & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
        raise UnsafeZip("this zip is password-protected; re-zip it without a password")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeZip(f"zip entry {shown} is a symbolic link; archive refused")
    if info.file_size > MAX_RATIO * info.compress_size + limits.ZIP_RATIO_SLACK_BYTES:
        raise UnsafeZip(
            f"zip entry {shown} expands {info.file_size / max(info.compress_size, 1):.0f}x "
            f"(limit {MAX_RATIO}x: decompression bomb); archive refused"
        )


def _check_entries(
    zf: zipfile.ZipFile, max_total: int, archive_bytes: int
) -> list[tuple[zipfile.ZipInfo, str]]:
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise UnsafeZip(f"zip has {len(infos):,} entries (limit {MAX_ENTRIES:,}); archive refused")
    out, total = [], 0
    for info in infos:
        name = entry_name(info)
        _check_name(name)
        _check_entry(info, name)
        total += info.file_size
        out.append((info, name))
    if total > max_total:
        raise UnsafeZip(
            f"zip expands to {limits.size_text(total)} (limit {limits.size_text(max_total)}); archive refused"
        )
    if total > MAX_RATIO * archive_bytes + limits.ZIP_TOTAL_SLACK_BYTES:
        raise UnsafeZip(
            f"zip expands {total / max(archive_bytes, 1):.0f}x in total "
            f"(limit {MAX_RATIO}x: decompression bomb); archive refused"
        )
    return out


def safe_extract(zip_path: Path, dest: Path, max_total: int = MAX_TOTAL_BYTES) -> Path:
    """Extract ``zip_path`` into ``dest`` (created) and return ``dest``. Raises :class:`UnsafeZip`."""
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(zip_path)
        archive_bytes = Path(zip_path).stat().st_size
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise UnsafeZip(f"{quote(Path(zip_path).name)} is not a valid zip file") from None
    except OSError as e:
        raise UnsafeZip(f"cannot read {quote(str(zip_path))}: {e.strerror or type(e).__name__}") from None
    with zf:
        entries = _check_entries(zf, max_total, archive_bytes)
        dest.mkdir(parents=True, exist_ok=True)
        try:
            _extract_all(zf, entries, dest.resolve(), max_total)
        except UnsafeZip:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        except NotImplementedError:
            shutil.rmtree(dest, ignore_errors=True)
            raise UnsafeZip(
                "zip uses an unsupported compression method; re-zip it with plain deflate"
            ) from None
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as e:
            shutil.rmtree(dest, ignore_errors=True)
            detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
            raise UnsafeZip(f"zip is corrupt ({quote(detail)}); archive refused") from None
    return dest


def _extract_all(
    zf: zipfile.ZipFile, entries: list[tuple[zipfile.ZipInfo, str]], root: Path, max_total: int
) -> None:
    written = 0
    for info, name in entries:
        rel = _check_name(name)
        if not rel.parts:
            continue  # an entry named "" or "./": nothing to write
        target = root.joinpath(*rel.parts)
        if info.is_dir() or name.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            raise UnsafeZip(f"zip entry {quote(name)} is both a folder and a file; archive refused")
        written = _copy_entry(zf, info, name, target, written, max_total)


def _copy_entry(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, target: Path, written: int, max_total: int
) -> int:
    """Stream one entry, counting real output bytes: stop as soon as it passes its declared size."""
    produced = 0
    with zf.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(min(_CHUNK, info.file_size - produced + 1)):
            produced += len(chunk)
            written += len(chunk)
            if produced > info.file_size or written > max_total:
                raise UnsafeZip(f"zip entry {quote(name)} expands beyond its declared size; archive refused")
            out.write(chunk)
    return written


def dataset_root(folder: Path) -> Path:
    """Descend through a single wrapping folder (``data.zip`` -> ``data/``), ignoring macOS junk."""
    folder = Path(folder)
    while True:
        entries = [p for p in folder.iterdir() if p.name not in {"__MACOSX", ".DS_Store"}]
        if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
            folder = entries[0]
        else:
            return folder


__all__ = ["UnsafeZip", "dataset_root", "entry_name", "safe_extract"]
