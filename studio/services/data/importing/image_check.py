"""Cheap image validation: read the header and check integrity without a full decode.

Why: importing thousands of images must be fast, so we do not decode pixels. PIL's ``open`` reads the
size from the header; ``verify`` walks PNG chunks (CRCs) and GIF/TIFF structure; a JPEG whose
end-of-image marker is missing was cut short (the common corruption of a failed copy/download).
Pixel-count limits refuse decompression bombs before anything decodes them.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
MAX_PIXELS = 100_000_000  # 10k x 10k; bigger than any detector input, small enough to refuse bombs
_FORMAT_SUFFIX = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "BMP": ".bmp",
    "WEBP": ".webp",
    "TIFF": ".tif",
    "GIF": ".gif",
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


def is_image_name(path: Path | str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def check_image(path: Path) -> CheckedImage:
    """Read ``path`` once: hash it, read its size, check it is intact. Raises :class:`BadImage`."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadImage("image file not found") from None
    except OSError as e:
        raise BadImage(f"cannot read image file ({e.strerror or e})") from None
    if not data:
        raise BadImage("empty file (0 bytes)")
    width, height, fmt = _inspect(data)
    return CheckedImage(
        Path(path), data, hashlib.sha256(data).hexdigest(), width, height, _FORMAT_SUFFIX[fmt]
    )


def _inspect(data: bytes) -> tuple[int, int, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height, fmt = im.size[0], im.size[1], im.format or ""
                if fmt not in _FORMAT_SUFFIX:
                    raise BadImage(f"unsupported image format {fmt or 'unknown'}")
                if width <= 0 or height <= 0:
                    raise BadImage(f"invalid image size {width}x{height}")
                if width * height > MAX_PIXELS:
                    raise BadImage(f"image too large ({width}x{height} pixels; limit {MAX_PIXELS:,})")
                im.verify()
        except BadImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadImage("image too large (decompression bomb refused)") from None
        except Image.UnidentifiedImageError:
            raise BadImage("not an image or corrupt image (unrecognised data)") from None
        except Exception as e:
            raise BadImage(f"corrupt image ({e or type(e).__name__})") from None
    # Entropy-coded data never contains FFD9, so a complete JPEG has an EOI after its last SOS
    # (this also accepts files with trailing metadata after the EOI).
    if fmt == "JPEG" and not data.endswith(b"\xff\xd9") and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        raise BadImage("truncated JPEG (end-of-image marker missing)")
    return width, height, fmt


__all__ = ["IMAGE_SUFFIXES", "BadImage", "CheckedImage", "check_image", "is_image_name"]
