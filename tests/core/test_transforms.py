"""The augmentation pipeline: reference sizes and ops, seeding, preview, and boxes that follow the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from rfdetr_core.data.transforms import (
    AugmentConfig,
    AugmentPipeline,
    multi_scale_sizes,
    to_model_input,
    to_uint8_image,
    training_sizes,
)

RED = (230, 20, 20)
BLUE = (20, 40, 230)


def two_box_image(width: int = 220, height: int = 160) -> tuple[Image.Image, np.ndarray]:
    """Grey noise with a red and a blue rectangle; returns the image and the boxes (xyxy, exclusive max)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(100, 140, (height, width, 3), dtype=np.uint8)
    boxes = np.array([[20, 30, 90, 100], [120, 20, 200, 70]], dtype=np.float32)
    for (x0, y0, x1, y1), colour in zip(boxes.astype(int), (RED, BLUE), strict=True):
        pixels[y0:y1, x0:x1] = colour
    return Image.fromarray(pixels), boxes


@pytest.mark.oracle
@pytest.mark.parametrize(
    "resolution,block", [(384, 32), (512, 32), (560, 56), (704, 32), (320, 32), (96, 32)]
)
@pytest.mark.parametrize("expanded", [True, False])
def test_multi_scale_sizes_match_reference(resolution: int, block: int, expanded: bool) -> None:
    from rfdetr.datasets.coco import compute_multi_scale_scales

    patch, windows = (14, 4) if block == 56 else (16, 2)
    assert multi_scale_sizes(resolution, block, expanded) == compute_multi_scale_scales(
        resolution, expanded, patch, windows
    )


def test_training_sizes_per_mode() -> None:
    sizes = multi_scale_sizes(384, 32)
    assert sizes == list(range(224, 545, 32))
    assert training_sizes(AugmentConfig(), 384, 32) == [544]  # per-batch: the largest; the trainer rescales
    assert training_sizes(AugmentConfig(multi_scale="per-sample"), 384, 32) == sizes
    assert training_sizes(AugmentConfig(multi_scale="off"), 384, 32) == [384]


@pytest.mark.oracle
@pytest.mark.parametrize("vertical", [False, True])
def test_resize_then_flip_equals_reference_ops(vertical: bool) -> None:
    """Our deterministic path (square resize + certain flip) against the reference's own transform classes."""
    from rfdetr.datasets._torchvision import Compose, RandomHorizontalFlip, Resize
    from rfdetr.datasets.transforms import Normalize
    from torchvision.transforms.v2 import ToDtype, ToImage

    image, boxes = two_box_image()
    target = {
        "boxes": torch.as_tensor(boxes),
        "labels": torch.tensor([0, 1]),
        "area": torch.tensor([1.0, 2.0]),
    }
    config = AugmentConfig(
        horizontal_flip=0.0 if vertical else 1.0,
        vertical_flip=1.0 if vertical else 0.0,
        scale_jitter=False,
        multi_scale="off",
    )
    ours_image, ours_target = AugmentPipeline(config, 256, 32)(
        image, target, torch.Generator().manual_seed(0)
    )
    if vertical:  # the reference has no vertical flip: flip the input, then use its resize
        flipped = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        flipped_boxes = torch.as_tensor(boxes)[:, [0, 3, 2, 1]] * torch.tensor([1, -1, 1, -1]) + torch.tensor(
            [0, image.height, 0, image.height]
        )
        ref = Compose([Resize((256, 256)), ToImage(), ToDtype(torch.float32, scale=True), Normalize()])
        ref_image, ref_target = ref(flipped, dict(target, boxes=flipped_boxes.float()))
    else:
        ref = Compose(
            [
                Resize((256, 256)),
                RandomHorizontalFlip(1.0),
                ToImage(),
                ToDtype(torch.float32, scale=True),
                Normalize(),
            ]
        )
        ref_image, ref_target = ref(image, dict(target))
    torch.testing.assert_close(ours_image, ref_image.as_subclass(torch.Tensor), atol=0, rtol=0)
    torch.testing.assert_close(ours_target["boxes"], ref_target["boxes"], atol=1e-6, rtol=0)
    torch.testing.assert_close(ours_target["area"], ref_target["area"])


