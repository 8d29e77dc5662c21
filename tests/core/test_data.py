"""Datasets of rfdetr_core.data: class rules, targets vs the reference, YOLO == COCO, bad datasets, collate."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from rfdetr_core.data import (
    AugmentConfig,
    DatasetError,
    build_dataset,
    collate,
    detect_format,
    detect_num_classes,
    load_class_map,
    load_class_names,
    make_collate_fn,
    resize_batch,
    validate_dataset,
)
from rfdetr_core.data.classes import trainable_categories
from tests.support.detection_data import (
    HIERARCHY,
    LEAF_IDS,
    LEAVES,
    Scene,
    make_coco_dataset,
    make_yolo_dataset,
    random_scenes,
    write_coco_split,
)

EVAL_KEYS = ["boxes", "labels", "image_id", "area", "iscrowd", "orig_size", "size"]


def reference_args(root: Path, **extra) -> SimpleNamespace:
    """The namespace the reference's dataset builders read (Nano: patch 16, 2 windows)."""
    base = dict(
        dataset_dir=str(root),
        square_resize_div_64=True,
        segmentation_head=False,
        multi_scale=False,
        expanded_scales=True,
        patch_size=16,
        num_windows=2,
        aug_config={},
        scale_jitter=False,
    )
    return SimpleNamespace(**{**base, **extra})


def assert_same_sample(ours, theirs, atol: float = 0.0) -> None:
    our_image, our_target = ours
    ref_image, ref_target = theirs
    assert our_image.shape == ref_image.shape and our_image.dtype == ref_image.dtype
    torch.testing.assert_close(our_image, ref_image, atol=atol, rtol=0)
    assert sorted(our_target) == sorted(ref_target) == sorted(EVAL_KEYS)
    for key in EVAL_KEYS:
        assert our_target[key].dtype == ref_target[key].dtype, key
        torch.testing.assert_close(our_target[key], ref_target[key], atol=atol, rtol=0, msg=key)


# ----------------------------------------------------------------------------------------------- classes
def test_class_rules_by_example() -> None:
    flat = [{"id": 3, "name": "b", "supercategory": "none"}, {"id": 1, "name": "a", "supercategory": ""}]
    assert [c["name"] for c in trainable_categories(flat)] == ["a", "b"]  # sorted by id, nothing dropped
    roboflow = [
        {"id": 0, "name": "root", "supercategory": "none"},
        {"id": 1, "name": "x", "supercategory": "root"},
    ]
    assert [c["name"] for c in trainable_categories(roboflow, {1})] == ["x"]  # root grouping node dropped
    assert [c["name"] for c in trainable_categories(roboflow, {0, 1})] == [
        "root",
        "x",
    ]  # annotated parent kept
    assert [c["name"] for c in trainable_categories(HIERARCHY, set(LEAF_IDS))] == LEAVES  # self-parented kept
    loop = [{"id": 1, "name": "a", "supercategory": "b"}, {"id": 2, "name": "b", "supercategory": "a"}]
    assert [c["name"] for c in trainable_categories(loop)] == ["a", "b"]  # all parents: keep everything


@pytest.mark.oracle
@pytest.mark.parametrize("seed", range(25))
def test_class_rules_match_reference_on_random_hierarchies(seed: int) -> None:
    from rfdetr.datasets.coco import filter_parent_categories

    rng = random.Random(seed)
    names = [f"c{i}" for i in range(rng.randint(1, 8))]
    placeholders = ["none", "", None, "null"]
    categories = []
    for i, name in enumerate(names):
        sup = rng.choice(placeholders + names + [name])
        categories.append({"id": rng.sample(range(50), 1)[0] * 100 + i, "name": name, "supercategory": sup})
    annotated = {c["id"] for c in categories if rng.random() < 0.4}
    ours = trainable_categories(categories, annotated)
    assert ours == filter_parent_categories(categories, annotated)


@pytest.mark.oracle
def test_class_names_and_count_match_reference(tmp_path: Path) -> None:
    from rfdetr.detr import RFDETR

    make_coco_dataset(tmp_path / "coco")
    assert load_class_names(tmp_path / "coco") == RFDETR._load_classes(str(tmp_path / "coco")) == LEAVES
    assert detect_num_classes(tmp_path / "coco") == RFDETR._detect_num_classes_for_training(
        str(tmp_path / "coco")
    )
    scenes = {"train": random_scenes(3, 3, 0), "valid": random_scenes(2, 3, 1)}
    make_yolo_dataset(tmp_path / "yolo", scenes, {0: "a", 1: "b", 2: "c"})
    assert (
        load_class_names(tmp_path / "yolo") == RFDETR._load_classes(str(tmp_path / "yolo")) == ["a", "b", "c"]
    )
    assert detect_format(tmp_path / "coco") == "coco" and detect_format(tmp_path / "yolo") == "yolo"


