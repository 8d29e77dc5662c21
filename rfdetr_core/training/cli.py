"""Training command line: Lightning's ``fit / validate / test / predict`` plus ``train``.

``train`` takes exactly the keyword arguments of ``RFDETR.train()`` (every ``TrainConfig`` field
as ``--name value``, plus ``--resolution`` and ``--device``) and a model (``--variant`` or
``--weights``)::

    rfdetr-core train --variant nano --dataset_dir data/ --epochs 10 --batch_size 4 --output_dir runs/a
    rfdetr-core train --weights runs/a/checkpoint_best_total.pth --dataset_dir data/ --resume runs/a/last.ckpt

The Lightning subcommands build :class:`RFDETRModule` / :class:`RFDETRDataModule` from
``--model.model_config`` / ``--model.train_config`` (the data module receives the same objects)
and a Trainer from :func:`build_trainer`, so they write the same files as ``train``; ``--trainer.*``
options that differ from Lightning's defaults override what ``build_trainer`` derives::

    rfdetr-core fit --config run.yaml
    rfdetr-core validate --config run.yaml --ckpt_path runs/a/last.ckpt
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from typing import Any

from rfdetr_core.variants import VARIANTS

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


# -- `train` ---------------------------------------------------------------------------------------
def _value(text: str) -> Any:
    """Command-line text -> Python value; pydantic then checks it against the field's type."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_train_parser() -> argparse.ArgumentParser:
    from rfdetr_core.train_config import TrainConfig

    parser = argparse.ArgumentParser(
        prog="rfdetr-core train",
        description="Fine-tune an RF-DETR model (options are the keyword arguments of RFDETR.train()).",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--variant", choices=list(VARIANTS), default="nano", help="model size (default nano)")
    source.add_argument("--weights", help="start from this checkpoint (.pth); the variant is read from it")
    parser.add_argument(
        "--model",
        type=json.loads,
        default={},
        metavar="JSON",
        help="architecture overrides (ModelConfig fields), e.g. '{\"num_queries\": 100}'",
    )
    parser.add_argument(
        "--pretrain_weights",
        type=_value,
        default="default",
        help="variant weights file, or 'none' to start from random weights",
    )
    parser.add_argument(
        "--resolution", type=int, help="training resolution (multiple of patch_size*num_windows)"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps")
    for name, field in TrainConfig.model_fields.items():
        default = None if field.is_required() else field.default
        parser.add_argument(
            f"--{name}",
            type=_value,
            default=argparse.SUPPRESS,
            help=f"(default: {default!r})" if not field.is_required() else "(required)",
        )
    return parser


def run_train(argv: Sequence[str]) -> int:
    import rfdetr_core
    from rfdetr_core.training.train_api import run_training

    args = vars(build_train_parser().parse_args(list(argv)))
    variant, weights, pretrain = args.pop("variant"), args.pop("weights"), args.pop("pretrain_weights")
    model_kwargs: dict[str, Any] = dict(args.pop("model"))
    if pretrain != "default":
        model_kwargs["pretrain_weights"] = pretrain
    if weights:
        model = rfdetr_core.RFDETR.from_checkpoint(weights, **model_kwargs)
    else:
        model = VARIANTS[variant].model_class(**model_kwargs)
    kwargs = {k: v for k, v in args.items() if v is not None or k not in ("resolution", "device")}
    kwargs.setdefault("progress_bar", "tqdm")  # a terminal user wants to see it move
    run_training(model, **kwargs)  # what model.train(**kwargs) does
    print(f"training finished; outputs in {kwargs.get('output_dir', 'output')}")
    return 0


# -- Lightning subcommands ------------------------------------------------------------------------
def _lightning_cli_class():
    from pytorch_lightning.cli import LightningCLI

    from rfdetr_core.training.trainer import build_trainer

    class RFDETRCli(LightningCLI):
        """LightningCLI whose trainer comes from :func:`build_trainer` (RF-DETR callbacks and loggers)."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("model.model_config", "data.model_config", apply_on="instantiate")
            parser.link_arguments("model.train_config", "data.train_config", apply_on="instantiate")

        def instantiate_trainer(self, **kwargs: Any):
            import pytorch_lightning as pl

            config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
            defaults = {k: p.default for k, p in inspect.signature(pl.Trainer.__init__).parameters.items()}
            extra_callbacks = list(config.pop("callbacks", None) or [])
            extra_callbacks += [
                self._get(self.config_init, c) for c in self._parser(self.subcommand).callback_keys
            ]
            overrides = {k: v for k, v in config.items() if k in defaults and v != defaults[k]}
            return build_trainer(
                self.model.train_config,
                self.model.model_config,
                callbacks=extra_callbacks,
                class_names=self.model.class_names,
                **overrides,
            )

    return RFDETRCli


def run_lightning(argv: Sequence[str] | None = None) -> int:
    """Lightning subcommands; ``argv=None`` reads ``sys.argv`` (Lightning warns when given both)."""
    from rfdetr_core.training.datamodule import RFDETRDataModule
    from rfdetr_core.training.module import RFDETRModule

    _lightning_cli_class()(
        RFDETRModule,
        RFDETRDataModule,
        args=None if argv is None else list(argv),
        save_config_kwargs={"overwrite": True},
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``rfdetr-core <fit|validate|test|predict|train> ...``."""
    explicit = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return run_train(argv[1:])
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        return run_lightning(argv if explicit else None)
    print("usage: rfdetr-core {train,fit,validate,test,predict} ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
