"""Turn the ``args`` stored in an RF-DETR checkpoint into a :class:`ModelConfig`.

Released checkpoints are not uniform: older ones call the ViT fields ``dinov2_patch_size`` /
``dinov2_num_windows``, some lack ``positional_encoding_size`` or ``args`` altogether, and several
carry a stale ``num_classes`` (the head was resized after the args were written). The tensors are
the ground truth, so everything they determine is read from them; ``args`` fill in the rest, and
the defaults of the best-matching published variant fill any remaining gap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from rfdetr_core.config import ModelConfig
from rfdetr_core.variants import VARIANTS

#: Older checkpoint spellings -> current field names.
RENAMED_FIELDS = {"dinov2_patch_size": "patch_size", "dinov2_num_windows": "num_windows"}
#: Run-specific fields that must not leak from someone else's training machine.
IGNORED_FIELDS = {"device", "pretrain_weights"}
#: ``model_name`` values written by the reference (class names) -> our variant keys.
MODEL_NAMES = {v.model_class.__name__: v.key for v in VARIANTS.values()}

_PREFIX = "backbone.0.encoder.encoder."


def args_to_dict(args: Any) -> dict[str, Any]:
    """Accept an ``argparse.Namespace``, ``SimpleNamespace``, mapping or ``None``."""
    if args is None:
        return {}
    if isinstance(args, Mapping):
        return dict(args)
    if hasattr(args, "__dict__"):
        return dict(vars(args))
    raise TypeError(f"Unsupported checkpoint args of type {type(args).__name__}")


def _count(state_dict: Mapping[str, Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for key in state_dict if (m := regex.match(key))})


def facts_from_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """Architecture fields that the tensors pin down unambiguously."""
    facts: dict[str, Any] = {}
    if "class_embed.bias" in state_dict:
        facts["num_classes"] = int(state_dict["class_embed.bias"].shape[0]) - 1
    proj = state_dict.get(_PREFIX + "embeddings.patch_embeddings.projection.weight")
    if proj is not None:
        facts["patch_size"] = int(proj.shape[-1])
        facts["num_channels"] = int(proj.shape[1])
        registers = _PREFIX + "embeddings.register_tokens" in state_dict
        size = {384: "small", 768: "base"}.get(int(proj.shape[0]))
        if size is not None:
            facts["encoder"] = f"dinov2_registers_windowed_{size}" if registers else f"dinov2_windowed_{size}"
    pos = state_dict.get(_PREFIX + "embeddings.position_embeddings")
    if pos is not None:
        facts["positional_encoding_size"] = math.isqrt(int(pos.shape[1]) - 1)
    depth = _count(state_dict, re.escape(_PREFIX) + r"encoder\.layer\.(\d+)\.")
    if depth:
        facts["vit_encoder_num_layers"] = depth
    dec_layers = _count(state_dict, r"transformer\.decoder\.layers\.(\d+)\.")
    if dec_layers:
        facts["dec_layers"] = dec_layers
    if "query_feat.weight" in state_dict:
        facts["hidden_dim"] = int(state_dict["query_feat.weight"].shape[1])
    linear1 = state_dict.get("transformer.decoder.layers.0.linear1.weight")
    if linear1 is not None:
        facts["dim_feedforward"] = int(linear1.shape[0])
    groups = _count(state_dict, r"transformer\.enc_output\.(\d+)\.")
    facts["two_stage"] = groups > 0
    if groups:
        facts["group_detr"] = groups
    rows = state_dict.get("refpoint_embed.weight")
    if rows is not None and groups:
        facts["num_queries"] = int(rows.shape[0]) // groups
    facts["segmentation_head"] = any(key.startswith("segmentation_head.") for key in state_dict)
    return facts


def guess_variant(fields: Mapping[str, Any]) -> str:
    """The published variant whose defaults agree with the most of ``fields``."""
    name = MODEL_NAMES.get(str(fields.get("model_name")))
    if name is not None:
        return name
    keys = ("patch_size", "positional_encoding_size", "dec_layers", "num_windows", "resolution", "hidden_dim")

    def score(cls: type[ModelConfig]) -> int:
        defaults = cls.model_fields
        return sum(1 for k in keys if k in fields and fields[k] == defaults[k].default)

    return max(VARIANTS, key=lambda key: score(VARIANTS[key].config_class))


def model_config_from_args(
    args: Any, state_dict: Mapping[str, Tensor] | None = None, variant: str | None = None
) -> ModelConfig:
    """Build the config a checkpoint was trained with (``args`` may be ``None``).

    ``state_dict`` (the checkpoint's ``model``) overrides whatever it determines, so the resulting
    network loads it strictly. ``variant`` forces the variant used for missing fields.
    """
    raw = args_to_dict(args)
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        key = RENAMED_FIELDS.get(key, key)
        if key in ModelConfig.model_fields and key not in IGNORED_FIELDS and value is not None:
            fields[key] = value
    for new in RENAMED_FIELDS.values():  # a current spelling wins over an old one
        if new in raw and raw[new] is not None:
            fields[new] = raw[new]
    if state_dict is not None:
        fields.update(facts_from_state_dict(state_dict))
    cls = VARIANTS[variant or guess_variant(fields)].config_class
    if "resolution" not in fields and "positional_encoding_size" in fields and "patch_size" in fields:
        default_grid = cls.model_fields["positional_encoding_size"].default
        if fields["positional_encoding_size"] != default_grid:
            fields["resolution"] = fields["positional_encoding_size"] * fields["patch_size"]
    known = {k: v for k, v in fields.items() if k in cls.model_fields}
    try:
        return cls(**known)
    except ValueError as exc:
        raise ValueError(f"Checkpoint args do not describe a supported RF-DETR network: {exc}") from exc


def model_config_from_checkpoint(checkpoint: Mapping[str, Any], variant: str | None = None) -> ModelConfig:
    """``checkpoint`` is a loaded ``.pth`` dict with ``model`` (state dict) and optional ``args``."""
    state_dict = checkpoint.get("model", checkpoint)
    return model_config_from_args(checkpoint.get("args"), state_dict, variant)
