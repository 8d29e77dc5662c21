"""Reading and writing checkpoints in the official RF-DETR format, safely.

The format is a ``torch.save``-d dict: ``model`` (state dict), ``args`` (an ``argparse.Namespace``
or a dict with the training/model arguments, including ``class_names``) and, in newer files,
``model_name`` (the variant class name). We write exactly that so the reference package loads our
files, and we read every shape the reference writes (legacy namespaces, dict args, Lightning
``state_dict`` with a ``model.`` prefix).

Loading is ``weights_only=True`` with a small allow-list of plain-data types; a checkpoint that
needs arbitrary unpickling is refused unless the caller explicitly trusts it.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import pathlib
import pickle
import tempfile
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Plain-data containers that official checkpoints embed in ``args``; safe to rebuild.
SAFE_GLOBALS: list[Any] = [argparse.Namespace, types.SimpleNamespace, pathlib.PosixPath, pathlib.WindowsPath]
_QUERY_SUFFIXES = ("refpoint_embed.weight", "query_feat.weight")
_POS_EMBED_SUFFIX = "embeddings.position_embeddings"


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, untrusted, or not matching the model."""


@dataclass
class Checkpoint:
    """A loaded checkpoint reduced to what the façade needs."""

    state: dict[str, torch.Tensor]
    args: dict[str, Any] = field(default_factory=dict)
    model_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        names = self.args.get("class_names")
        if isinstance(names, str):
            return [names]
        return [n for n in names if isinstance(n, str)] if names else []

    @property
    def head_classes(self) -> int | None:
        """Number of classes of the saved head (its logits minus the no-object slot)."""
        bias = self.state.get("class_embed.bias")
        return None if bias is None else int(bias.shape[0]) - 1


def load_checkpoint(path: str | os.PathLike[str], *, trust: bool = False) -> Checkpoint:
    """Load and normalise a checkpoint file.

    Args:
        path: the ``.pth``/``.ckpt`` file.
        trust: allow a full pickle load when the safe load refuses the file. Only for files you
            made or fully trust: unpickling can run arbitrary code.
    """
    return normalize_checkpoint(_torch_load(path, trust=trust))


def _torch_load(path: str | os.PathLike[str], *, trust: bool) -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            unsafe = _unsafe_globals(path)
            raise CheckpointError(
                f"Refusing to unpickle {path}: it contains Python objects outside the safe allow-list "
                f"({unsafe or exc}). If you made this file or fully trust its source, load it with "
                f"trust_checkpoint=True (full pickle, can run code)."
            ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {exc}"
        ) from exc
    warnings.warn(
        f"Loading {path} with full pickle (trust_checkpoint=True): only do this for trusted files.",
        UserWarning,
        stacklevel=3,
    )
    return torch.load(path, map_location="cpu", weights_only=False)


def _unsafe_globals(path: str | os.PathLike[str]) -> list[str]:
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # best effort, only used to improve the error message
        return []


