"""Matcher and criterion against the reference's, built the way its training builds them (oracle)."""

from __future__ import annotations

import pytest
import torch

from rfdetr_core.training import HungarianMatcher, SetCriterion, build_weight_dict
from rfdetr_core.training.criterion import LOSS_WEIGHTS

pytestmark = pytest.mark.oracle


def reference_criterion(num_classes: int, dec_layers: int = 3, group_detr: int = 13):
    """The reference's ``SetCriterion`` from its config defaults, as ``RFDETRModelModule`` creates it."""
    from rfdetr.config import RFDETRBaseConfig, TrainConfig
    from rfdetr.models.lwdetr import build_criterion_from_config

    model_config = RFDETRBaseConfig(num_classes=num_classes, dec_layers=dec_layers, group_detr=group_detr)
    criterion, _ = build_criterion_from_config(model_config, TrainConfig(dataset_dir=".", output_dir="."))
    return criterion


def random_boxes(generator: torch.Generator, *shape: int) -> torch.Tensor:
    centres = torch.rand(*shape, 2, generator=generator) * 0.6 + 0.2
    sizes = torch.rand(*shape, 2, generator=generator) * 0.35 + 0.01
    return torch.cat([centres, sizes], -1)


def random_outputs(generator, batch: int, queries: int, classes: int, aux_layers: int, requires_grad=False):
    def layer():
        return {
            "pred_logits": (torch.randn(batch, queries, classes, generator=generator) * 2).requires_grad_(
                requires_grad
            ),
            "pred_boxes": random_boxes(generator, batch, queries).requires_grad_(requires_grad),
        }

    outputs = layer()
    outputs["aux_outputs"] = [layer() for _ in range(aux_layers)]
    outputs["enc_outputs"] = layer()
    return outputs


def random_targets(generator, counts: list[int], classes: int) -> list[dict[str, torch.Tensor]]:
    return [
        {"labels": torch.randint(0, classes, (n,), generator=generator), "boxes": random_boxes(generator, n)}
        for n in counts
    ]


