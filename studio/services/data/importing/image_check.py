"""Image validation at import: read the file once, refuse what is not a plain, intact, sane image.

Why each step:
- The file is opened without following a symlink and without blocking, and must be a regular file:
  a named pipe in a dataset folder would otherwise hang the import forever, and a link could pull in a
  file from outside the dataset.
- Its size is capped before it is read, and compared with what its pixels need: an 8x8 PNG followed
  by 50 MB of padding must not be stored byte for byte.
- The header is read (size, format) and the pixel count capped *before* anything decodes (bombs).
- The data is then decoded completely (JPEGs at 1/8 scale, which still runs the whole entropy decoder
  at a fraction of the memory): a file whose header is fine but whose data cannot be decoded is
  refused here, not found out later by training or a thumbnail. A JPEG without its end-of-image marker
  was cut short (libjpeg would quietly pad it with grey).
- An EXIF orientation (phone photos) is applied once, here: the stored file holds the upright pixels
  (orientation tag removed) and the upright size, as Roboflow's auto-orient and Label Studio show it.
  Everything after (boxes, training, thumbnails, the label editor) then sees one frame; the raw size
  is kept in :class:`CheckedImage` so the writer can say when a box only fits the unrotated image.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from studio.services.data.importing import limits

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
MAX_PIXELS = limits.MAX_PIXELS
EXIF_ORIENTATION = 0x0112
SWAPS_AXES = {5, 6, 7, 8}  # orientations that turn the image by 90 degrees
_FORMAT_SUFFIX = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "BMP": ".bmp",
    "WEBP": ".webp",
    "TIFF": ".tif",
    "GIF": ".gif",
}
_KIND = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
    stat.S_IFDIR: "a folder",
    stat.S_IFLNK: "a symbolic link",
}


class BadImage(Exception):
    """The file is not a usable image; the message says why (shown in the import report)."""


@dataclass(frozen=True)
class CheckedImage:
    path: Path
    data: bytes
    sha256: str
    width: int
    height: int
    suffix: str  # canonical suffix for the stored copy, from the real format (not the file name)
    orientation: int = 1  # the EXIF orientation that was applied (1: none)
    raw_size: tuple[int, int] | None = None  # (width, height) before the rotation, when one was applied


def is_image_name(path: Path | str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def file_kind(mode: int) -> str:
    """'a named pipe (FIFO)', 'a symbolic link' … for a file that is not a regular file."""
    return _KIND.get(stat.S_IFMT(mode), "not a regular file")


def read_regular_file(path: Path, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of ``path`` if it is a regular file (not a link, pipe or device) of at most
    ``max_bytes``; raises :class:`BadImage` with the reason otherwise (``what`` names the file in it:
    "image file", "file"). Never blocks on a pipe. Every reader uses this for whole-file reads."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise BadImage(f"{what} not found") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BadImage("is a symbolic link; skipped (only regular files are read)") from None
        if e.errno == errno.ENAMETOOLONG:
            raise BadImage(f"{what} name too long for the file system") from None
        raise BadImage(f"cannot read {what} ({e.strerror or type(e).__name__})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise BadImage(f"is {file_kind(st.st_mode)}, not a regular file; skipped without opening it")
        if st.st_size > max_bytes:
            raise BadImage(f"{what} is {limits.size_text(st.st_size)} (limit {limits.size_text(max_bytes)})")
        os.set_blocking(f.fileno(), True)
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while we read it
        raise BadImage(f"{what} is over {limits.size_text(max_bytes)} (the limit)")
    return data


def check_image(path: Path) -> CheckedImage:
    """Read ``path`` once: hash it, read its size, decode it. Raises :class:`BadImage`."""
    data = read_regular_file(Path(path), limits.MAX_IMAGE_BYTES, "image file")
    if not data:
        raise BadImage("empty file (0 bytes)")
    width, height, fmt = _inspect(data)
    need = width * height * limits.MAX_BYTES_PER_PIXEL + limits.IMAGE_OVERHEAD_BYTES
    if len(data) > need:
        raise BadImage(
            f"file is {limits.size_text(len(data))} but a {width}x{height} image needs at most "
            f"{limits.size_text(need)} (trailing data or padding); image refused"
        )
    orientation = _orientation(data)
    if orientation == 1:
        return CheckedImage(
            Path(path), data, hashlib.sha256(data).hexdigest(), width, height, _FORMAT_SUFFIX[fmt]
        )
    upright, suffix, size = _upright(data, fmt)
    return CheckedImage(
        Path(path), upright, hashlib.sha256(upright).hexdigest(), *size, suffix, orientation, (width, height)
    )


def _orientation(data: bytes) -> int:
    """The EXIF orientation (1-8); 1 when there is none or it is not a valid value."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            value = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(data: bytes, fmt: str) -> tuple[bytes, str, tuple[int, int]]:
    """Apply the orientation: JPEG stays JPEG (quality 95, colour profile and other EXIF kept, the
    orientation tag removed by ``exif_transpose``); any other format is stored as PNG (lossless)."""
    with Image.open(io.BytesIO(data)) as im:
        icc = im.info.get("icc_profile")
        up = ImageOps.exif_transpose(im)
        out = io.BytesIO()
        extra = {"icc_profile": icc} if icc else {}
        exif = up.getexif()
        if fmt == "JPEG":
            if up.mode not in {"RGB", "L", "CMYK"}:
                up = up.convert("RGB")
            up.save(out, "JPEG", quality=95, exif=exif.tobytes(), **extra)
            suffix = ".jpg"
        else:
            up.save(out, "PNG", exif=exif.tobytes(), **extra)
            suffix = ".png"
        return out.getvalue(), suffix, up.size


