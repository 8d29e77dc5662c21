"""The one variant table: every reader (the three command lines, checkpoint args, the studio's size
picker) sees exactly its rows, and its derived numbers are the config classes' and the networks'."""

from __future__ import annotations

import argparse

import pytest

from rfdetr_core import RFDETRBase, RFDETRLarge, RFDETRMedium, RFDETRNano, RFDETRSmall
from rfdetr_core.cli import _build_parser
from rfdetr_core.export.cli import add_export_parser
from rfdetr_core.models.args import MODEL_NAMES, guess_variant, model_config_from_args
from rfdetr_core.training.cli import build_train_parser
from rfdetr_core.variants import MODEL_CLASSES, VARIANTS


def _variant_choices(parser: argparse.ArgumentParser) -> list[str]:
    (action,) = [a for a in parser._actions if "--variant" in a.option_strings]
    return list(action.choices)


def test_table_rows() -> None:
    assert list(VARIANTS) == ["nano", "small", "medium", "base", "large"]
    assert [v.model_class for v in VARIANTS.values()] == [
        RFDETRNano,
        RFDETRSmall,
        RFDETRMedium,
        RFDETRBase,
        RFDETRLarge,
    ]
    sizes = {v.name: (v.resolution, v.block_size) for v in VARIANTS.values()}
    assert sizes == {
        "Nano": (384, 32),
        "Small": (512, 32),
        "Medium": (576, 32),
        "Base": (560, 56),
        "Large": (704, 32),
    }
    assert MODEL_CLASSES["RFDETRBase"] is RFDETRBase
    assert MODEL_NAMES == {
        "RFDETRNano": "nano",
        "RFDETRSmall": "small",
        "RFDETRMedium": "medium",
        "RFDETRBase": "base",
        "RFDETRLarge": "large",
    }


def test_every_command_line_offers_the_table() -> None:
    main = _build_parser()
    predict = main._subparsers._group_actions[0].choices["predict"]
    export = add_export_parser(argparse.ArgumentParser().add_subparsers())
    for parser in (predict, export, build_train_parser()):
        assert _variant_choices(parser) == list(VARIANTS)


@pytest.mark.parametrize("key", list(VARIANTS))
def test_checkpoint_args_name_the_variant(key: str) -> None:
    variant = VARIANTS[key]
    assert guess_variant({"model_name": variant.model_class.__name__}) == key
    config = model_config_from_args({"model_name": variant.model_class.__name__})
    assert type(config) is variant.config_class
    assert config.resolution == variant.resolution and config.block_size == variant.block_size


@pytest.mark.slow
@pytest.mark.parametrize("key", list(VARIANTS))
def test_parameter_count_is_the_built_network(key: str) -> None:
    model = VARIANTS[key].model_class(pretrain_weights=None)
    n_params = sum(p.numel() for p in model.model.model.parameters())
    assert round(n_params / 1e6, 1) == VARIANTS[key].params_m
    assert model.model_config.resolution == VARIANTS[key].resolution
