"""A tuned adapter for the tiny stage-II DiT, as `vidrefine tune` would write one."""

from __future__ import annotations

from pathlib import Path

import torch

from vidrefine.train.lora import AdapterConfig, save_adapter, weights_fingerprint

TARGETS = ("blocks.0.attn.qkv", "blocks.1.mlp.fc2")


def write_adapter(
    path: Path,
    base: torch.nn.Module,
    *,
    seed: int = 0,
    spread: float = 1.0,
    alpha: float = 4.0,
    whole: tuple[str, ...] = (),
) -> Path:
    """A rank-4 adapter on two of `base`'s linears with B far from zero (a trained one): A and B
    drawn with standard deviation `spread`; each linear of `whole` trained whole (its weight
    and bias moved by 0.1 x N(0, 1)), as tune trains the stage-II embeddings.
    """
    gen = torch.Generator().manual_seed(seed)
    pairs = {}
    for name in TARGETS:
        weight = base.get_submodule(name).weight
        a = spread * torch.randn(4, weight.shape[1], generator=gen)
        pairs[name] = (a, spread * torch.randn(weight.shape[0], 4, generator=gen))
    modules = {}
    for name in whole:
        for parameter in ("weight", "bias"):
            value = getattr(base.get_submodule(name), parameter)
            modules[f"{name}.{parameter}"] = value + 0.1 * torch.randn(value.shape, generator=gen)
    config = AdapterConfig(
        r=4,
        lora_alpha=alpha,
        target_modules=list(TARGETS),
        modules_to_save=sorted({name.split(".")[0] for name in whole}),
        base_model_fingerprint=weights_fingerprint(base),
    )
    save_adapter(path, pairs, modules, config)
    return path