# ------------------------------------------------------------------------------------ targets vs reference
def _awkward_coco(root: Path) -> None:
    """Sparse ids, hierarchy, a crowd region, a box leaving the image, a zero-width box, empty images."""
    make_coco_dataset(root, {"train": 6, "valid": 5})
    for split in ("train", "valid"):
        path = root / split / "_annotations.coco.json"
        doc = json.loads(path.read_text())
        first = doc["images"][0]
        extra = [
            {
                "image_id": first["id"],
                "category_id": 9,
                "bbox": [5.0, 5.0, 20.0, 10.0],
                "area": 150.0,
                "iscrowd": 1,
            },
            {
                "image_id": first["id"],
                "category_id": 5,
                "bbox": [first["width"] - 10.5, 3.25, 40.0, 12.5],
                "area": 500.0,
                "iscrowd": 0,
            },
            {"image_id": first["id"], "category_id": 7, "bbox": [10.0, 10.0, 0.0, 5.0], "area": 0.0},
        ]
        for ann in extra:
            doc["annotations"].append(dict(ann, id=len(doc["annotations"])))
        path.write_text(json.dumps(doc))


@pytest.mark.oracle
@pytest.mark.parametrize("split", ["val", "test"])
def test_coco_eval_samples_equal_reference(tmp_path: Path, split: str) -> None:
    from rfdetr.datasets.coco import build_roboflow_from_coco

    _awkward_coco(tmp_path)
    shutil.copytree(tmp_path / "valid", tmp_path / "test")
    ours = build_dataset(tmp_path, split, 384)
    theirs = build_roboflow_from_coco(split, reference_args(tmp_path), 384)
    assert len(ours) == len(theirs) == 5
    for index in range(len(ours)):
        assert_same_sample(ours[index], theirs[index])


@pytest.mark.oracle
def test_coco_train_samples_without_augmentation_equal_reference(tmp_path: Path) -> None:
    from rfdetr.datasets.coco import build_roboflow_from_coco

    _awkward_coco(tmp_path)
    plain = AugmentConfig(horizontal_flip=0.0, scale_jitter=False, multi_scale="off")
    ours = build_dataset(tmp_path, "train", 320, plain)
    theirs = build_roboflow_from_coco("train", reference_args(tmp_path), 320)
    for index in range(len(ours)):
        assert_same_sample(ours[index], theirs[index])


@pytest.mark.oracle
def test_valid_split_uses_train_label_space(tmp_path: Path) -> None:
    """A grouping category annotated only in valid must not shift valid's label indices."""
    from rfdetr.datasets.coco import build_roboflow_from_coco

    make_coco_dataset(tmp_path, {"train": 3, "valid": 3})
    path = tmp_path / "valid" / "_annotations.coco.json"
    doc = json.loads(path.read_text())
    doc["categories"].append({"id": 1, "name": "unused", "supercategory": "none"})
    path.write_text(json.dumps(doc))
    ours = build_dataset(tmp_path, "valid", 256)
    theirs = build_roboflow_from_coco("val", reference_args(tmp_path), 256)
    for index in range(len(ours)):
        assert_same_sample(ours[index], theirs[index])
    labels = torch.cat([ours[i][1]["labels"] for i in range(len(ours))])
    assert labels.numel() and int(labels.max()) < len(LEAVES)


@pytest.mark.oracle
def test_yolo_eval_samples_equal_reference(tmp_path: Path) -> None:
    from rfdetr.datasets.yolo import build_roboflow_from_yolo

    scenes = {"train": random_scenes(5, 3, 10), "valid": random_scenes(6, 3, 11)}
    make_yolo_dataset(tmp_path, scenes, ["a", "b", "c"])
    ours = build_dataset(tmp_path, "val", 256)
    theirs = build_roboflow_from_yolo("val", reference_args(tmp_path), 256)
    assert len(ours) == len(theirs) == 6
    for index in range(len(ours)):
        assert_same_sample(ours[index], theirs[index])


