"""A tuned adapter for the tiny stage-II DiT, as `vidrefine tune` would write one."""

from __future__ import annotations

from pathlib import Path

import torch

from vidrefine.train.lora import AdapterConfig, save_adapter, weights_fingerprint

TARGETS = ("blocks.0.attn.qkv", "blocks.1.mlp.fc2")


def write_adapter(path: Path, base: torch.nn.Module, *, seed: int = 0) -> Path:
    """A rank-4 adapter on two of `base`'s linears with B far from zero (a trained one)."""
    gen = torch.Generator().manual_seed(seed)
    pairs = {}
    for name in TARGETS:
        weight = base.get_submodule(name).weight
        a = torch.randn(4, weight.shape[1], generator=gen)
        pairs[name] = (a, torch.randn(weight.shape[0], 4, generator=gen))
    config = AdapterConfig(
        r=4, lora_alpha=4.0, target_modules=list(TARGETS),
        base_model_fingerprint=weights_fingerprint(base),
    )  # fmt: skip
    save_adapter(path, pairs, {}, config)
    return path
