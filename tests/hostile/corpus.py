"""Hostile and clumsy dataset inputs, generated on the spot (tiny files; nothing downloaded).

Why a generator and not files in the repository: most cases are a few bytes away from a valid dataset
(one header field, one name, one flag bit), and writing them from code keeps each case readable next to
the outcome it must have. Every :class:`Case` builds its input under a folder and says what the import
must end in: ``fatal`` (a regex the abort message must match; the project must stay byte-identical) or
a finished report with a ``problem`` regex (and the exact number of images imported).

Groups: bombs (zip, YAML alias, deep JSON, image pixels and padding), traversal (``../``, absolute
paths, drive letters, symlinks in zips and folders), special files (FIFOs), malformed COCO and YOLO,
huge values (ids, names, box counts, problem counts), encodings (zip names, UTF-16/BOM JSON, non-UTF-8
YAML and labels), markup in names, XML (Pascal VOC / CVAT / LabelMe: entity bombs, external entities,
parameter entities, deep nesting, a FIFO as the annotation file, a zip of a VOC dataset carrying a bomb).
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

MiB = 1024**2


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]  # writes the input under the folder; returns what to import
    fatal: str | None = None  # regex of the abort message
    problem: str | None = None  # regex one kept problem's reason (or the report note) must match
    imported: int | None = None  # images imported, for a finished import
    needs_fifo: bool = False


CASES: list[Case] = []


def case(*, fatal: str | None = None, problem: str | None = None, imported: int | None = None):
    def register(fn: Callable[[Path], Path]) -> Callable[[Path], Path]:
        CASES.append(Case(fn.__name__, fn, fatal, problem, imported))
        return fn

    return register


# -- building blocks ------------------------------------------------------------------------------------


def image_bytes(i: int, fmt: str = "JPEG", size: tuple[int, int] = (32, 24)) -> bytes:
    """A small solid image whose colour (and so content hash) depends on ``i``."""
    colour = ((i * 53) % 256, (i * 97 + 40) % 256, (i * 31 + 90) % 256)
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


def coco_doc(n: int, offset: int = 100) -> tuple[dict, dict[str, bytes]]:
    files = {f"img_{i}.jpg": image_bytes(offset + i) for i in range(n)}
    doc = {
        "images": [{"id": i + 1, "file_name": f, "width": 32, "height": 24} for i, f in enumerate(files)],
        "categories": [{"id": 1, "name": "thing", "supercategory": "none"}],
        "annotations": [
            {"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 10, 8]} for i in range(n)
        ],
    }
    return doc, files


def coco_ds(d: Path, n: int = 2, mutate: Callable[[dict], None] | None = None, offset: int = 100) -> Path:
    """``d/ds``: ``annotations.json`` + ``images/``; ``mutate`` edits the document before it is written."""
    doc, files = coco_doc(n, offset)
    (d / "ds" / "images").mkdir(parents=True)
    for name, data in files.items():
        (d / "ds" / "images" / name).write_bytes(data)
    if mutate:
        mutate(doc)
    (d / "ds" / "annotations.json").write_text(json.dumps(doc))
    return d / "ds"


def coco_text(d: Path, text: str | bytes, n: int = 2) -> Path:
    """A COCO dataset whose json is replaced by ``text`` verbatim."""
    ds = coco_ds(d, n)
    path = ds / "annotations.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return ds


def yolo_ds(
    d: Path, n: int = 2, yaml_text: str | bytes | None = None, label: str | bytes | None = None
) -> Path:
    """``d/ds``: Ultralytics layout with one class ``thing``; ``label`` replaces the first label file."""
    ds = d / "ds"
    (ds / "images" / "train").mkdir(parents=True)
    (ds / "labels" / "train").mkdir(parents=True)
    for i in range(n):
        (ds / "images" / "train" / f"t{i}.jpg").write_bytes(image_bytes(200 + i))
        (ds / "labels" / "train" / f"t{i}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    if label is not None:
        p = ds / "labels" / "train" / "t0.txt"
        p.write_bytes(label if isinstance(label, bytes) else label.encode())
    text = yaml_text if yaml_text is not None else "train: images/train\nnames: [thing]\n"
    (ds / "data.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    return ds


def loose_ds(d: Path, n: int = 2, offset: int = 300) -> Path:
    (d / "pics").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (d / "pics" / f"p{i}.jpg").write_bytes(image_bytes(offset + i))
    return d / "pics"


def zip_of(d: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]], name: str = "upload.zip") -> Path:
    path = d / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


def coco_zip_entries(n: int = 2, names: list[str] | None = None) -> list[tuple[str, bytes]]:
    doc, files = coco_doc(n, offset=400)
    if names:
        for im, new in zip(doc["images"], names, strict=True):
            im["file_name"] = new
        files = dict(zip(names, files.values(), strict=True))
    return [("ds/annotations.json", json.dumps(doc, ensure_ascii=False).encode())] + [
        (f"ds/images/{k}", v) for k, v in files.items()
    ]


def patch_headers(path: Path, field_offset: int, value: bytes) -> None:
    """Overwrite one field in every local (PK\\3\\4) and central (PK\\1\\2) header.
    ``field_offset`` is the offset in the local header; the central one is 2 bytes further."""
    data = bytearray(path.read_bytes())
    for sig, extra in ((b"PK\x03\x04", 0), (b"PK\x01\x02", 2)):
        at = data.find(sig)
        while at != -1:
            data[at + field_offset + extra : at + field_offset + extra + len(value)] = value
            at = data.find(sig, at + 4)
    path.write_bytes(bytes(data))


def mkfifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def sparse(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of ``size`` bytes that takes no disk space (only ``head`` is real data)."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def undecodable_jpeg() -> bytes:
    """A JPEG whose header opens and verifies but whose Huffman table makes the data undecodable."""
    good = image_bytes(7, size=(64, 48))
    dht = good.index(b"\xff\xc4")
    for offset in range(dht + 5, dht + 40):
        for value in (0x30, 0xFF, 0x00, 0x10):
            bad = bytearray(good)
            bad[offset] = value
            try:
                with Image.open(io.BytesIO(bytes(bad))) as im:
                    im.verify()
            except Exception:
                continue
            try:
                with Image.open(io.BytesIO(bytes(bad))) as im:
                    im.load()
            except OSError:
                return bytes(bad)
    raise AssertionError("no undecodable variant found")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


YAML_ALIAS_BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


# == bombs ==============================================================================================


@case(fatal=r"decompression bomb")
def zip_one_big_bomb(d: Path) -> Path:
    return zip_of(d, [("ds/zeros.jpg", bytes(40 * MiB))])


@case(fatal=r"decompression bomb")
def zip_four_16mib_entries(d: Path) -> Path:  # each under the old 16 MiB threshold
    return zip_of(d, [(f"ds/z{i}.jpg", bytes(16 * MiB)) for i in range(4)])


@case(fatal=r"expands \d+x in total")
def zip_many_small_bombs(d: Path) -> Path:  # every entry within the per-entry slack, together a bomb
    return zip_of(d, [(f"ds/z{i:04d}.txt", bytes(64 * 1024)) for i in range(600)])


@case(fatal=r"decompression bomb|expands to")
def zip_declares_terabytes(d: Path) -> Path:
    path = zip_of(d, coco_zip_entries(2))
    patch_headers(path, 22, struct.pack("<I", 0xFFFFFFF0))  # uncompressed size: ~4 GiB each
    return path


@case(fatal=r"zip is corrupt|beyond its declared size")
def zip_lies_about_its_size(d: Path) -> Path:
    path = zip_of(d, [("ds/a.jpg", bytes(2 * MiB))])
    patch_headers(path, 22, struct.pack("<I", 1000))  # claims 1000 bytes, holds 2 MiB
    return path


@case(fatal=r"class 0 has no valid name \(it is not text but a list of 9 item")
def yaml_alias_bomb_in_names(d: Path) -> Path:
    return yolo_ds(d, yaml_text=YAML_ALIAS_BOMB + "train: images/train\nnames: [*i]\n")


@case(problem=r"'nc' is a list of 9 item\(s\) but 'names' lists 1", imported=2)
def yaml_alias_bomb_in_nc(d: Path) -> Path:
    return yolo_ds(d, yaml_text=YAML_ALIAS_BOMB + "train: images/train\nnames: [thing]\nnc: *i\n")


@case(imported=2)
def yaml_alias_bomb_in_supercategories(d: Path) -> Path:
    return yolo_ds(
        d, yaml_text=YAML_ALIAS_BOMB + "train: images/train\nnames: [thing]\nsupercategories: {thing: *i}\n"
    )


@case(imported=2)
def yaml_alias_bomb_as_split_path(d: Path) -> Path:  # not a string: ignored, the layout is found on disk
    return yolo_ds(d, yaml_text=YAML_ALIAS_BOMB + "train: *i\nnames: [thing]\n")


@case(fatal=r"bad JSON in annotations.json: nested too deeply")
def json_nested_100k_deep(d: Path) -> Path:
    return coco_text(d, "[" * 100_000 + "]" * 100_000)


@case(problem=r"'bbox' must be a list of 4 numbers, got a list of 1 item", imported=2)
def json_deep_bbox(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["annotations"][0].update(bbox=json.loads("[" * 500 + "]" * 500)))


@case(problem=r"image too large", imported=2)
def png_pixel_bomb(d: Path) -> Path:
    ds = loose_ds(d)
    (ds / "bomb.png").write_bytes(huge_png_header(50_000, 50_000))
    return ds


@case(problem=r"needs at most .* \(trailing data or padding\)", imported=2)
def png_followed_by_padding(d: Path) -> Path:
    ds = loose_ds(d)
    (ds / "padded.png").write_bytes(image_bytes(1, "PNG", (8, 8)) + bytes(5 * MiB))
    return ds


@case(problem=r"image file is 101 MiB \(limit 100 MiB\)", imported=2)
def image_over_size_limit(d: Path) -> Path:
    ds = loose_ds(d)
    sparse(ds / "huge.jpg", 101 * MiB, image_bytes(2))
    return ds


# == traversal ==========================================================================================


@case(fatal=r"points outside the target folder")
def zip_dot_dot(d: Path) -> Path:
    return zip_of(d, [*coco_zip_entries(1), ("../../../escape.txt", b"x")])


@case(fatal=r"points outside the target folder")
def zip_absolute_path(d: Path) -> Path:
    return zip_of(d, [*coco_zip_entries(1), (str(d / "abs-escape.txt"), b"x")])


@case(fatal=r"points outside the target folder")
def zip_backslash_dot_dot(d: Path) -> Path:
    return zip_of(d, [*coco_zip_entries(1), ("..\\..\\..\\escape.txt", b"x")])


@case(fatal=r"points outside the target folder")
def zip_drive_letter(d: Path) -> Path:
    return zip_of(d, [*coco_zip_entries(1), ("C:/escape.txt", b"x")])


@case(fatal=r"is a symbolic link")
def zip_symlink_to_file(d: Path) -> Path:
    link = zipfile.ZipInfo("ds/images/link.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_of(d, [*coco_zip_entries(1), (link, b"/etc/passwd")])


@case(fatal=r"is a symbolic link")
def zip_symlinked_folder_then_file_through_it(d: Path) -> Path:
    link = zipfile.ZipInfo("ds/out")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_of(d, [(link, b"../../.."), ("ds/out/escape.txt", b"x")])


@case(fatal=r"name too long for the file system")
def zip_name_5000_chars(d: Path) -> Path:
    return zip_of(d, [*coco_zip_entries(1), ("ds/" + "n" * 5000 + ".jpg", image_bytes(9))])


@case(problem=r"image file not found", imported=1)
def coco_file_name_dot_dot(d: Path) -> Path:
    (d / "secret.jpg").write_bytes(image_bytes(11))
    return coco_ds(d, mutate=lambda doc: doc["images"][0].update(file_name="../../secret.jpg"))


@case(problem=r"image file not found", imported=1)
def coco_file_name_absolute(d: Path) -> Path:
    (d / "secret.jpg").write_bytes(image_bytes(12))
    return coco_ds(d, mutate=lambda doc: doc["images"][0].update(file_name=str(d / "secret.jpg")))


@case(problem=r"is not a folder inside the dataset", imported=2)
def yolo_split_path_outside(d: Path) -> Path:
    loose_ds(d / "elsewhere")
    return yolo_ds(d, yaml_text="train: ../elsewhere/pics\nnames: [thing]\n")


@case(problem=r"is not a folder inside the dataset", imported=2)
def yolo_absolute_base_path(d: Path) -> Path:
    return yolo_ds(d, yaml_text="path: /\ntrain: etc\nnames: [thing]\n")


@case(problem=r"is a symbolic link; skipped without opening it", imported=2)
def symlink_to_outside_image(d: Path) -> Path:
    (d / "outside.jpg").write_bytes(image_bytes(13))
    ds = loose_ds(d)
    (ds / "link.jpg").symlink_to(d / "outside.jpg")
    return ds


@case(imported=2)
def symlinked_folder_not_entered(d: Path) -> Path:
    loose_ds(d / "elsewhere", offset=500)
    ds = loose_ds(d)
    (ds / "linked").symlink_to(d / "elsewhere" / "pics", target_is_directory=True)
    return ds


@case(problem=r"is a symbolic link", imported=1)
def coco_image_is_symlink(d: Path) -> Path:
    (d / "outside.jpg").write_bytes(image_bytes(14))
    ds = coco_ds(d)
    (ds / "images" / "img_0.jpg").unlink()
    (ds / "images" / "img_0.jpg").symlink_to(d / "outside.jpg")
    return ds


@case(problem=r"is a symbolic link; skipped", imported=2)
def coco_json_is_symlink(d: Path) -> Path:  # not read: the images come in unlabeled
    ds = coco_ds(d)
    (ds / "annotations.json").rename(d / "real.json")
    (ds / "annotations.json").symlink_to(d / "real.json")
    return ds


@case(problem=r"image file not found", imported=1)
def coco_images_folder_is_symlink_outside(d: Path) -> Path:
    ds = coco_ds(d, n=1)
    (d / "elsewhere").mkdir()
    (d / "elsewhere" / "img_1.jpg").write_bytes(image_bytes(15))
    (ds / "sub").symlink_to(d / "elsewhere", target_is_directory=True)
    doc = json.loads((ds / "annotations.json").read_text())
    doc["images"].append({"id": 2, "file_name": "sub/img_1.jpg"})
    (ds / "annotations.json").write_text(json.dumps(doc))
    return ds


# == special files ======================================================================================


@case(problem=r"is a named pipe \(FIFO\); skipped without opening it", imported=2)
def fifo_in_loose_folder(d: Path) -> Path:
    ds = loose_ds(d)
    mkfifo(ds / "pipe.jpg")
    return ds


@case(problem=r"named pipe", imported=1)
def fifo_as_coco_image(d: Path) -> Path:
    ds = coco_ds(d)
    (ds / "images" / "img_0.jpg").unlink()
    mkfifo(ds / "images" / "img_0.jpg")
    return ds


@case(problem=r"named pipe", imported=2)
def fifo_in_yolo_images(d: Path) -> Path:
    ds = yolo_ds(d)
    mkfifo(ds / "images" / "train" / "pipe.jpg")
    return ds


@case(problem=r"cannot read label file \(is a named pipe", imported=2)
def fifo_as_yolo_label(d: Path) -> Path:
    ds = yolo_ds(d)
    (ds / "labels" / "train" / "t0.txt").unlink()
    mkfifo(ds / "labels" / "train" / "t0.txt")
    return ds


@case(fatal=r"no data.yaml")
def fifo_as_data_yaml(d: Path) -> Path:
    ds = yolo_ds(d)
    (ds / "data.yaml").unlink()
    mkfifo(ds / "data.yaml")
    return ds


@case(problem=r"named pipe", imported=2)
def fifo_as_annotations_json(d: Path) -> Path:
    ds = coco_ds(d)
    (ds / "annotations.json").unlink()
    mkfifo(ds / "annotations.json")
    return ds


@case(fatal=r"is not a regular file or folder")
def fifo_as_the_upload(d: Path) -> Path:
    return mkfifo(d / "upload.zip")


@case(imported=2)
def folder_named_like_an_image(d: Path) -> Path:
    ds = loose_ds(d)
    (ds / "folder.jpg").mkdir()
    return ds


# == malformed COCO =====================================================================================


@case(fatal=r"out of range .*ids must fit in 64 bits")
def coco_category_id_2_pow_63(d: Path) -> Path:
    def mutate(doc: dict) -> None:
        doc["categories"][0]["id"] = 2**63
        doc["annotations"][0]["category_id"] = 2**63

    return coco_ds(d, mutate=mutate)


@case(fatal=r"out of range")
def coco_category_id_very_negative(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["categories"][0].update(id=-(2**70)))


@case(problem=r"file name of 5,000 characters \(limit 500\)", imported=1)
def coco_file_name_5000_chars(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["images"][0].update(file_name="x" * 4996 + ".jpg"))


@case(problem=r"image file not found", imported=1)
def coco_file_name_too_long_for_the_os(d: Path) -> Path:  # under our limit, over NAME_MAX
    return coco_ds(d, mutate=lambda doc: doc["images"][0].update(file_name="y" * 300 + ".jpg"))


@case(problem=r"NUL character", imported=1)
def coco_file_name_with_nul(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["images"][0].update(file_name="img_0\x00.jpg"))


@case(problem=r"'bbox' has non-numbers \('1' is text\)", imported=2)
def coco_bbox_strings(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["annotations"][0].update(bbox=["1", "2", "3", "4"]))


@case(problem=r"'bbox' has non-numbers \(True is true/false\)", imported=2)
def coco_bbox_booleans(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["annotations"][0].update(bbox=[True, 1, 5, 5]))


@case(problem=r"'bbox' has non-numbers \(a list of 1 item\(s\) is not a number\)", imported=2)
def coco_bbox_nested_value(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["annotations"][0].update(bbox=[[1], 1, 5, 5]))


@case(problem=r"'bbox' has non-numbers \(int \(huge\) is too large\)", imported=2)
def coco_bbox_huge_int(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["annotations"][0].update(bbox=[10**400, 1, 5, 5]))


@case(problem=r"NaN or infinite", imported=2)
def coco_bbox_infinity(d: Path) -> Path:
    ds = coco_ds(d, mutate=lambda doc: doc["annotations"][0].update(bbox=[1, 2, 3, 4]))
    p = ds / "annotations.json"
    p.write_text(p.read_text().replace("[1, 2, 3, 4]", "[Infinity, 2, 3, 4]", 1))
    return ds


@case(problem=r"'bbox' must be a list of 4 numbers, got None", imported=2)
def coco_bbox_null(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["annotations"][0].update(bbox=None))


@case(problem=r"image entry #0 has no valid 'id'", imported=1)
def coco_image_id_boolean(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["images"][0].update(id=True))


@case(problem=r"refers to unknown image id a dict of 1 item", imported=2)
def coco_annotation_image_id_object(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["annotations"][0].update(image_id={"id": 1}))


@case(fatal=r"the name of category #0 is 1,000,000 characters long \(limit 200\)")
def coco_class_name_one_megabyte(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["categories"][0].update(name="n" * 1_000_000))


@case(fatal=r"category #0 needs an integer 'id' and a non-empty 'name'")
def coco_class_name_not_text(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["categories"][0].update(name=["a", "b"]))


@case(fatal=r"is not a COCO file")
def coco_images_not_a_list(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc.update(images={"1": "a.jpg"}))


@case(fatal=r"'annotations' must be a list")
def coco_annotations_an_object(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc.update(annotations={}))


@case(fatal=r"bad JSON in annotations.json: Exceeds the limit")
def coco_integer_with_5000_digits(d: Path) -> Path:
    return coco_text(d, '{"images": [], "x": ' + "9" * 5000 + "}")


@case(imported=2)
def coco_json_with_bom(d: Path) -> Path:  # a BOM from a Windows editor is tolerated
    return coco_text(d, b"\xef\xbb\xbf" + json.dumps(coco_doc(2)[0]).encode())


@case(imported=2)
def coco_json_in_utf16(d: Path) -> Path:  # JSON may be UTF-16; the parser detects it
    return coco_text(d, json.dumps(coco_doc(2)[0]).encode("utf-16"))


@case(problem=r"only the first 10,000 are kept \(limit per image\), 10,000 skipped", imported=2)
def coco_20k_boxes_on_one_image(d: Path) -> Path:
    def mutate(doc: dict) -> None:
        doc["annotations"] += [
            {"id": 10 + k, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]} for k in range(19_999)
        ]

    return coco_ds(d, mutate=mutate)


@case(problem=r"refers to unknown image id 999", imported=2)
def coco_5000_problems(d: Path) -> Path:  # the report keeps 1000 rows and counts the rest
    def mutate(doc: dict) -> None:
        doc["annotations"] += [
            {"id": 10 + k, "image_id": 999, "category_id": 1, "bbox": [1, 1, 5, 5]} for k in range(5000)
        ]

    return coco_ds(d, mutate=mutate)


@case(problem=r"invalid width/height \('abc', 24\)", imported=2)
def coco_width_text(d: Path) -> Path:
    return coco_ds(d, mutate=lambda doc: doc["images"][0].update(width="abc"))


@case(imported=2)
def coco_unicode_file_names(d: Path) -> Path:
    def mutate(doc: dict) -> None:
        doc["images"][0]["file_name"] = "café_日本.jpg"
        doc["images"][1]["file_name"] = "ümlaut ß.jpg"

    ds = coco_ds(d, mutate=mutate)
    (ds / "images" / "img_0.jpg").rename(ds / "images" / "café_日本.jpg")
    (ds / "images" / "img_1.jpg").rename(ds / "images" / "ümlaut ß.jpg")
    return ds


# == malformed YOLO =====================================================================================


@case(fatal=r"'names' keys must be class ids .*out of range")
def yolo_names_key_2_pow_63(d: Path) -> Path:
    return yolo_ds(d, yaml_text=f"train: images/train\nnames: {{{2**63}: thing}}\n")


@case(fatal=r"'names' keys must be class ids")
def yolo_names_key_not_a_number(d: Path) -> Path:
    return yolo_ds(d, yaml_text="train: images/train\nnames: {cat: thing}\n")


@case(fatal=r"is 1,000,000 characters long \(limit 200\)")
def yolo_class_name_one_megabyte(d: Path) -> Path:
    return yolo_ds(d, yaml_text="train: images/train\nnames: [" + "n" * 1_000_000 + "]\n")


@case(fatal=r"class 0 has no valid name")
def yolo_class_name_null(d: Path) -> Path:
    return yolo_ds(d, yaml_text="train: images/train\nnames: [null]\n")


@case(fatal=r"class 0 has no valid name \(it is not text but True\)")
def yolo_class_name_boolean(d: Path) -> Path:
    return yolo_ds(d, yaml_text="train: images/train\nnames: [true]\n")


@case(fatal=r"'names' must be a list or a mapping")
def yolo_names_a_huge_string(d: Path) -> Path:
    return yolo_ds(d, yaml_text="train: images/train\nnames: " + "x" * 1_000_000 + "\n")


@case(fatal=r"bad YAML in data.yaml")
def yolo_python_object_tag(d: Path) -> Path:
    return yolo_ds(d, yaml_text='names: !!python/object/apply:os.system ["touch pwned"]\n')


@case(fatal=r"bad YAML in data.yaml")
def yolo_yaml_nested_deeply(d: Path) -> Path:
    return yolo_ds(d, yaml_text="names: " + "[" * 20_000 + "]" * 20_000 + "\n")


@case(fatal=r"not a YOLO dataset file")
def yolo_yaml_is_a_list(d: Path) -> Path:
    return yolo_ds(d, yaml_text="- names\n- thing\n")


@case(fatal=r"cannot read data.yaml: it is not UTF-8 text")
def yolo_yaml_latin1(d: Path) -> Path:
    return yolo_ds(d, yaml_text="train: images/train\nnames: [caf\xe9]\n".encode("latin-1"))


@case(fatal=r"cannot read data.yaml: file is 5 MiB \(limit 4 MiB")
def yolo_yaml_too_big(d: Path) -> Path:
    ds = yolo_ds(d)
    sparse(ds / "data.yaml", 5 * MiB, b"names: [thing]\n#")
    return ds


@case(problem=r"only the first 10,000 are kept", imported=2)
def yolo_20k_lines_in_one_label(d: Path) -> Path:
    return yolo_ds(d, label="0 0.5 0.5 0.01 0.01\n" * 20_000)


@case(problem=r"class id 'nan' is not an integer", imported=2)
def yolo_nan_class(d: Path) -> Path:
    return yolo_ds(d, label="nan 0.5 0.5 0.2 0.2\n")


@case(problem=r"NaN or infinite", imported=2)
def yolo_infinite_box(d: Path) -> Path:
    return yolo_ds(d, label="0 1e999 0.5 0.2 0.2\n")


@case(problem=r"cannot read label file \(it is not UTF-8 text\)", imported=2)
def yolo_label_utf16(d: Path) -> Path:
    return yolo_ds(d, label="0 0.5 0.5 0.2 0.2\n".encode("utf-16"))


@case(problem=r"cannot read label file \(file is 17 MiB \(limit 16 MiB", imported=2)
def yolo_label_too_big(d: Path) -> Path:
    ds = yolo_ds(d)
    sparse(ds / "labels" / "train" / "t0.txt", 17 * MiB, b"0 0.5 0.5 0.2 0.2\n")
    return ds


@case(problem=r"not a number in '0 0\.5 x", imported=2)
def yolo_long_garbage_line(d: Path) -> Path:
    return yolo_ds(d, label="0 0.5 x" + "y" * 100_000 + " 0.2 0.2\n")


# == encodings and zips =================================================================================


def _flagless(path: Path) -> None:
    """Clear the UTF-8 flag in every header, as zip tools that write UTF-8 without saying so do."""
    data = bytearray(path.read_bytes())
    for sig, at_flag in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(sig)
        while at != -1:
            flags = struct.unpack("<H", data[at + at_flag : at + at_flag + 2])[0] & ~0x800
            data[at + at_flag : at + at_flag + 2] = struct.pack("<H", flags)
            at = data.find(sig, at + 4)
    path.write_bytes(bytes(data))


@case(imported=2)
def zip_utf8_names_without_the_flag(d: Path) -> Path:
    path = zip_of(d, coco_zip_entries(2, names=["café.jpg", "日本.jpg"]))
    _flagless(path)
    return path


@case(imported=2)
def zip_info_zip_unicode_path_field(d: Path) -> Path:
    doc, files = coco_doc(2, offset=450)
    doc["images"][0]["file_name"] = "crème.jpg"
    path = d / "upload.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ds/annotations.json", json.dumps(doc))
        raw = "ds/images/cr?me.jpg".encode("cp437")
        info = zipfile.ZipInfo("ds/images/cr?me.jpg")
        utf8 = "ds/images/crème.jpg".encode()
        info.extra = struct.pack("<HHBI", 0x7075, 5 + len(utf8), 1, zlib.crc32(raw)) + utf8
        zf.writestr(info, files["img_0.jpg"])
        zf.writestr("ds/images/img_1.jpg", files["img_1.jpg"])
    return path


@case(imported=2)
def zip_cp437_names(d: Path) -> Path:  # old Windows zips: cp437 bytes, no UTF-8 flag
    doc, files = coco_doc(2, offset=470)
    names = {"cafX.jpg": "café.jpg", "naXve.jpg": "naïve.jpg"}  # placeholder -> what the user sees
    for im, real in zip(doc["images"], names.values(), strict=True):
        im["file_name"] = real
    entries = [("ds/annotations.json", json.dumps(doc).encode())]
    entries += [(f"ds/images/{k}", data) for k, data in zip(names, files.values(), strict=True)]
    path = zip_of(d, entries)
    data = path.read_bytes()
    for placeholder, real in names.items():
        data = data.replace(f"ds/images/{placeholder}".encode(), f"ds/images/{real}".encode("cp437"))
    path.write_bytes(data)
    return path


@case(fatal=r"this zip is password-protected; re-zip it without a password")
def zip_encrypted(d: Path) -> Path:
    path = zip_of(d, coco_zip_entries(1))
    data = bytearray(path.read_bytes())
    for sig, at_flag in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(sig)
        while at != -1:
            data[at + at_flag] |= 0x01
            at = data.find(sig, at + 4)
    path.write_bytes(bytes(data))
    return path


@case(fatal=r"unsupported compression method")
def zip_unknown_compression(d: Path) -> Path:
    path = zip_of(d, coco_zip_entries(1))
    patch_headers(path, 8, struct.pack("<H", 97))
    return path


@case(fatal=r"is empty")
def zip_empty(d: Path) -> Path:
    return zip_of(d, [])


@case(fatal=r"not a valid zip file")
def zip_truncated(d: Path) -> Path:
    path = zip_of(d, coco_zip_entries(2))
    path.write_bytes(path.read_bytes()[:200])
    return path


@case(fatal=r"zip is corrupt|both a folder and a file")
def zip_file_and_folder_same_name(d: Path) -> Path:
    return zip_of(d, [("ds/a", b"x"), ("ds/a/b.jpg", image_bytes(3))])


@case(problem=r"not an image or corrupt image", imported=2)
def markup_in_file_name(d: Path) -> Path:
    ds = loose_ds(d)
    (ds / "<img src=x onerror=alert(1)>*_x_*.jpg").write_bytes(b"<html>not a picture</html>")
    return ds


# == images =============================================================================================


@case(problem=r"image data cannot be decoded", imported=2)
def jpeg_header_fine_data_undecodable(d: Path) -> Path:
    ds = loose_ds(d)
    (ds / "undecodable.jpg").write_bytes(undecodable_jpeg())
    return ds


@case(problem=r"corrupt image|cannot be decoded", imported=2)
def png_idat_garbage_with_good_crc(d: Path) -> Path:
    ds = loose_ds(d)
    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    body = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", b"not zlib at all")
        + png_chunk(b"IEND", b"")
    )
    (ds / "garbage.png").write_bytes(body)
    return ds


@case(problem=r"empty file \(0 bytes\)", imported=2)
def zero_byte_image(d: Path) -> Path:
    ds = loose_ds(d)
    (ds / "empty.jpg").write_bytes(b"")
    return ds


@case(problem=r"truncated JPEG|Truncated File Read", imported=2)
def truncated_jpeg(d: Path) -> Path:
    ds = loose_ds(d)
    data = image_bytes(5, size=(64, 48))
    (ds / "cut.jpg").write_bytes(data[: len(data) // 2])
    return ds


@case(problem=r"all 2 images are already in this project \(same content\)", imported=0)
def reimport_of_what_the_project_holds(d: Path) -> Path:
    return base_dataset(d)


# -- XML and the other hand-labeling formats (issue 14) ---------------------------------------------------

XML_BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    + "]><annotation><filename>v0.jpg</filename><object><name>&lol9;</name><bndbox><xmin>1</xmin>"
    "<ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
)


def voc_ds(d: Path, n: int = 2, first_xml: str | bytes | None = None) -> Path:
    """``d/ds``: a Pascal VOC devkit layout with one class ``thing``; ``first_xml`` replaces v0.xml."""
    ds = d / "ds"
    (ds / "JPEGImages").mkdir(parents=True)
    (ds / "Annotations").mkdir()
    for i in range(n):
        (ds / "JPEGImages" / f"v{i}.jpg").write_bytes(image_bytes(400 + i))
        (ds / "Annotations" / f"v{i}.xml").write_text(
            f"<annotation><filename>v{i}.jpg</filename><size><width>32</width><height>24</height></size>"
            "<object><name>thing</name><bndbox><xmin>4</xmin><ymin>4</ymin><xmax>14</xmax><ymax>12</ymax>"
            "</bndbox></object></annotation>"
        )
    if first_xml is not None:
        p = ds / "Annotations" / "v0.xml"
        p.write_bytes(first_xml if isinstance(first_xml, bytes) else first_xml.encode())
    return ds


@case(problem=r"declares a DTD or entities.*XML bomb", imported=2)
def voc_billion_laughs(d: Path) -> Path:
    return voc_ds(d, first_xml=XML_BOMB)


@case(problem=r"declares a DTD or entities", imported=2)
def voc_external_entity_reads_a_file(d: Path) -> Path:
    return voc_ds(
        d,
        first_xml='<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<annotation><filename>v0.jpg</filename><object><name>&x;</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>",
    )


@case(problem=r"declares a DTD or entities", imported=2)
def voc_parameter_entity_fetches_a_dtd(d: Path) -> Path:
    return voc_ds(
        d,
        first_xml='<?xml version="1.0"?><!DOCTYPE a [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>'
        "<annotation><filename>v0.jpg</filename></annotation>",
    )


@case(problem=r"is not well-formed XML", imported=2)
def voc_not_well_formed(d: Path) -> Path:
    return voc_ds(d, first_xml="<annotation><filename>v0.jpg</filename><object>")


@case(imported=2)
def voc_nested_100k_deep(d: Path) -> Path:  # expat does not recurse: a deep file is just odd, not a crash
    return voc_ds(d, first_xml="<annotation>" + "<a>" * 100_000 + "</a>" * 100_000 + "</annotation>")


@case(problem=r"object <name> is 1,000,000 characters long|object <name> is 1000000", imported=2)
def voc_class_name_one_megabyte(d: Path) -> Path:
    return voc_ds(
        d,
        first_xml="<annotation><filename>v0.jpg</filename><object><name>"
        + "n" * 1_000_000
        + "</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>",
    )


@case(problem=r"<bndbox> needs numeric", imported=2)
def voc_box_of_words(d: Path) -> Path:
    return voc_ds(
        d,
        first_xml="<annotation><filename>v0.jpg</filename><object><name>thing</name><bndbox><xmin>nan</xmin>"
        "<ymin>1</ymin><xmax>inf</xmax><ymax>9</ymax></bndbox></object></annotation>",
    )


@case(problem=r"is a named pipe|not a regular file", imported=2)
def voc_annotation_is_a_fifo(d: Path) -> Path:
    ds = voc_ds(d)
    (ds / "Annotations" / "v0.xml").unlink()
    mkfifo(ds / "Annotations" / "v0.xml")
    return ds


@case(fatal=r"declares a DTD or entities")
def cvat_billion_laughs(d: Path) -> Path:
    ds = loose_ds(d)
    (ds / "annotations.xml").write_text(
        XML_BOMB.replace("<annotation>", "<annotations>").replace("</annotation>", "</annotations>")
    )
    return ds


@case(problem=r"declares a DTD or entities", imported=2)
def zip_of_voc_with_a_bomb(d: Path) -> Path:
    ds = voc_ds(d, first_xml=XML_BOMB)
    return zip_of(
        d, [(p.relative_to(d).as_posix(), p.read_bytes()) for p in sorted(ds.rglob("*")) if p.is_file()]
    )


@case(problem=r"cannot read LabelMe file", imported=2)
def labelme_nested_100k_deep(d: Path) -> Path:
    ds = loose_ds(d)
    (ds / "p0.json").write_text('{"shapes": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return ds


@case(problem=r"shape label is not text", imported=2)
def labelme_label_is_a_list(d: Path) -> Path:
    ds = loose_ds(d)
    doc = {
        "shapes": [{"label": ["x"] * 9, "points": [[1, 1], [5, 5]], "shape_type": "rectangle"}],
        "imagePath": "p0.jpg",
    }
    (ds / "p0.json").write_text(json.dumps(doc))
    return ds


@case(imported=3)
def exif_orientation_out_of_range(d: Path) -> Path:  # 0, 9 and 65535 are not orientations: kept as stored
    ds = loose_ds(d)
    for i, value in enumerate((0, 9, 65535)):
        exif = Image.Exif()
        exif[0x0112] = value
        buf = io.BytesIO()
        Image.new("RGB", (20, 10), (i * 70, 40, 90)).save(buf, "JPEG", exif=exif.tobytes())
        (ds / f"odd{i}.jpg").write_bytes(buf.getvalue())
    (ds / "p0.jpg").unlink()
    (ds / "p1.jpg").unlink()
    return ds


def base_dataset(d: Path) -> Path:
    """What the template project already holds (the re-import case imports it again)."""
    return coco_ds(d, n=2, offset=0)


assert len({c.name for c in CASES}) == len(CASES)
