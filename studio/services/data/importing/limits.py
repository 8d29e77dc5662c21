"""Every limit the importer puts on untrusted input, in one place.

Why limits at all: a dataset is a file someone else made. Without a cap, one zip, YAML or JSON can
make the server write gigabytes to disk, hold gigabytes in memory or store a report nobody can open.
Each limit is far above what real datasets need (the numbers below say why) and is named in the
message when it is hit, and in the stored report (:func:`as_dict`), so a user knows what to change.
"""

from __future__ import annotations

MiB = 1024**2

# -- zip archives (safe_zip) ---------------------------------------------------------------------------
MAX_ZIP_TOTAL_BYTES = 20 * 1024**3  # 20 GiB expanded: big datasets, but not a full disk
MAX_ZIP_ENTRIES = 500_000
MAX_ZIP_RATIO = 200  # expanded / compressed; images hardly compress, JSON/txt stay under ~30x
ZIP_RATIO_SLACK_BYTES = 64 * 1024  # small entries may compress better than the ratio (a tiny text file)
ZIP_TOTAL_SLACK_BYTES = 1 * MiB
MAX_PATH_PART_BYTES = 255  # one file or folder name (Linux/macOS file systems)
MAX_PATH_CHARS = 1000  # a whole relative path inside a dataset

# -- files read as a whole ----------------------------------------------------------------------------
MAX_YAML_BYTES = 4 * MiB  # data.yaml: class names and split paths (10k classes fit in ~200 KiB)
MAX_JSON_BYTES = 4 * 1024**3  # COCO json: the biggest public sets are a few GiB
MAX_LABEL_FILE_BYTES = 16 * MiB  # one YOLO .txt / LabelMe .json / VOC .xml (10k boxes are ~0.5-2 MiB)
MAX_XML_BYTES = 256 * MiB  # a CVAT task file holds every image's boxes in one XML

# -- images -------------------------------------------------------------------------------------------
MAX_IMAGE_BYTES = 100 * MiB  # a 100-megapixel JPEG is ~30 MiB; uncompressed TIFF/BMP can be more
MAX_PIXELS = 100_000_000  # 10k x 10k; bigger than any detector input, small enough to refuse bombs
MAX_BYTES_PER_PIXEL = 8  # 16-bit RGBA uncompressed; a file far larger than its pixels carries padding
IMAGE_OVERHEAD_BYTES = 4 * MiB  # metadata, embedded thumbnails and colour profiles on top of the pixels

# -- video --------------------------------------------------------------------------------------------
MAX_VIDEO_FRAMES = 5_000  # frames kept from one video (an hour at one frame every 0.7 s)

# -- annotations --------------------------------------------------------------------------------------
MAX_BOXES_PER_IMAGE = 10_000  # dense retail shelves have ~150-500; more is a generator gone wrong
MAX_CLASS_NAME_CHARS = 200  # the category name column
MAX_CLASSES = 10_000
MAX_FILE_NAME_CHARS = 500  # the image's original-name column
MAX_ID = 2**63 - 1  # SQLite INTEGER; a bigger id would overflow when stored

# -- the report ---------------------------------------------------------------------------------------
MAX_PROBLEMS_KEPT = 1000  # rows kept (and stored); the rest are only counted by severity
MAX_REASON_CHARS = 500  # one problem's reason
MAX_WHERE_CHARS = 300  # one problem's file/location


def as_dict() -> dict[str, int]:
    """The limits named in every stored report, so a report says which rules it was made under."""
    return {
        "zip_total_bytes": MAX_ZIP_TOTAL_BYTES,
        "zip_ratio": MAX_ZIP_RATIO,
        "image_bytes": MAX_IMAGE_BYTES,
        "image_pixels": MAX_PIXELS,
        "boxes_per_image": MAX_BOXES_PER_IMAGE,
        "class_name_chars": MAX_CLASS_NAME_CHARS,
        "classes": MAX_CLASSES,
        "file_name_chars": MAX_FILE_NAME_CHARS,
        "problems_kept": MAX_PROBLEMS_KEPT,
        "video_frames": MAX_VIDEO_FRAMES,
    }


def size_text(n: int) -> str:
    """``104857600`` -> ``'100 MiB'`` for messages."""
    if n >= 1024**3:
        return f"{n / 1024**3:.1f} GiB".replace(".0 ", " ")
    if n >= MiB:
        return f"{n / MiB:.1f} MiB".replace(".0 ", " ")
    return f"{n:,} bytes"
