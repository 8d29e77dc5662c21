"""A tiny RF-DETR learns 8 generated images well enough to reach mAP@50 >= 0.9 on them.

This is the end-to-end proof that loss, matcher, optimiser groups, schedule and the Lightning loop
fit together: if any piece were wrong (targets in the wrong box format, a detached head, a learning
rate of zero for the decoder ...) the model would not get there. The score is measured
independently of the training loop: ``predict()`` on the image files, pycocotools on the result.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rfdetr_core import RFDETRNano
from rfdetr_core.data import open_split
from rfdetr_core.evaluation import CocoEvaluator
from rfdetr_core.training import run_training
from tests.support.training_fixtures import CLASSES, TINY, make_shapes_dataset


@pytest.mark.slow
def test_tiny_model_overfits_eight_images(tmp_path: Path) -> None:
    data = make_shapes_dataset(tmp_path / "ds", n=8, size=128)
    model = RFDETRNano(**TINY, resolution=128)
    run_training(
        model,
        dataset_dir=str(data),
        output_dir=str(tmp_path / "run"),
        epochs=50,
        batch_size=4,
        lr=1e-3,
        lr_encoder=1e-3,
        use_ema=False,
        num_workers=0,
        multi_scale=False,
        scale_jitter=False,
        aug_config={},
        lr_scheduler="cosine",
        eval_interval=50,
        seed=0,
    )

    split = open_split(data, "valid")
    evaluator = CocoEvaluator(list(CLASSES))
    for index in range(len(split)):
        det = model.predict(str(split.image_path(index)), threshold=0.0, include_source_image=False)
        keep = det.class_id < len(CLASSES)
        prediction = {"boxes": det.xyxy[keep], "scores": det.confidence[keep], "labels": det.class_id[keep]}
        evaluator.update([prediction], [split.evaluation_target(index)])
    metrics = evaluator.compute()
    assert metrics["mAP_50"] >= 0.9, metrics