def _inspect(data: bytes) -> tuple[int, int, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            width, height, fmt = _header(data)
            _check_jpeg_end(data, fmt)
            _decode(data, fmt, width, height)
        except BadImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadImage("image too large (decompression bomb refused)") from None
        except Image.UnidentifiedImageError:
            raise BadImage("not an image or corrupt image (unrecognised data)") from None
        except MemoryError:
            raise BadImage("image too large to decode") from None
        except Exception as e:
            raise BadImage(f"corrupt image ({str(e)[:200] or type(e).__name__})") from None
    return width, height, fmt


def _check_jpeg_end(data: bytes, fmt: str) -> None:
    # Entropy-coded data never contains FFD9, so a complete JPEG has an EOI after its last SOS
    # (this also accepts files with trailing metadata after the EOI).
    if fmt == "JPEG" and not data.endswith(b"\xff\xd9") and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        raise BadImage("truncated JPEG (end-of-image marker missing)")


def _header(data: bytes) -> tuple[int, int, str]:
    """Size and format from the header; structure checked by ``verify`` (PNG CRCs, GIF/TIFF layout)."""
    with Image.open(io.BytesIO(data)) as im:
        width, height, fmt = im.size[0], im.size[1], im.format or ""
        if fmt not in _FORMAT_SUFFIX:
            raise BadImage(f"unsupported image format {fmt or 'unknown'}")
        if width <= 0 or height <= 0:
            raise BadImage(f"invalid image size {width}x{height}")
        if width * height > MAX_PIXELS:
            raise BadImage(f"image too large ({width}x{height} pixels; limit {MAX_PIXELS:,})")
        im.verify()
    return width, height, fmt


def _decode(data: bytes, fmt: str, width: int, height: int) -> None:
    """Decode every pixel of the first frame (``verify`` does not decompress); a JPEG at 1/8 scale."""
    with Image.open(io.BytesIO(data)) as im:
        if fmt == "JPEG":
            im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
        try:
            im.load()
        except OSError as e:
            raise BadImage(f"image data cannot be decoded ({str(e)[:200] or type(e).__name__})") from None