def test_yolo_and_coco_give_the_same_targets(tmp_path: Path) -> None:
    scenes = {"train": random_scenes(4, len(LEAVES), 20), "valid": random_scenes(8, len(LEAVES), 21)}
    for k, (split, split_scenes) in enumerate(scenes.items()):
        write_coco_split(tmp_path / "coco" / split, split_scenes, HIERARCHY, LEAF_IDS, seed=k)
    make_yolo_dataset(tmp_path / "yolo", scenes, LEAVES)
    assert load_class_names(tmp_path / "coco") == load_class_names(tmp_path / "yolo")
    coco, yolo = (
        build_dataset(tmp_path / "coco", "valid", 384),
        build_dataset(tmp_path / "yolo", "valid", 384),
    )
    assert len(coco) == len(yolo) == 8
    for index in range(len(coco)):
        (coco_image, coco_target), (yolo_image, yolo_target) = coco[index], yolo[index]
        assert torch.equal(coco_image, yolo_image)
        assert torch.equal(coco_target["labels"], yolo_target["labels"])
        expected = torch.as_tensor([c for c, _ in scenes["valid"][index].boxes], dtype=torch.int64)
        assert torch.equal(coco_target["labels"], expected)
        for key in ("boxes", "area"):
            torch.testing.assert_close(coco_target[key], yolo_target[key], atol=1e-4, rtol=1e-6)
        for key in ("orig_size", "size", "iscrowd"):
            assert torch.equal(coco_target[key], yolo_target[key])


def test_studio_synthetic_dataset_trains_leaf_classes(tmp_path: Path) -> None:
    from studio.services.projects.synthetic import LEAF_CLASSES, make_synthetic_coco

    make_synthetic_coco(tmp_path, {"train": 3, "valid": 2}, size=(160, 120))
    assert load_class_names(tmp_path) == LEAF_CLASSES
    dataset = build_dataset(tmp_path, "train", 256)
    for image, target in (dataset[i] for i in range(len(dataset))):
        assert image.shape[0] == 3 and image.shape[1] == image.shape[2] and image.shape[1] % 32 == 0
        assert target["boxes"].shape[1] == 4 and bool(
            (target["boxes"] >= 0).all() and (target["boxes"] <= 1).all()
        )
    labels = torch.cat([dataset[i][1]["labels"] for i in range(len(dataset))])
    assert labels.numel() and int(labels.max()) < len(LEAF_CLASSES)


# -------------------------------------------------------------------------------------------- bad datasets
def _coco_doc(root: Path, split: str = "train") -> tuple[Path, dict]:
    path = root / split / "_annotations.coco.json"
    return path, json.loads(path.read_text())


def _edit_coco(root: Path, edit, split: str = "train") -> None:
    path, doc = _coco_doc(root, split)
    edit(doc)
    path.write_text(json.dumps(doc))


def _first_ann(doc: dict) -> dict:
    return doc["annotations"][0]


COCO_BREAKAGES = {
    "missing valid split": (lambda root: shutil.rmtree(root / "valid"), "valid split is missing"),
    "not json": (
        lambda root: (root / "valid" / "_annotations.coco.json").write_text("{oops"),
        "Could not parse",
    ),
    "no categories": (lambda root: _edit_coco(root, lambda d: d.pop("categories")), "no 'categories'"),
    "unknown category": (
        lambda root: _edit_coco(root, lambda d: _first_ann(d).update(category_id=99)),
        "category id 99",
    ),
    "unknown image": (
        lambda root: _edit_coco(root, lambda d: _first_ann(d).update(image_id=999)),
        "image id 999",
    ),
    "short bbox": (
        lambda root: _edit_coco(root, lambda d: _first_ann(d).update(bbox=[1, 2, 3])),
        "bbox [1, 2, 3]",
    ),
    "negative size": (
        lambda root: _edit_coco(root, lambda d: _first_ann(d).update(bbox=[1, 2, -3, 4])),
        "negative",
    ),
    "no bbox": (lambda root: _edit_coco(root, lambda d: _first_ann(d).pop("bbox")), "has no 'bbox'"),
    "missing image file": (lambda root: (root / "valid" / "valid_000.png").unlink(), "valid_000.png"),
    "nameless category": (
        lambda root: _edit_coco(root, lambda d: d["categories"][3].pop("name")),
        "has no 'name'",
    ),
}


