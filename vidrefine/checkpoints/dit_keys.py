"""Official FlashVideo DiT key names <-> `VideoDiT` parameter names, and the stage-I LoRA merge.

Official names are relative to `model.diffusion_model.` (flashvideo-spec §8.2). The table maps
module paths; `.weight` / `.bias` follow unchanged. `{l}` is the layer index.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from vidrefine.errors import BadCheckpoint

# (official module path, VideoDiT module path)
KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("mixins.patch_embed.proj", "patch_proj"),
    ("mixins.patch_embed.text_proj", "text_proj"),
    ("time_embed.0", "time_embed.fc1"),
    ("time_embed.2", "time_embed.fc2"),
    ("time_size_embedding.0", "frames_embed.fc1"),
    ("time_size_embedding.2", "frames_embed.fc2"),
    ("ref_step_time_embedding.0", "ref_step_embed.fc1"),
    ("ref_step_time_embedding.2", "ref_step_embed.fc2"),
    ("transformer.layers.{l}.input_layernorm", "blocks.{l}.norm1"),
    ("transformer.layers.{l}.attention.query_key_value", "blocks.{l}.attn.qkv"),
    ("mixins.adaln_layer.query_layernorm_list.{l}", "blocks.{l}.attn.q_norm"),
    ("mixins.adaln_layer.key_layernorm_list.{l}", "blocks.{l}.attn.k_norm"),
    ("transformer.layers.{l}.attention.dense", "blocks.{l}.attn.out"),
    ("transformer.layers.{l}.post_attention_layernorm", "blocks.{l}.norm2"),
    ("transformer.layers.{l}.mlp.dense_h_to_4h", "blocks.{l}.mlp.fc1"),
    ("transformer.layers.{l}.mlp.dense_4h_to_h", "blocks.{l}.mlp.fc2"),
    ("mixins.adaln_layer.adaLN_modulations.{l}.1", "blocks.{l}.modulation"),
    ("transformer.final_layernorm", "final_norm"),
    ("mixins.final_layer.norm_final", "head.norm"),
    ("mixins.final_layer.adaLN_modulation.1", "head.modulation"),
    ("mixins.final_layer.linear", "head.linear"),
)

# Saved by the original but not weights of the running model (spec §3.2, §8.1).
DROPPED_PREFIXES = ("mixins.pos_embed.", "transformer.position_embeddings.")

LORA_ALPHA = 1.0  # lora_alpha default of the original (spec §3.8, pitfall 22)
_LORA_PART = re.compile(r"^(?P<base>.+)\.(?P<kind>matrix_A|matrix_B)\.(?P<i>\d+)$")
_LORA_ORIGINAL = re.compile(r"^(?P<base>.+)\.original\.(?P<param>weight|bias)$")


def _compile(pattern: str) -> re.Pattern[str]:
    body = re.escape(pattern).replace(re.escape("{l}"), r"(?P<l>\d+)")
    return re.compile(rf"^{body}\.(?P<param>weight|bias)$")


_TO_OURS = [(_compile(official), ours) for official, ours in KEY_TABLE]
_TO_OFFICIAL = [(_compile(ours), official) for official, ours in KEY_TABLE]


def _rename(key: str, table: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, target in table:
        match = pattern.match(key)
        if match:
            layer = match.groupdict().get("l")
            module = target.replace("{l}", layer) if layer is not None else target
            return f"{module}.{match['param']}"
    return None


def to_ours(official_key: str) -> str | None:
    """Return the `VideoDiT` name of an official key (prefix removed), or None if unknown."""
    return _rename(official_key, _TO_OURS)


def to_official(our_key: str) -> str:
    """Return the official name (without prefix) of a `VideoDiT` parameter name."""
    name = _rename(our_key, _TO_OFFICIAL)
    if name is None:
        raise KeyError(our_key)
    return name


def is_dropped(official_key: str) -> bool:
    """True for keys the original saves but never uses (RoPE tables, learned positions)."""
    return official_key.startswith(DROPPED_PREFIXES)


def _lora_parts(
    tensors: Mapping[str, torch.Tensor], base: str, kind: str, where: str
) -> list[torch.Tensor]:
    found = {}
    for key, value in tensors.items():
        match = _LORA_PART.match(key)
        if match and match["base"] == base and match["kind"] == kind:
            found[int(match["i"])] = value
    if sorted(found) != list(range(len(found))):
        raise BadCheckpoint(f"{where}: LoRA {base}.{kind} parts are not numbered 0..n-1")
    return [found[i] for i in range(len(found))]


def merge_lora_weight(
    weight: torch.Tensor, a_parts: list[torch.Tensor], b_parts: list[torch.Tensor]
) -> torch.Tensor:
    """Return W + concat_rows_i(B_i @ A_i) * alpha / r (spec §3.8).

    As the original's merge: the product runs in fp32, is cast to W's dtype, then added.
    """
    rank = a_parts[0].shape[0]
    delta = torch.cat([b.float() @ a.float() for a, b in zip(a_parts, b_parts, strict=True)], dim=0)
    return weight + (delta * (LORA_ALPHA / rank)).to(weight.dtype)


def merge_lora(
    tensors: Mapping[str, torch.Tensor], where: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fold `<lin>.original.*` + `<lin>.matrix_{A,B}.{i}` into plain `<lin>.weight/.bias`.

    Returns the new dictionary and the merged module names; files without LoRA pass unchanged.
    """
    bases = sorted({m["base"] for k in tensors if (m := _LORA_ORIGINAL.match(k))})
    stray = sorted(k for k in tensors if (m := _LORA_PART.match(k)) and m["base"] not in set(bases))
    if stray:
        raise BadCheckpoint(f"{where}: LoRA matrices without '.original' weights: {stray[:4]}")
    out = {k: v for k, v in tensors.items() if not _is_lora_key(k)}
    for base in bases:
        if f"{base}.weight" in tensors:
            raise BadCheckpoint(f"{where}: {base} has both merged and LoRA-wrapped weights")
        a_parts = _lora_parts(tensors, base, "matrix_A", where)
        b_parts = _lora_parts(tensors, base, "matrix_B", where)
        weight = tensors[f"{base}.original.weight"]
        if not _lora_fits(weight, a_parts, b_parts):
            raise BadCheckpoint(f"{where}: LoRA matrices of {base} do not fit its weight")
        out[f"{base}.weight"] = merge_lora_weight(weight, a_parts, b_parts) if a_parts else weight
        if f"{base}.original.bias" in tensors:
            out[f"{base}.bias"] = tensors[f"{base}.original.bias"]
    return out, bases


def _lora_fits(
    weight: torch.Tensor, a_parts: list[torch.Tensor], b_parts: list[torch.Tensor]
) -> bool:
    """True when A_i (r, in) and B_i (out_i, r) pair up and the out_i sum to W's rows."""
    if len(a_parts) != len(b_parts):
        return False
    if not a_parts:
        return True
    rank, in_dim = a_parts[0].shape[0], weight.shape[1]
    return (
        all(a.ndim == 2 and tuple(a.shape) == (rank, in_dim) for a in a_parts)
        and all(b.ndim == 2 and b.shape[1] == rank for b in b_parts)
        and sum(b.shape[0] for b in b_parts) == weight.shape[0]
    )


def _is_lora_key(key: str) -> bool:
    return bool(_LORA_PART.match(key) or _LORA_ORIGINAL.match(key))