def test_default_weights_match_reference() -> None:
    reference = reference_criterion(num_classes=4, dec_layers=3)
    ours = SetCriterion(weight_dict=build_weight_dict(3))
    assert ours.weight_dict == reference.weight_dict
    assert LOSS_WEIGHTS == {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    assert (ours.matcher.cost_class, ours.matcher.cost_bbox, ours.matcher.cost_giou) == (
        reference.matcher.cost_class,
        reference.matcher.cost_bbox,
        reference.matcher.cost_giou,
    )
    assert ours.focal_alpha == reference.focal_alpha and ours.group_detr == reference.group_detr
    assert reference.ia_bce_loss and not reference.sum_group_losses


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("group_detr", [1, 13])
def test_matched_indices_equal_reference(seed: int, group_detr: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    outputs = random_outputs(generator, batch=3, queries=13 * 8, classes=7, aux_layers=0)
    targets = random_targets(generator, [4, 0, 9], classes=7)
    reference = reference_criterion(7).matcher
    theirs = reference(outputs, targets, group_detr=group_detr)
    ours = HungarianMatcher()(outputs, targets, group_detr=group_detr)
    for (our_rows, our_cols), (ref_rows, ref_cols) in zip(ours, theirs, strict=True):
        assert (
            our_rows.dtype == torch.int64
            and torch.equal(our_rows, ref_rows)
            and torch.equal(our_cols, ref_cols)
        )


def test_every_target_is_matched_once_per_group() -> None:
    generator = torch.Generator().manual_seed(0)
    outputs = random_outputs(generator, batch=2, queries=13 * 10, classes=3, aux_layers=0)
    targets = random_targets(generator, [6, 3], classes=3)
    for (rows, cols), target in zip(
        HungarianMatcher()(outputs, targets, group_detr=13), targets, strict=True
    ):
        n = len(target["labels"])
        assert len(rows) == 13 * n and len(set(rows.tolist())) == len(rows)
        for group in range(13):
            in_group = (rows >= group * 10) & (rows < (group + 1) * 10)
            assert sorted(cols[in_group].tolist()) == list(range(n))


def test_non_finite_predictions_still_give_a_full_assignment() -> None:
    generator = torch.Generator().manual_seed(1)
    outputs = random_outputs(generator, batch=1, queries=20, classes=3, aux_layers=0)
    outputs["pred_logits"][0, :5] = float("nan")
    outputs["pred_boxes"][0, 5:8] = float("inf")
    targets = random_targets(generator, [4], classes=3)
    rows, cols = HungarianMatcher()(outputs, targets)[0]
    assert sorted(cols.tolist()) == [0, 1, 2, 3] and all(r >= 8 for r in rows.tolist())


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("training", [True, False])
def test_losses_equal_reference(seed: int, training: bool) -> None:
    generator = torch.Generator().manual_seed(seed)
    group_detr = 13 if training else 1
    outputs = random_outputs(generator, batch=3, queries=group_detr * 12, classes=6, aux_layers=2)
    targets = random_targets(generator, [5, 0, 2 + seed], classes=6)
    reference = reference_criterion(6, dec_layers=3).train(training)
    ours = SetCriterion(weight_dict=build_weight_dict(3)).train(training)
    theirs, mine = reference(outputs, targets), ours(outputs, targets)
    assert sorted(mine) == sorted(theirs)
    assert {"loss_ce_enc", "loss_bbox_1", "loss_giou_0", "class_error", "cardinality_error_enc"} <= set(mine)
    for key in theirs:
        assert abs(float(mine[key]) - float(theirs[key])) <= 1e-5 * max(1.0, abs(float(theirs[key]))), key


def test_gradients_equal_reference() -> None:
    generator = torch.Generator().manual_seed(5)
    outputs = random_outputs(generator, batch=2, queries=13 * 6, classes=4, aux_layers=1, requires_grad=True)
    targets = random_targets(generator, [3, 2], classes=4)
    reference = reference_criterion(4, dec_layers=2).train()
    ours = SetCriterion(weight_dict=build_weight_dict(2)).train()
    leaves = [outputs["pred_logits"], outputs["pred_boxes"], outputs["enc_outputs"]["pred_boxes"]]
    ref_losses = reference(outputs, targets)
    ref_total = sum(ref_losses[k] * w for k, w in reference.weight_dict.items() if k in ref_losses)
    ref_grads = torch.autograd.grad(ref_total, leaves)
    our_grads = torch.autograd.grad(ours.total(ours(outputs, targets)), leaves)
    for ours_grad, ref_grad in zip(our_grads, ref_grads, strict=True):
        torch.testing.assert_close(ours_grad, ref_grad, atol=1e-6, rtol=1e-5)


def test_batch_without_any_target_equals_reference() -> None:
    generator = torch.Generator().manual_seed(2)
    outputs = random_outputs(generator, batch=2, queries=26, classes=3, aux_layers=1)
    targets = random_targets(generator, [0, 0], classes=3)
    reference = reference_criterion(3, dec_layers=2).train()
    mine, theirs = (
        SetCriterion(weight_dict=build_weight_dict(2)).train()(outputs, targets),
        reference(outputs, targets),
    )
    assert sorted(mine) == sorted(theirs)
    for key in theirs:
        assert abs(float(mine[key]) - float(theirs[key])) <= 1e-5, key
    assert float(mine["loss_bbox"]) == 0.0 and float(mine["loss_ce"]) > 0


@pytest.mark.slow
def test_a_few_optimiser_steps_on_free_predictions_fit_the_targets() -> None:
    """Not an oracle check: the loss must be minimisable -- boxes converge, classes become right."""
    generator = torch.Generator().manual_seed(3)
    targets = random_targets(generator, [3, 2], classes=4)
    logits = (torch.randn(2, 10, 4, generator=generator) * 0.1).requires_grad_()
    raw_boxes = torch.randn(2, 10, 4, generator=generator).requires_grad_()
    criterion = SetCriterion(weight_dict=build_weight_dict(1, two_stage=False), group_detr=1).train()
    optimiser = torch.optim.Adam([logits, raw_boxes], lr=0.05)
    history = []
    for _ in range(100):
        losses = criterion({"pred_logits": logits, "pred_boxes": raw_boxes.sigmoid()}, targets)
        total = criterion.total(losses)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        history.append(float(total.detach()))
    assert history[-1] < 0.25 * history[0]
    assert float(losses["loss_giou"].detach()) < 0.3 and float(losses["class_error"]) == 0.0


def test_degenerate_boxes_give_the_reference_gradients() -> None:
    """Queries at exactly [0, 0, 0, 0] or with negative sizes, as at initialisation (issue 20).

    The reference clamps w and h at 0 before converting to corners; ``clamp`` has zero gradient at
    0, so without the clamp these queries' GIoU gradient differed and so did the clipped update.
    """
    generator = torch.Generator().manual_seed(11)
    outputs = random_outputs(generator, batch=2, queries=13 * 6, classes=4, aux_layers=1, requires_grad=True)
    with torch.no_grad():
        for layer in (outputs, outputs["aux_outputs"][0], outputs["enc_outputs"]):
            layer["pred_boxes"][:, :8] = 0.0
            layer["pred_boxes"][:, 8:12, 2:] = -0.1
    targets = random_targets(generator, [4, 3], classes=4)
    reference = reference_criterion(4, dec_layers=2).train()
    ours = SetCriterion(weight_dict=build_weight_dict(2)).train()
    leaves = [
        outputs["pred_boxes"],
        outputs["aux_outputs"][0]["pred_boxes"],
        outputs["enc_outputs"]["pred_boxes"],
    ]
    ref_losses = reference(outputs, targets)
    ref_total = sum(ref_losses[k] * w for k, w in reference.weight_dict.items() if k in ref_losses)
    ref_grads = torch.autograd.grad(ref_total, leaves)
    our_grads = torch.autograd.grad(ours.total(ours(outputs, targets)), leaves)
    for ours_grad, ref_grad in zip(our_grads, ref_grads, strict=True):
        torch.testing.assert_close(ours_grad, ref_grad, atol=1e-7, rtol=1e-6)
    assert our_grads[0][:, :8].abs().sum() > 0  # the degenerate queries were matched and do get a gradient
