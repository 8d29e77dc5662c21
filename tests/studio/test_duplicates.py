"""Near-duplicates and leakage (issue 18): threshold calibration on planted copies, groups, leakage
counted across splits, the two one-click fixes, the import check and the JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from studio.errors import StudioError
from studio.services.data import duplicates as dup
from studio.store.models import Annotation, Image
from tests.support.duplicate_fixtures import COPY_KINDS, leaky_project, planted_copy, scenes


def test_threshold_calibration_on_planted_copies(tmp_path: Path) -> None:
    """Resize 60 %, JPEG q50, 5 % crop, brightness +10 %, 8 px shift: recall ≥ 0.95; distinct scenes of
    the same generator: false pairs ≤ 1 % (measured: recall 1.0, no false pair)."""
    originals = scenes(30, seed=21)
    distinct = scenes(90, seed=22)
    paths = []
    for i, im in enumerate(originals):
        paths.append(tmp_path / f"o{i}.png")
        im.save(paths[-1])
        for kind in COPY_KINDS:
            paths.append(tmp_path / f"o{i}-{kind}.jpg")
            planted_copy(im, kind).save(paths[-1], quality=90)
    for i, im in enumerate(distinct):
        paths.append(tmp_path / f"d{i}.jpg")
        im.save(paths[-1], quality=90)
    hashes = dup.phash_files(paths)
    assert None not in hashes
    bits = dup.hash_bits(hashes)
    per_original = 1 + len(COPY_KINDS)
    dist = dup.distances_to(bits, bits)
    planted = [
        dist[i * per_original, i * per_original + 1 + k] for i in range(30) for k in range(len(COPY_KINDS))
    ]
    recall = np.mean(np.array(planted) <= dup.NEAR_BITS)
    assert recall >= 0.95, sorted(planted)[-10:]
    bases = [i * per_original for i in range(30)] + list(range(30 * per_original, len(paths)))
    sub = dist[np.ix_(bases, bases)][np.triu_indices(len(bases), 1)]
    false_rate = np.mean(sub <= dup.NEAR_BITS)
    assert false_rate <= 0.01, np.sort(sub)[:10]
    groups = dup.group_indices(len(paths), dup.near_pairs(bits))
    assert sum(1 for g in groups if len(g) == per_original) >= 28


def test_groups_and_leakage_across_splits(tmp_path: Path) -> None:
    store, ids = leaky_project(tmp_path)
    report = dup.find_duplicates(store)
    got = sorted(sorted(im.id for im in g.images) for g in report.groups)
    assert got == sorted(sorted(ids[k]) for k in ("leak", "same", "test"))
    assert report.leaked_count("valid") == 2 and report.leaked_count("test") == 1
    assert {p.eval_image.id for p in report.leakage} == set(ids["leak"][1:] + ids["test"][1:])
    assert all(p.train_image.split == "train" for p in report.leakage)
    assert [g.is_leakage for g in report.groups] == [True, True, False]  # leakage listed first
    assert dup.leakage_line(store) == (
        "2 validation images have a near-copy in train; 1 test image has a near-copy in train: "
        "mAP may be optimistic."
    )
    assert "3 group(s) of near-duplicates (7 of 19 images)" in report.summary()
    assert (store.path / dup.CACHE_FILE).is_file()
    store.close()


def test_cache_is_keyed_by_content_hash(tmp_path: Path) -> None:
    store, ids = leaky_project(tmp_path)
    dup.find_duplicates(store)
    cache = json.loads((store.path / dup.CACHE_FILE).read_text())
    with store.session(readonly=True) as s:
        a, b = (s.get_one(Image, ids["distinct"][0]), s.get_one(Image, ids["distinct"][1]))
    cache[b.content_hash] = cache[a.content_hash]  # the cached value is what the next run uses
    (store.path / dup.CACHE_FILE).write_text(json.dumps(cache))
    groups = [{im.id for im in g.images} for g in dup.find_duplicates(store).groups]
    assert {a.id, b.id} in groups
    store.close()


def test_move_group_fixes_leakage_and_keep_one_deletes_the_rest(tmp_path: Path) -> None:
    store, ids = leaky_project(tmp_path)
    assert dup.move_group(store, ids["leak"], "valid") == 1
    report = dup.find_duplicates(store)
    assert report.leaked_count("valid") == 0 and report.leaked_count("test") == 1
    with pytest.raises(StudioError, match="Unknown split"):
        dup.move_group(store, ids["leak"], "holdout")
    with store.session(readonly=True) as s:
        files = [s.get_one(Image, i).file_name for i in ids["test"]]
    deleted = dup.keep_one(store, ids["test"][0], ids["test"])
    assert deleted == ["test1.png"]
    with store.session(readonly=True) as s:
        left = set(s.scalars(select(Image.id)))
        boxes = set(s.scalars(select(Annotation.image_id)))
    assert ids["test"][0] in left and ids["test"][1] not in left and ids["test"][1] not in boxes
    assert (store.path / files[0]).is_file() and not (store.path / files[1]).exists()
    assert dup.leakage_line(store) == ""
    with pytest.raises(StudioError, match="no longer exist"):
        dup.keep_one(store, ids["test"][0], ids["test"])
    store.close()


def test_near_duplicates_of_incoming_files_and_json_report(tmp_path: Path) -> None:
    store, ids = leaky_project(tmp_path)
    original = scenes(15, seed=11, size=(320, 240))
    incoming = [tmp_path / "in-copy.jpg", tmp_path / "in-new.png", tmp_path / "broken.jpg"]
    planted_copy(original[3], "bright10").save(incoming[0], quality=80)
    scenes(1, seed=99, size=(320, 240))[0].save(incoming[1])
    incoming[2].write_bytes(b"not an image")
    found = dup.near_duplicates_of(store, incoming)
    assert [(Path(f.path).name, f.image_id) for f in found] == [("in-copy.jpg", ids["distinct"][0])]
    assert "in-copy.jpg is a near-copy" in found[0].message() and "d0.png (valid;" in found[0].message()
    data = dup.duplicates_report(store)
    assert json.loads(json.dumps(data)) == data
    assert data["leaked_valid"] == 2 and data["leaked_test"] == 1 and len(data["groups"]) == 3
    assert {p["eval"]["file_name"] for p in data["leakage_pairs"]} == {"leak1.png", "leak2.png", "test1.png"}
    store.close()


def test_flat_images_are_never_grouped(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    paths = [tmp_path / f"flat{i}.png" for i in range(3)]
    for i, path in enumerate(paths):
        PILImage.new("RGB", (64, 48), (40 * i, 200 - 30 * i, 90)).save(path)
    textured = tmp_path / "scene.png"
    scenes(1, seed=3, size=(160, 120))[0].save(textured)
    assert dup.phash_files([*paths, textured])[:3] == [dup.FLAT] * 3
    assert len(dup.phash_file(textured)) == 64