def test_same_seed_same_sample_and_seeds_differ() -> None:
    image, boxes = two_box_image()
    pipeline = AugmentPipeline(AugmentConfig(multi_scale="per-sample", color_jitter=0.5), 384, 32)
    first, again = pipeline.preview(image, boxes, seed=7), pipeline.preview(image, boxes, seed=7)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.boxes, again.boxes)
    shapes = {pipeline.preview(image, boxes, seed=s).image.shape for s in range(12)}
    assert len(shapes) > 1  # per-sample multi-scale draws different sizes


def test_global_rng_seeding_makes_the_dataset_path_reproducible() -> None:
    image, boxes = two_box_image()
    pipeline = AugmentPipeline(AugmentConfig(), 384, 32)
    target = {"boxes": torch.as_tensor(boxes), "labels": torch.tensor([0, 1])}
    torch.manual_seed(3)
    a = pipeline(image, target)
    torch.manual_seed(3)
    b = pipeline(image, target)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])


def test_preview_returns_consistent_views() -> None:
    image, boxes = two_box_image()
    pipeline = AugmentPipeline(AugmentConfig(multi_scale="per-sample"), 384, 32)
    for seed in range(10):
        sample = pipeline.preview(np.asarray(image), boxes, seed=seed, labels=[3, 4])
        height, width = sample.image.shape[:2]
        assert sample.image.dtype == np.uint8 and sample.image.shape[2] == 3
        assert sample.tensor.shape == (3, height, width) and height == width and height in pipeline.sizes
        assert torch.equal(sample.tensor, to_model_input(Image.fromarray(sample.image)))
        assert np.array_equal(to_uint8_image(sample.tensor), sample.image)
        cx, cy, w, h = sample.target["boxes"].unbind(-1)
        pixel = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1) * torch.tensor(
            [width, height] * 2
        )
        np.testing.assert_allclose(pixel.numpy(), sample.boxes, atol=1e-3)
        assert set(sample.labels.tolist()) <= {3, 4} and len(sample.labels) == len(sample.boxes)


def _colour_box(pixels: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray | None:
    close = np.abs(pixels.astype(int) - np.array(colour)).sum(-1) < 60
    ys, xs = np.nonzero(close)
    return (
        None if xs.size == 0 else np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [
        AugmentConfig(multi_scale="per-sample"),
        AugmentConfig(multi_scale="per-sample", vertical_flip=0.5, crop_min_size=100, crop_max_size=160),
        AugmentConfig(multi_scale="per-sample", rotate=0.8, rotate_degrees=30),
    ],
)
def test_boxes_follow_the_pixels_through_crops_resizes_and_flips(config: AugmentConfig) -> None:
    image, boxes = two_box_image()
    pipeline = AugmentPipeline(config, 256, 32)
    kept = {0: 0, 1: 0}
    for seed in range(40):
        sample = pipeline.preview(image, boxes, seed=seed, labels=[0, 1])
        height, width = sample.image.shape[:2]
        assert (sample.boxes[:, [0, 2]] >= 0).all() and (sample.boxes[:, [0, 2]] <= width).all()
        assert (sample.boxes[:, [1, 3]] >= 0).all() and (sample.boxes[:, [1, 3]] <= height).all()
        assert (sample.boxes[:, 2] > sample.boxes[:, 0]).all() and (
            sample.boxes[:, 3] > sample.boxes[:, 1]
        ).all()
        for box, label in zip(sample.boxes, sample.labels, strict=True):
            kept[int(label)] += 1
            seen = _colour_box(sample.image, (RED, BLUE)[int(label)])
            assert seen is not None, f"seed {seed}: box {box} kept but its colour vanished"
            # Bilinear upscaling smears an edge over about one source pixel of the (up to 160 px) crop.
            np.testing.assert_allclose(seen, box, atol=1.5 + height / 100, err_msg=f"seed {seed}")
        for label in set(range(2)) - set(sample.labels.tolist()):
            seen = _colour_box(sample.image, (RED, BLUE)[label])
            assert seen is None or (seen[2] - seen[0]) * (seen[3] - seen[1]) <= 4, (
                f"seed {seed}: box {label} lost"
            )
    assert min(kept.values()) > 10


def test_photometric_extras_change_pixels_not_boxes() -> None:
    image, boxes = two_box_image()
    geometric = AugmentConfig(scale_jitter=False, multi_scale="off", horizontal_flip=0.0)
    plain = AugmentPipeline(geometric, 256, 32).preview(image, boxes, seed=1)
    for extra, check in [
        ({"color_jitter": 1.0, "brightness": 0.5}, lambda px: not np.array_equal(px, plain.image)),
        (
            {"grayscale": 1.0},
            lambda px: np.array_equal(px[..., 0], px[..., 1]) and np.array_equal(px[..., 1], px[..., 2]),
        ),
        (
            {"blur": 1.0, "blur_max_radius": 2.0},
            lambda px: px.astype(float).std() < plain.image.astype(float).std(),
        ),
    ]:
        config = geometric.model_copy(update=extra)
        sample = AugmentPipeline(config, 256, 32).preview(image, boxes, seed=1)
        assert check(sample.image), extra
        np.testing.assert_array_equal(sample.boxes, plain.boxes)


def test_eval_pipeline_is_a_plain_square_resize() -> None:
    image, boxes = two_box_image()
    pipeline = AugmentPipeline(AugmentConfig(horizontal_flip=1.0), 320, 32, train=False)
    sample = pipeline.preview(image, boxes, seed=0)
    assert sample.image.shape == (320, 320, 3)
    np.testing.assert_allclose(sample.boxes, boxes * np.array([320 / 220, 320 / 160] * 2), rtol=1e-6)


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValidationError):
        AugmentConfig(horizontal_flip=1.5)
    with pytest.raises(ValidationError):
        AugmentConfig(crop_pre_sizes=[])
    with pytest.raises(ValidationError):
        AugmentConfig(unknown_knob=1)
    with pytest.raises(ValueError, match="multiple of the block size"):
        AugmentPipeline(AugmentConfig(), 300, 32)


