"""ONNX export with the reference's I/O contract and self-describing metadata.

Contract (same as the reference ``rfdetr`` package, so existing consumers keep working): one input named
``input`` (normalised float32 NCHW), outputs ``dets`` (boxes, cxcywh normalised to [0, 1]) and ``labels``
(raw class logits). On top of that we store everything a consumer needs to use the file alone — class
names, input shape, normalisation, variant — as ONNX metadata, because a model file that needs a side
channel to be interpreted is how class ids end up silently wrong.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from rfdetr_core.export.images import normalise_nchw, resolve_images, synthetic_images, to_unit_nhwc
from rfdetr_core.export.source import ExportSource

logger = logging.getLogger(__name__)

NOTES_KEY = "rfdetr_notes"
META_PREFIX = "rfdetr_"


class DetectionHead(nn.Module):
    """Turn the detector's output mapping into the ``(dets, labels)`` tuple ONNX tracing needs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(images)
        return out["pred_boxes"], out["pred_logits"]


class BackboneHead(nn.Module):
    """Expose the backbone's feature maps as a tuple of tensors for ``backbone_only`` exports."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        feats = self.backbone(images)
        if isinstance(feats, Tensor):
            return (feats,)
        if isinstance(feats, Mapping):
            feats = list(feats.values())
        flat: list[Tensor] = []
        for item in feats:
            # Backbones commonly return (features, masks) pairs or NestedTensor-like objects.
            tensor = getattr(item, "tensors", item)
            if isinstance(tensor, (list, tuple)):
                tensor = tensor[0]
            flat.append(tensor)
        return tuple(flat)


def _find_backbone(source: ExportSource) -> nn.Module:
    """The module that maps images to multi-scale features (``model.backbone`` or its first element)."""
    if source.backbone is not None:
        return source.backbone
    backbone = getattr(source.model, "backbone", None)
    if backbone is None:
        raise ValueError("backbone_only export needs a model with a `.backbone` module")
    if isinstance(backbone, (nn.Sequential, nn.ModuleList)):
        backbone = backbone[0]
    return backbone


def prepare_network(source: ExportSource, shape: tuple[int, int], backbone_only: bool) -> nn.Module:
    """Copy the network, switch it to its traceable form and wrap it to return a tuple.

    A copy is exported so that export-only switches (fixed position embeddings, export forwards) never
    leak into the live model the user keeps predicting with.
    """
    model = copy.deepcopy(source.model).cpu().eval()
    for module in model.modules():
        # Optional hook: a module can precompute anything that depends on the export shape.
        hook = getattr(module, "prepare_export", None)
        if callable(hook):
            params = inspect.signature(hook).parameters
            hook(shape) if params else hook()
    if backbone_only:
        src = ExportSource(**{**source.__dict__, "model": model, "backbone": None})
        return BackboneHead(_find_backbone(src)).eval()
    return DetectionHead(model).eval()


def sample_input(
    source: ExportSource, shape: tuple[int, int], batch_size: int, images: Any = None
) -> np.ndarray:
    """Normalised NCHW batch from real images (or varied synthetic ones) to trace and check with."""
    pil = resolve_images(images, max_images=batch_size) or synthetic_images(batch_size)
    while len(pil) < batch_size:
        pil = pil + pil
    return normalise_nchw(to_unit_nhwc(pil[:batch_size], shape), source.means, source.stds)


def build_metadata(source: ExportSource, shape: tuple[int, int], notes: object, backbone_only: bool) -> dict:
    """Key/value strings stored in the ONNX file so it can be used without any side file."""
    meta = {
        "class_names": json.dumps(source.class_names),
        "num_classes": str(len(source.class_names)),
        "input_shape": json.dumps([3, shape[0], shape[1]]),
        "resolution": str(shape[0]) if shape[0] == shape[1] else json.dumps(list(shape)),
        "means": json.dumps([float(m) for m in source.means]),
        "stds": json.dumps([float(s) for s in source.stds]),
        "variant": source.variant or "custom",
        "patch_size": str(source.patch_size),
        "num_windows": str(source.num_windows),
        "box_format": "cxcywh_normalized",
        "input_layout": "NCHW, RGB scaled to [0,1], then (x-means)/stds",
        "outputs": "features" if backbone_only else "dets=boxes[B,Q,4], labels=logits[B,Q,C] (sigmoid)",
        "producer": "rfdetr_core",
    }
    if source.class_ids is not None:
        meta["class_ids"] = json.dumps(list(source.class_ids))
    out = {META_PREFIX + k: v for k, v in meta.items()}
    if notes is not None:
        # Strings verbatim, anything else as JSON (the reference's convention for `rfdetr_notes`).
        out[NOTES_KEY] = notes if isinstance(notes, str) else json.dumps(notes, allow_nan=False)
    return out


def write_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    """Replace/add ``metadata_props`` entries in the file at *path*."""
    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        prop = existing.get(key) or model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Decode our metadata back into Python values (lists, ints) — the inverse of :func:`build_metadata`."""
    model = onnx.load(str(path), load_external_data=False)
    out: dict[str, Any] = {}
    for prop in model.metadata_props:
        key, value = prop.key, prop.value
        if key == NOTES_KEY:
            try:
                out["notes"] = json.loads(value)
            except json.JSONDecodeError:
                out["notes"] = value
            continue
        if not key.startswith(META_PREFIX):
            continue
        name = key[len(META_PREFIX) :]
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


