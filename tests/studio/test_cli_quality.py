"""``rfdetr-studio duplicates`` and ``next`` end to end in a subprocess, on a project with a planted copy."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from tests.studio.test_cli_commands import ok_json, studio
from tests.support import datagen


def test_duplicates_and_next_as_json(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    ds = tmp_path / "ds"
    datagen.coco_roboflow(ds, {"train": 3, "valid": 2})
    ok_json(studio(root, "projects", "create", "Copies", "--json"))
    ok_json(studio(root, "import", "copies", str(ds), "--json"))
    loose = tmp_path / "loose"
    loose.mkdir()
    original = next(p for p in sorted((ds / "train").iterdir()) if p.suffix in {".jpg", ".png"})
    with Image.open(original) as im:  # a resized, re-encoded copy: not byte-identical, still a near-copy
        im.convert("RGB").resize((im.width // 2, im.height // 2)).save(loose / "copy_of_it.jpg", quality=70)
    shutil.copy(original, loose / "unused.txt")  # not an image: skipped by the import
    ok_json(studio(root, "import", "copies", str(loose), "--json"))

    dups = ok_json(studio(root, "duplicates", "copies", "--json"))
    names = [{img["file_name"] for img in g["images"]} for g in dups["groups"]]
    assert any("copy_of_it.jpg" in group and len(group) >= 2 for group in names), dups

    ranked = ok_json(studio(root, "next", "copies", "-n", "5", "--json"))
    assert ranked and "copy_of_it" in str(ranked)  # the only unlabeled image, with its reason
    assert studio(root, "next", "no-such-project").returncode == 1