@pytest.mark.oracle
def test_reference_train_kwargs_map_onto_the_pipeline() -> None:
    from rfdetr.datasets.aug_configs import AUG_AERIAL, AUG_AGGRESSIVE, AUG_CONSERVATIVE

    from rfdetr_core.data.aug_config import augment_config_from_train_kwargs, train_kwargs_from_augment_config

    assert augment_config_from_train_kwargs() == AugmentConfig()  # None: the default recipe
    nothing = augment_config_from_train_kwargs({}, multi_scale=False, scale_jitter=False)
    assert nothing.horizontal_flip == 0.0 and nothing.multi_scale == "off" and not nothing.scale_jitter
    conservative = augment_config_from_train_kwargs(AUG_CONSERVATIVE)
    assert conservative.horizontal_flip == 0.5 and conservative.color_jitter == 0.3
    assert (conservative.brightness, conservative.contrast, conservative.saturation) == (0.1, 0.1, 0.0)
    aerial = augment_config_from_train_kwargs(AUG_AERIAL, multi_scale="per-sample")
    assert aerial.vertical_flip == 0.5 and aerial.rotate == 0.5 and aerial.rotate_degrees == 90.0
    with pytest.raises(ValueError, match="'Affine' is not supported"):
        augment_config_from_train_kwargs(AUG_AGGRESSIVE)
    for config in (
        AugmentConfig(),
        conservative,
        aerial,
        AugmentConfig(blur=0.3, grayscale=0.1, color_jitter=0.2),
    ):
        assert augment_config_from_train_kwargs(**train_kwargs_from_augment_config(config)) == config


def test_an_augmentation_free_pipeline_draws_no_random_number() -> None:
    """Like the reference's: both samplers take the next epoch's order from the global torch RNG, so one
    draw per sample shifted every later epoch's batches (issue 20)."""
    image, boxes = two_box_image()
    target = {"boxes": torch.as_tensor(boxes), "labels": torch.tensor([0, 1])}
    quiet = AugmentPipeline(
        AugmentConfig(horizontal_flip=0.0, multi_scale="off", scale_jitter=False), resolution=128
    )
    assert not quiet.draws_random
    torch.manual_seed(3)
    state = torch.get_rng_state()
    quiet(image, target)
    assert torch.equal(torch.get_rng_state(), state)
    noisy = AugmentPipeline(AugmentConfig(multi_scale="off", scale_jitter=False), resolution=128)  # flips
    assert noisy.draws_random
    noisy(image, target)
    assert not torch.equal(torch.get_rng_state(), state)
