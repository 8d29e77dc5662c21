"""The Roboflow bundle (``weights.pt`` + ``class_names.txt``) and the optional upload.

The bundle format is the one Roboflow's uploader reads: ``weights.pt`` is ``{"model": state_dict,
"args": Namespace}`` with ``args.class_names`` always set (so the file is self-contained even without
the text file), and ``class_names.txt`` has one name per line. The ``roboflow`` SDK is imported only
when uploading, after the cheap checks (key, model size), so a missing key is reported without it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rfdetr_core.export import backends
from rfdetr_core.export.images import normalise_nchw, resolve_images, synthetic_images, to_unit_nhwc
from rfdetr_core.export.source import source_from_rfdetr

WEIGHTS = "weights.pt"
CLASS_NAMES = "class_names.txt"


def _bundle_args(rf: Any) -> argparse.Namespace:
    """A copy of the model's args with ``class_names`` embedded (the live args stay untouched)."""
    if hasattr(rf, "checkpoint_args"):
        args = dict(rf.checkpoint_args())
    else:
        raw = getattr(getattr(rf, "model", None), "args", None)
        args = dict(vars(raw)) if raw is not None and not isinstance(raw, dict) else dict(raw or {})
    if args.get("class_names") is None:
        args["class_names"] = list(rf.class_names)
    return argparse.Namespace(**args)


def export_for_roboflow(rf: Any, output_dir: str | os.PathLike[str]) -> Path:
    """Write ``weights.pt`` and ``class_names.txt`` into *output_dir* (created; files overwritten)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / CLASS_NAMES).write_text("\n".join(rf.class_names), encoding="utf-8", newline="\n")
    state = {k: v.detach().cpu() for k, v in rf.model.model.state_dict().items()}
    tmp = out / f".{WEIGHTS}.part"
    torch.save({"model": state, "args": _bundle_args(rf)}, tmp)
    os.replace(tmp, out / WEIGHTS)  # never leave a truncated weights.pt behind
    return out


def verify_bundle(
    rf: Any, bundle_dir: str | os.PathLike[str], *, images: Any = None, max_images: int = 4, save: bool = True
) -> dict[str, Any]:
    """Reload the bundle into a fresh model of the same class and compare outputs with *rf*.

    Reloading is the only proof that the bundle is complete: class names, head size and every
    weight must come back so that predictions are identical.
    """
    bundle = Path(bundle_dir)
    names_txt = (bundle / CLASS_NAMES).read_text(encoding="utf-8").split("\n")
    payload = torch.load(bundle / WEIGHTS, map_location="cpu", weights_only=False)
    reloaded = type(rf).from_checkpoint(bundle / WEIGHTS)
    src, src2 = source_from_rfdetr(rf), source_from_rfdetr(reloaded)
    pil = resolve_images(images, max_images=max_images) or synthetic_images(2)
    shape = (src.resolution, src.resolution)
    nchw = normalise_nchw(to_unit_nhwc(pil, shape), src.means, src.stds)
    b1, l1, _ = backends.run_torch(src.model, nchw)
    b2, l2, _ = backends.run_torch(src2.model, nchw)
    diff = max(float(np.abs(b1 - b2).max()), float(np.abs(l1 - l2).max()))
    checks = {
        "files": sorted(p.name for p in bundle.iterdir() if not p.name.startswith(".")),
        "payload_keys": sorted(payload),
        "class_names_txt_match": names_txt == list(rf.class_names),
        "args_class_names_match": list(getattr(payload["args"], "class_names", []) or [])
        == list(rf.class_names),
        "reloaded_class_names_match": list(reloaded.class_names) == list(rf.class_names),
        "max_abs_diff": diff,
    }
    ok = (
        checks["class_names_txt_match"]
        and checks["args_class_names_match"]
        and checks["reloaded_class_names_match"]
        and diff == 0.0
    )
    report = {
        "artefact": str(bundle),
        "kind": "roboflow-bundle",
        "status": "passed" if ok else "failed",
        "images": len(pil),
        **checks,
    }
    if save:
        (bundle / "verification.json").write_text(json.dumps(report, indent=2))
    return report


def deploy_to_roboflow(
    rf: Any,
    workspace: str,
    project_id: str,
    version: int | str,
    api_key: str | None = None,
    size: str | None = None,
) -> None:
    """Upload the bundle to a Roboflow project version (needs the ``roboflow`` package and a key).

    Raises:
        ValueError: no ``api_key`` and no ``ROBOFLOW_API_KEY``; or no ``size`` for a custom architecture.
        ImportError: the ``roboflow`` SDK is not installed.
    """
    api_key = api_key or os.environ.get("ROBOFLOW_API_KEY")
    if not api_key:
        raise ValueError(
            "Set api_key=<KEY> in deploy_to_roboflow or export ROBOFLOW_API_KEY=<KEY> "
            "(find it under Roboflow > Settings > API Keys)."
        )
    model_type = getattr(rf, "size", None) or size
    if not model_type:
        raise ValueError("Must set size for custom architectures (e.g. size='rfdetr-nano').")
    try:
        from roboflow import Roboflow
    except ImportError as exc:
        raise ImportError("Deploying needs the Roboflow SDK: pip install roboflow") from exc
    project = Roboflow(api_key=api_key).workspace(workspace).project(project_id)
    with tempfile.TemporaryDirectory(prefix="roboflow_upload_") as tmp:
        export_for_roboflow(rf, tmp)
        project.version(version).deploy(model_type=model_type, model_path=tmp, filename=WEIGHTS)