def normalize_checkpoint(raw: Any) -> Checkpoint:
    """Bring the layouts the reference writes (engine ``.pth``, Lightning ``.ckpt``) to one shape."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"Expected a checkpoint dict, got {type(raw).__name__}")
    if "model" in raw:
        state = dict(raw["model"])
    elif "state_dict" in raw:
        state = {_strip_lightning(k): v for k, v in raw["state_dict"].items() if k.startswith("model.")}
        if not state:
            raise CheckpointError("Lightning checkpoint has no 'model.'-prefixed weights")
    elif raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        state = dict(raw)
    else:
        raise CheckpointError(f"No model weights in checkpoint (keys: {sorted(raw)[:10]})")
    args = raw.get("args", raw.get("hyper_parameters"))
    name = raw.get("model_name")
    extra = {k: v for k, v in raw.items() if k not in ("model", "state_dict", "args", "model_name")}
    return Checkpoint(
        state=state, args=args_to_dict(args), model_name=name if isinstance(name, str) else None, extra=extra
    )


def _strip_lightning(key: str) -> str:
    key = key[len("model.") :]
    return key[len("_orig_mod.") :] if key.startswith("_orig_mod.") else key


def args_to_dict(args: Any) -> dict[str, Any]:
    """``argparse.Namespace`` / ``SimpleNamespace`` / dict / ``None`` → plain dict."""
    if args is None:
        return {}
    if isinstance(args, dict):
        return dict(args)
    if hasattr(args, "__dict__"):
        return dict(vars(args))
    raise CheckpointError(f"Unsupported checkpoint 'args' type: {type(args).__name__}")


def is_class_head(key: str) -> bool:
    """Class-logit layers: the decoder's ``class_embed`` and the encoder's per-group copies."""
    return key.startswith("class_embed.") or ".enc_out_class_embed." in key


def load_weights(model: nn.Module, ckpt: Checkpoint, *, source: str = "checkpoint") -> None:
    """Load *ckpt* into *model*: strict on names, lenient only where a difference is intended.

    - Class heads of another size are left at their fresh initialisation, with a warning.
    - Query embeddings trained with more queries/groups are sliced per group.
    - Backbone position embeddings of another grid are resampled (bicubic) to the model's grid.
    Anything else that does not match raises :class:`CheckpointError` listing the keys.
    """
    own = model.state_dict()
    state = dict(ckpt.state)
    _fit_queries(state, own, ckpt.args)
    _fit_position_embeddings(state, own)
    heads = [k for k in state if is_class_head(k) and k in own and state[k].shape != own[k].shape]
    if heads:
        warnings.warn(
            f"{source} was trained for {ckpt.head_classes} classes but the model has "
            f"{own['class_embed.bias'].shape[0] - 1}: the class heads ({len(heads)} tensors) were "
            f"re-initialised; every other weight was loaded.",
            UserWarning,
            stacklevel=3,
        )
        for key in heads:
            del state[key]
    wrong = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if wrong:
        raise CheckpointError(f"{source} does not fit this model (checkpoint vs model shapes): {wrong[:8]}")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in heads]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{source} does not match this model: {len(missing)} missing keys {missing[:8]}, "
            f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:8]}. "
            f"Is it a checkpoint of another variant?"
        )


def _fit_queries(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], args: dict[str, Any]) -> None:
    """Keep the first queries of each retained group (queries are packed group after group)."""
    for key in [k for k in state if k.endswith(_QUERY_SUFFIXES) and k in own]:
        src, dst = state[key], own[key]
        if src.shape == dst.shape or src.shape[1:] != dst.shape[1:] or src.shape[0] < dst.shape[0]:
            continue
        nq, groups = args.get("num_queries"), args.get("group_detr")
        if (
            nq
            and groups
            and nq * groups == src.shape[0]
            and dst.shape[0] % groups == 0
            and dst.shape[0] // groups <= nq
        ):
            state[key] = src.view(groups, nq, -1)[:, : dst.shape[0] // groups].reshape(dst.shape)
        else:
            state[key] = src[: dst.shape[0]]


def _fit_position_embeddings(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    """Resample a ``[1, 1 + N*N, D]`` grid (class token first) to the model's grid size."""
    for key in [k for k in state if k.endswith(_POS_EMBED_SUFFIX) and k in own]:
        src, dst = state[key], own[key]
        if src.shape == dst.shape or src.dim() != 3:
            continue
        h_src, h_dst = math.isqrt(src.shape[1] - 1), math.isqrt(dst.shape[1] - 1)
        if h_src * h_src != src.shape[1] - 1 or h_dst * h_dst != dst.shape[1] - 1:
            continue
        grid = src[:, 1:].reshape(1, h_src, h_src, -1).permute(0, 3, 1, 2).float()
        grid = nn.functional.interpolate(
            grid, size=(h_dst, h_dst), mode="bicubic", align_corners=False, antialias=True
        )
        grid = grid.permute(0, 2, 3, 1).reshape(1, h_dst * h_dst, -1).to(src.dtype)
        state[key] = torch.cat([src[:, :1], grid], dim=1)
        logger.info("Resampled %s from %dx%d to %dx%d patches", key, h_src, h_src, h_dst, h_dst)


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    state: dict[str, torch.Tensor],
    args: dict[str, Any],
    model_name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the official format atomically (temporary file + rename), loadable by the reference.

    ``args`` is stored as an ``argparse.Namespace`` because that is what every reader (ours, the
    reference, Roboflow's uploader) accepts.
    """
    path = os.fspath(path)
    payload: dict[str, Any] = {
        "model": {k: v.detach().cpu() for k, v in state.items()},
        "args": argparse.Namespace(**args),
    }
    if model_name:
        payload["model_name"] = model_name
    payload.update(extra or {})
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