def simplify(path: Path, sample: np.ndarray) -> bool:
    """Simplify the graph in place with onnxslim or onnxsim when installed; ``True`` if it was done."""
    for name in ("onnxslim", "onnxsim"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        try:
            if name == "onnxslim":
                slim = mod.slim(str(path))
            else:
                slim, ok = mod.simplify(str(path), input_data={"input": sample})
                if not ok:
                    raise RuntimeError("onnxsim check failed")
            onnx.save(slim, str(path))
            return True
        except Exception as exc:  # a failed optional optimisation must not fail the export
            logger.warning("ONNX simplification with %s failed, keeping the traced graph: %s", name, exc)
    return False


def output_names(source: ExportSource, network: nn.Module, sample: Tensor, backbone_only: bool) -> list[str]:
    """``dets``/``labels`` for detectors; ``features``, ``features_1`` … for backbone exports."""
    if not backbone_only:
        return ["dets", "labels"]
    with torch.no_grad():
        count = len(network(sample))
    return ["features" if i == 0 else f"features_{i}" for i in range(count)]


def _trace(
    network: nn.Module, sample: Tensor, path: Path, names: list[str], opset_version: int, dynamic_batch: bool
) -> None:
    """``torch.onnx.export`` with the TorchScript tracer (no onnxscript needed, stable output names)."""
    dynamic_axes = {n: {0: "batch"} for n in ["input", *names]} if dynamic_batch else None
    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter needs no onnxscript and keeps stable names
    with torch.no_grad(), warnings.catch_warnings():
        # Shape-dependent Python branches are constants in a traced graph; that is intended here.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            network,
            (sample,),
            str(path),
            input_names=["input"],
            output_names=names,
            opset_version=opset_version,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            **kwargs,
        )


def export_onnx(
    source: ExportSource,
    output_dir: str | Path,
    *,
    shape: Sequence[int] | None = None,
    opset_version: int = 17,
    batch_size: int = 1,
    dynamic_batch: bool = False,
    backbone_only: bool = False,
    notes: object = None,
    sample_images: Any = None,
    simplify_graph: bool = True,
    file_name: str | None = None,
) -> Path:
    """Trace *source* to ``<output_dir>/<variant>.onnx`` and return the path.

    Args:
        source: The model and its metadata.
        output_dir: Folder to write into (created).
        shape: ``(height, width)``; defaults to the model resolution; each side a multiple of
            ``patch_size * num_windows``.
        opset_version: ONNX opset (17 is what the reference and onnx2tf both handle).
        batch_size: Static batch baked into the graph (also the traced batch with ``dynamic_batch``).
        dynamic_batch: Name axis 0 ``batch`` on every input/output so any batch size runs.
        backbone_only: Export only the feature extractor.
        notes: Any JSON-serialisable provenance, stored under ``rfdetr_notes``.
        sample_images: Folder or list of real images to trace with (synthetic when ``None``).
        simplify_graph: Run onnxslim/onnxsim if installed (static-shape graphs only).
        file_name: Override the file stem.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    hw = source.validate_shape(shape)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = file_name or (source.variant or "inference_model") + ("-backbone" if backbone_only else "")
    path = out_dir / f"{stem}.onnx"

    network = prepare_network(source, hw, backbone_only)
    sample = torch.from_numpy(sample_input(source, hw, batch_size, sample_images))
    names = output_names(source, network, sample, backbone_only)
    _trace(network, sample, path, names, opset_version, dynamic_batch)
    if simplify_graph and not dynamic_batch:
        simplify(path, sample.numpy())
    write_metadata(path, build_metadata(source, hw, notes, backbone_only))
    onnx.checker.check_model(str(path))
    logger.info("Wrote ONNX model %s", path)
    return path
