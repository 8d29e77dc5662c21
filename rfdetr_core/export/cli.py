"""The ``rfdetr-core export`` subcommand: arguments and handler.

Wire it into the main parser with ``add_export_parser(subparsers)``; the parsed namespace carries
``handler=run_export``. Example::

    rfdetr-core export --weights best.pth --format onnx --output out/ --validation data/valid
    rfdetr-core export --variant nano --format tflite --quantization int8 --calibration data/train
    rfdetr-core export --weights best.pth --format roboflow --output bundle/
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rfdetr_core.variants import VARIANTS


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``export`` on *subparsers* (from ``parser.add_subparsers()``) and return it."""
    p = subparsers.add_parser(
        "export", help="export a model to ONNX / TFLite / Roboflow bundle and verify it"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="checkpoint .pth (variant inferred from it)")
    src.add_argument(
        "--variant", choices=list(VARIANTS), help="official variant (pretrained weights, downloads if needed)"
    )
    p.add_argument("--format", choices=("onnx", "tflite", "roboflow"), default="onnx")
    p.add_argument("--output", default="output", help="output folder (default: output)")
    p.add_argument(
        "--shape", type=int, nargs=2, metavar=("H", "W"), help="input size; multiples of patch*windows"
    )
    p.add_argument("--batch-size", type=int, default=1, help="static batch size baked into the ONNX graph")
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX: accept any batch size")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    p.add_argument("--backbone-only", action="store_true", help="ONNX: export only the feature extractor")
    p.add_argument("--quantization", choices=("fp32", "fp16", "int8"), help="TFLite precision")
    p.add_argument("--calibration", help="TFLite: folder of images or .npy [N,H,W,3] in [0,1] for int8")
    p.add_argument("--max-images", type=int, default=100, help="calibration images used at most")
    p.add_argument("--notes", help="provenance stored as rfdetr_notes (JSON or plain text)")
    p.add_argument("--images", help="folder of images to verify on (default: calibration folder/synthetic)")
    p.add_argument(
        "--validation", help="COCO-style labelled folder (_annotations.coco.json): adds mAP to the report"
    )
    p.add_argument("--no-verify", action="store_true", help="skip running the artefact against PyTorch")
    p.add_argument("--keep-failed", action="store_true", help="exit 0 even if verification fails")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow a full-pickle checkpoint load")
    p.set_defaults(handler=run_export)
    return p


def _load(args: argparse.Namespace):
    import rfdetr_core

    if args.weights:
        return rfdetr_core.RFDETR.from_checkpoint(args.weights, trust_checkpoint=args.trust_checkpoint)
    return VARIANTS[args.variant].model_class()


def _notes(text: str | None) -> object:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run_export(args: argparse.Namespace) -> int:
    """Handle ``rfdetr-core export``; prints the verification summary; exit 1 when it failed."""
    from rfdetr_core import export as ex

    model = _load(args)
    if args.format == "roboflow":
        out = ex.export_for_roboflow(model, args.output)
        report = ex.verify_bundle(model, out, images=args.images) if not args.no_verify else None
        print(
            f"wrote {out}/weights.pt and class_names.txt"
            + (f"; reload check {report['status']}" if report else "")
        )
        return 0 if report is None or report["status"] == "passed" or args.keep_failed else 1
    try:
        path = ex.export_model(
            model,
            args.output,
            format=args.format,
            shape=tuple(args.shape) if args.shape else None,
            batch_size=args.batch_size,
            dynamic_batch=args.dynamic_batch,
            opset_version=args.opset,
            backbone_only=args.backbone_only,
            quantization=args.quantization,
            calibration_data=args.calibration,
            max_images=args.max_images,
            notes=_notes(args.notes),
            verify=not args.no_verify,
            validation=args.validation,
            verify_images=args.images,
            strict=not args.keep_failed,
        )
    except ex.ExportVerificationError as exc:
        print(f"rfdetr-core export: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m rfdetr_core.export.cli …``) until the main CLI wires the subcommand."""
    parser = argparse.ArgumentParser(prog="rfdetr-core")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (FileNotFoundError, ValueError, RuntimeError, ImportError) as exc:
        print(f"rfdetr-core export: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