@pytest.mark.parametrize("case", sorted(COCO_BREAKAGES))
def test_broken_coco_dataset_fails_early_with_a_clear_message(tmp_path: Path, case: str) -> None:
    make_coco_dataset(tmp_path, {"train": 3, "valid": 2})
    breakage, message = COCO_BREAKAGES[case]
    breakage(tmp_path)
    with pytest.raises(DatasetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_dataset(tmp_path)


def _yolo_label(root: Path) -> Path:
    return sorted((root / "train" / "labels").glob("*.txt"))[0]


YOLO_BREAKAGES = {
    "class out of range": (
        lambda root: _yolo_label(root).write_text("7 0.5 0.5 0.1 0.1\n"),
        "class id 7 is outside",
    ),
    "too few fields": (lambda root: _yolo_label(root).write_text("0 0.5 0.5 0.1\n"), "got 4 fields"),
    "not a number": (lambda root: _yolo_label(root).write_text("0 0.5 half 0.1 0.1\n"), "must be numbers"),
    "class not an integer": (
        lambda root: _yolo_label(root).write_text("cat 0.5 0.5 0.1 0.1\n"),
        "not an integer",
    ),
    "no names": (
        lambda root: (root / "data.yaml").write_text(yaml.safe_dump({"train": "train/images"})),
        "'names'",
    ),
    "names with a gap": (
        lambda root: (root / "data.yaml").write_text(yaml.safe_dump({"names": {0: "a", 2: "c"}})),
        "without gaps",
    ),
    "missing valid split": (lambda root: shutil.rmtree(root / "valid"), "valid split of the YOLO dataset"),
    "unreadable image": (
        lambda root: sorted((root / "train" / "images").glob("*.png"))[0].write_bytes(b"xx"),
        "Could not open image",
    ),
}


@pytest.mark.parametrize("case", sorted(YOLO_BREAKAGES))
def test_broken_yolo_dataset_fails_early_with_a_clear_message(tmp_path: Path, case: str) -> None:
    make_yolo_dataset(
        tmp_path,
        {"train": random_scenes(3, 3, 1, empty_every=0), "valid": random_scenes(2, 3, 2)},
        ["a", "b", "c"],
    )
    breakage, message = YOLO_BREAKAGES[case]
    breakage(tmp_path)
    with pytest.raises(DatasetError, match=message):
        validate_dataset(tmp_path)


def test_unrecognised_folders_fail_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        validate_dataset(tmp_path / "nowhere")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match="Could not recognise the dataset format"):
        build_dataset(tmp_path, "train", 384)
    with pytest.raises(DatasetError, match="Unknown split"):
        build_dataset(tmp_path, "holdout", 384)


def test_valid_dataset_passes_validation(tmp_path: Path) -> None:
    make_coco_dataset(tmp_path)
    class_map = validate_dataset(tmp_path)
    assert list(class_map.names) == LEAVES and class_map.label2cat == dict(enumerate(LEAF_IDS))
    assert load_class_map(tmp_path).cat2label == {cid: i for i, cid in enumerate(LEAF_IDS)}


def test_background_images_and_empty_label_files_are_fine(tmp_path: Path) -> None:
    scenes = {
        "train": [Scene("a.png", 80, 60), *random_scenes(2, 2, 3, empty_every=0)],
        "valid": random_scenes(2, 2, 4),
    }
    make_yolo_dataset(tmp_path, scenes, ["a", "b"])
    (tmp_path / "train" / "labels" / "a.txt").write_text("\n\n")
    dataset = build_dataset(tmp_path, "train", 128)
    assert dataset[0][1]["boxes"].shape == (0, 4) and dataset[0][1]["labels"].shape == (0,)


# ------------------------------------------------------------------------------------------------ collate
def test_collate_pads_to_block_multiples_with_a_mask() -> None:
    images = [torch.rand(3, 40, 50), torch.rand(3, 64, 30)]
    targets = [{"labels": torch.tensor([1])}, {"labels": torch.tensor([], dtype=torch.int64)}]
    batch, out_targets = make_collate_fn(32)(list(zip(images, targets, strict=True)))
    assert batch.tensors.shape == (2, 3, 64, 64) and batch.mask.shape == (2, 64, 64)
    assert torch.equal(batch.tensors[0, :, :40, :50], images[0]) and torch.equal(
        batch.tensors[1, :, :64, :30], images[1]
    )
    assert not batch.mask[0, :40, :50].any() and batch.mask[0, 40:].all() and batch.mask[0, :, 50:].all()
    assert not batch.mask[1, :, :30].any() and batch.mask[1, :, 30:].all()
    assert float(batch.tensors[0, :, 40:].abs().sum()) == 0.0
    assert out_targets == targets
    unrounded, _ = collate(list(zip(images, targets, strict=True)))
    assert unrounded.tensors.shape == (2, 3, 64, 50)


