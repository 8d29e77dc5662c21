"""``rfdetr-core`` command line. Subcommands: ``train``, ``fit``, ``validate``, ``test``, ``predict`` and ``export``.

Example::

    rfdetr-core predict --weights runs/x/checkpoint_best_total.pth images/*.jpg --threshold 0.4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rfdetr_core.variants import VARIANTS


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rfdetr-core", description="RF-DETR object detection (rfdetr_core)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pred = sub.add_parser("predict", help="detect objects in images and print/save them as JSON")
    pred.add_argument("images", nargs="+", help="image files")
    src = pred.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="checkpoint .pth (variant inferred from it)")
    src.add_argument(
        "--variant", choices=list(VARIANTS), help="official COCO-pretrained variant (downloads if needed)"
    )
    pred.add_argument("--threshold", type=float, default=0.5, help="minimum confidence (default 0.5)")
    pred.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: the config's)")
    pred.add_argument("--json", dest="json_path", help="write results to this file instead of stdout")
    pred.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow a full-pickle load of a checkpoint the safe loader refuses (trusted files only)",
    )
    from rfdetr_core.export.cli import add_export_parser

    add_export_parser(sub)
    return parser


def _load_model(args: argparse.Namespace):
    import rfdetr_core

    extra = {"device": args.device} if args.device else {}
    if args.weights:
        return rfdetr_core.RFDETR.from_checkpoint(
            args.weights, trust_checkpoint=args.trust_checkpoint, **extra
        )
    return VARIANTS[args.variant].model_class(**extra)


def _predict(args: argparse.Namespace) -> int:
    model = _load_model(args)
    records = []
    for image in args.images:
        det = model.predict(image, threshold=args.threshold, include_source_image=False)
        records.append(
            {
                "image": image,
                "detections": [
                    {
                        "class_id": int(cid),
                        "class_name": str(name),
                        "confidence": round(float(conf), 5),
                        "xyxy": [round(float(v), 2) for v in box],
                    }
                    for box, conf, cid, name in zip(
                        det.xyxy, det.confidence, det.class_id, det.data["class_name"], strict=True
                    )
                ],
            }
        )
    text = json.dumps(records, indent=2)
    if args.json_path:
        Path(args.json_path).write_text(text + "\n", encoding="utf-8")
        print(
            f"wrote {sum(len(r['detections']) for r in records)} detections for {len(records)} image(s) "
            f"to {args.json_path}"
        )
    else:
        print(text)
    return 0


_LIGHTNING_PREDICT_FLAGS = ("--config", "--ckpt_path", "--model.", "--data.", "--trainer.")


def _is_training_command(argv: Sequence[str]) -> bool:
    if argv[0] in ("train", "fit", "validate", "test"):
        return True
    return argv[0] == "predict" and any(a.startswith(_LIGHTNING_PREDICT_FLAGS) for a in argv[1:])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rfdetr-core`` console script.

    ``train`` and the Lightning subcommands (``fit``/``validate``/``test``, and ``predict`` given a
    Lightning config or checkpoint) go to :mod:`rfdetr_core.training.cli`; image ``predict`` and
    ``export`` are handled here.
    """
    from_sys = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and _is_training_command(argv):
        from rfdetr_core.training.cli import main as training_main

        return training_main(None if from_sys else argv)
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "export":
            return args.handler(args)
        return _predict(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"rfdetr-core {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
