"""Tiny random DiT checkpoints in the OFFICIAL FlashVideo format ({"module": {...}}, torch.save).

Key names are transcribed from flashvideo-spec §8.2 here, independently of the loader's table in
vidrefine/checkpoints/dit_keys.py, so that a wrong entry there cannot cancel itself out.
"""

from __future__ import annotations

from pathlib import Path

import torch

PREFIX = "model.diffusion_model."

# Tiny shape: head dim 64 as the real models, everything else small.
TINY_HIDDEN = 128
TINY_LAYERS = 2
TINY_TEXT_DIM = 32
TINY_TIME_DIM = 512
TINY_TEXT_LEN = 8
LATENT_CHANNELS = 16
PATCH = 2
HEAD_DIM = 64


def _rand(gen: torch.Generator, *shape: int, scale: float | None = None) -> torch.Tensor:
    fan_in = shape[-1] if len(shape) > 1 else 1
    std = scale if scale is not None else fan_in**-0.5
    return torch.randn(*shape, generator=gen) * std


def _linear(
    out: dict[str, torch.Tensor], name: str, gen: torch.Generator, n_out: int, n_in: int
) -> None:
    out[f"{name}.weight"] = _rand(gen, n_out, n_in)
    out[f"{name}.bias"] = _rand(gen, n_out, scale=0.1)


def _norm(out: dict[str, torch.Tensor], name: str, gen: torch.Generator, dim: int) -> None:
    out[f"{name}.weight"] = 1.0 + _rand(gen, dim, scale=0.1)
    out[f"{name}.bias"] = _rand(gen, dim, scale=0.1)


def official_dit_tensors(
    *,
    hidden: int = TINY_HIDDEN,
    layers: int = TINY_LAYERS,
    text_dim: int = TINY_TEXT_DIM,
    time_dim: int = TINY_TIME_DIM,
    stage2: bool = True,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """DiT tensors under their official names WITHOUT the engine prefix (spec §8.2 table)."""
    gen = torch.Generator().manual_seed(seed)
    t: dict[str, torch.Tensor] = {}
    _linear(t, "time_embed.0", gen, time_dim, hidden)
    _linear(t, "time_embed.2", gen, time_dim, time_dim)
    if stage2:
        for name in ("time_size_embedding", "ref_step_time_embedding"):
            _linear(t, f"{name}.0", gen, time_dim, hidden)
            _linear(t, f"{name}.2", gen, time_dim, time_dim)
    conv_shape = (hidden, LATENT_CHANNELS, PATCH, PATCH)
    t["mixins.patch_embed.proj.weight"] = _rand(gen, *conv_shape, scale=0.1)
    t["mixins.patch_embed.proj.bias"] = _rand(gen, hidden, scale=0.1)
    _linear(t, "mixins.patch_embed.text_proj", gen, hidden, text_dim)
    for layer in range(layers):
        base = f"transformer.layers.{layer}"
        _norm(t, f"{base}.input_layernorm", gen, hidden)
        _linear(t, f"{base}.attention.query_key_value", gen, 3 * hidden, hidden)
        _linear(t, f"{base}.attention.dense", gen, hidden, hidden)
        _norm(t, f"{base}.post_attention_layernorm", gen, hidden)
        _linear(t, f"{base}.mlp.dense_h_to_4h", gen, 4 * hidden, hidden)
        _linear(t, f"{base}.mlp.dense_4h_to_h", gen, hidden, 4 * hidden)
        _linear(t, f"mixins.adaln_layer.adaLN_modulations.{layer}.1", gen, 12 * hidden, time_dim)
        _norm(t, f"mixins.adaln_layer.query_layernorm_list.{layer}", gen, HEAD_DIM)
        _norm(t, f"mixins.adaln_layer.key_layernorm_list.{layer}", gen, HEAD_DIM)
    _norm(t, "transformer.final_layernorm", gen, hidden)
    _norm(t, "mixins.final_layer.norm_final", gen, hidden)
    _linear(t, "mixins.final_layer.linear", gen, PATCH * PATCH * LATENT_CHANNELS, hidden)
    _linear(t, "mixins.final_layer.adaLN_modulation.1", gen, 2 * hidden, time_dim)
    return t


def lora_wrapped(
    merged_base: dict[str, torch.Tensor], *, rank: int = 4, seed: int = 1
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Return (unmerged LoRA tensors, the same model merged by hand) for a stage-I dictionary.

    Adapted linears (spec §3.8): query_key_value (3 parts), attention.dense and
    adaLN_modulations.{l}.1 (1 part each); merged W = W0 + concat_rows(B_i @ A_i) / rank.
    """
    gen = torch.Generator().manual_seed(seed)
    layers = {int(k.split(".")[2]) for k in merged_base if k.startswith("transformer.layers.")}
    targets = {}
    for layer in sorted(layers):
        targets[f"transformer.layers.{layer}.attention.query_key_value"] = 3
        targets[f"transformer.layers.{layer}.attention.dense"] = 1
        targets[f"mixins.adaln_layer.adaLN_modulations.{layer}.1"] = 1
    unmerged = dict(merged_base)
    merged = dict(merged_base)
    for name, parts in targets.items():
        w0 = unmerged.pop(f"{name}.weight")
        b0 = unmerged.pop(f"{name}.bias")
        unmerged[f"{name}.original.weight"] = w0
        unmerged[f"{name}.original.bias"] = b0
        rows = w0.shape[0] // parts
        deltas = []
        for i in range(parts):
            a = _rand(gen, rank, w0.shape[1], scale=0.5)
            b = _rand(gen, rows, rank, scale=0.5)
            unmerged[f"{name}.matrix_A.{i}"] = a
            unmerged[f"{name}.matrix_B.{i}"] = b
            deltas.append(b.double() @ a.double())
        merged[f"{name}.weight"] = (w0.double() + torch.cat(deltas) / rank).float()
    return unmerged, merged


def engine_dict(dit: dict[str, torch.Tensor], *, extras: bool = True) -> dict[str, torch.Tensor]:
    """Wrap DiT tensors as the SAT engine saves them, with the keys the loader must skip."""
    module = {PREFIX + k: v for k, v in dit.items()}
    if extras:
        hidden = dit["mixins.patch_embed.proj.weight"].shape[0]
        module[PREFIX + "mixins.pos_embed.freqs_sin"] = torch.zeros(4, HEAD_DIM)
        module[PREFIX + "mixins.pos_embed.freqs_cos"] = torch.ones(4, HEAD_DIM)
        module[PREFIX + "transformer.position_embeddings.weight"] = torch.zeros(64, hidden)
        module["first_stage_model.encoder.conv_in.conv.weight"] = torch.zeros(4, 3, 3, 3, 3)
        module["conditioner.embedders.0.transformer.shared.weight"] = torch.zeros(10, 4)
    return module


def write_official(path: Path, dit: dict[str, torch.Tensor], *, extras: bool = True) -> Path:
    """torch.save {"module": engine_dict(dit)} to `path` and return it."""
    torch.save({"module": engine_dict(dit, extras=extras)}, path)
    return path