@pytest.mark.oracle
def test_collate_matches_reference_nested_tensor() -> None:
    from rfdetr.utilities.tensors import nested_tensor_from_tensor_list

    images = [torch.rand(3, 37, 61), torch.rand(3, 70, 20), torch.rand(3, 64, 64)]
    ours, _ = collate([(image, {}) for image in images], block_size=32)
    theirs = nested_tensor_from_tensor_list(images, block_size=32)
    assert torch.equal(ours.tensors, theirs.tensors) and torch.equal(ours.mask, theirs.mask)


def test_resize_batch_rescales_images_and_mask() -> None:
    batch, _ = collate([(torch.rand(3, 64, 64), {}), (torch.rand(3, 32, 64), {})])
    resized = resize_batch(batch, 96)
    assert resized.tensors.shape == (2, 3, 96, 96) and resized.mask.dtype == torch.bool
    assert not resized.mask[0].any() and resized.mask[1, 60:].all() and not resized.mask[1, :40].any()
    assert np.isclose(float(resized.tensors[0].mean()), float(batch.tensors[0].mean()), atol=0.02)


def test_datasets_batch_through_a_dataloader_and_pickle_for_workers(tmp_path: Path) -> None:
    import pickle

    from torch.utils.data import DataLoader

    make_coco_dataset(tmp_path / "coco", {"train": 5, "valid": 2})
    scenes = {"train": random_scenes(5, 3, 5), "valid": random_scenes(2, 3, 6)}
    make_yolo_dataset(tmp_path / "yolo", scenes, ["a", "b", "c"])
    for root in (tmp_path / "coco", tmp_path / "yolo"):
        dataset = build_dataset(root, "train", 256, AugmentConfig(multi_scale="per-sample"), block_size=32)
        clone = pickle.loads(pickle.dumps(dataset))
        assert len(clone) == len(dataset)
        loader = DataLoader(dataset, batch_size=2, collate_fn=make_collate_fn(32), shuffle=False)
        seen = 0
        for batch, targets in loader:
            assert batch.tensors.shape[-1] % 32 == 0 and batch.tensors.shape[-2] % 32 == 0
            assert len(targets) == batch.tensors.shape[0]
            for target in targets:
                assert set(EVAL_KEYS) == set(target) and target["boxes"].shape == (len(target["labels"]), 4)
            seen += len(targets)
        assert seen == len(dataset)


@pytest.mark.oracle
def test_ultralytics_yolo_layout_equals_reference(tmp_path: Path) -> None:
    """``images/<split>`` + ``labels/<split>`` declared in data.yaml (with a ``path:`` base)."""
    from rfdetr.datasets.yolo import build_roboflow_from_yolo

    from tests.support.detection_data import write_yolo_split

    for folder, seed in (("train", 30), ("val", 31)):
        write_yolo_split(tmp_path / "staging", folder, random_scenes(3, 2, seed), seed=seed)
        for kind in ("images", "labels"):
            shutil.move(tmp_path / "staging" / folder / kind, tmp_path / kind / folder)
    data = {"path": ".", "train": "images/train", "val": "images/val", "names": ["p", "q"]}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(data))
    shutil.rmtree(tmp_path / "staging")
    ours = build_dataset(tmp_path, "valid", 192)
    theirs = build_roboflow_from_yolo("val", reference_args(tmp_path), 192)
    assert len(ours) == len(theirs) == 3
    for index in range(len(ours)):
        assert_same_sample(ours[index], theirs[index])
    assert validate_dataset(tmp_path).names == ("p", "q")


def test_roboflow_yolo_export_paths_and_empty_splits(tmp_path: Path) -> None:
    """Roboflow writes ``train: ../train/images`` (outside the root): the folder convention takes over."""
    scenes = {"train": random_scenes(2, 2, 40, empty_every=0), "valid": random_scenes(2, 2, 41)}
    make_yolo_dataset(tmp_path, scenes, ["a", "b"])
    data = {"train": "../train/images", "val": "../valid/images", "nc": 2, "names": ["a", "b"]}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(data))
    assert len(build_dataset(tmp_path, "train", 128)) == 2
    for image in (tmp_path / "valid" / "images").iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match="valid split .* contains no images"):
        validate_dataset(tmp_path, ("train", "valid"))
