"""Augment settings live in the project and the preview is made by the trainer's own pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rfdetr_core.data.aug_config import augment_config_from_train_kwargs
from rfdetr_core.data.transforms import AugmentConfig, AugmentPipeline
from studio.errors import StudioError
from studio.services.train import augment
from tests.support.studio_run_fixtures import make_project


@pytest.fixture()
def store(tmp_path: Path):
    st = make_project(tmp_path, n=6)
    yield st
    st.close()


def test_defaults_are_the_trainers_and_settings_round_trip_through_the_project(store) -> None:
    defaults = augment.load_settings(store)
    assert defaults == {k: getattr(AugmentConfig(), k) for k in augment.KNOBS}
    saved = augment.save_settings(store, {"vertical_flip": 0.7, "color_jitter": 0.3, "multi_scale": "off"})
    assert saved["vertical_flip"] == 0.7 and saved["multi_scale"] == "off"
    assert augment.load_settings(store) == saved
    assert store.project().settings["augment"]["color_jitter"] == 0.3
    with pytest.raises(StudioError, match="vertical_flip"):
        augment.save_settings(store, {"vertical_flip": 1.5})
    assert augment.load_settings(store) == saved  # a refused save changes nothing


def test_the_preview_config_is_what_train_builds_from_the_settings(store) -> None:
    settings = {
        **augment.default_settings(),
        "rotate": 0.4,
        "rotate_degrees": 20.0,
        "grayscale": 0.1,
        "blur": 0.2,
    }
    assert augment.effective_config(settings) == augment_config_from_train_kwargs(
        **augment.train_kwargs(settings)
    )
    assert augment.effective_config(settings).rotate == 0.4


def test_preview_uses_augment_pipeline_and_reroll_changes_it(store) -> None:
    settings = {**augment.default_settings(), "vertical_flip": 0.5, "color_jitter": 0.8}
    samples = augment.preview_samples(store, settings, seed=3, n=4, resolution=64, block_size=32)
    assert len(samples) == 4
    pipeline = AugmentPipeline(augment.effective_config(settings), resolution=64, block_size=32)
    for i, (im, sample) in enumerate(samples):
        from PIL import Image

        with Image.open(store.image_path(im)) as src:
            expected = pipeline.preview(src.convert("RGB"), np.zeros((0, 4)), seed=3 * 1000 + i)
        np.testing.assert_array_equal(sample.image, expected.image)
    grid = augment.preview_grid(store, settings, seed=3, n=4, resolution=64, block_size=32)
    again = augment.preview_grid(store, settings, seed=3, n=4, resolution=64, block_size=32)
    other = augment.preview_grid(store, settings, seed=4, n=4, resolution=64, block_size=32)
    assert [c for _, c in grid] == [c for _, c in again]
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(grid, again, strict=True))
    assert not all(np.array_equal(a, b) for (a, _), (b, _) in zip(grid, other, strict=True))
    assert all(img.dtype == np.uint8 and img.ndim == 3 for img, _ in grid)
    assert sum(len(s.boxes) for _, s in samples) > 0  # boxes travel through the augmentation


def test_flip_moves_the_boxes_with_the_image(store) -> None:
    off = {**augment.default_settings(), "horizontal_flip": 0.0, "multi_scale": "off", "scale_jitter": False}
    flipped = {**off, "horizontal_flip": 1.0}
    plain = augment.preview_samples(store, off, seed=0, n=3, resolution=64)
    flip = augment.preview_samples(store, flipped, seed=0, n=3, resolution=64)
    for (_, a), (_, b) in zip(plain, flip, strict=True):
        np.testing.assert_array_equal(a.image[:, ::-1], b.image)
        np.testing.assert_allclose(
            np.sort(64 - a.boxes[:, [2, 0]], axis=0), np.sort(b.boxes[:, [0, 2]], axis=0), atol=1e-4
        )
