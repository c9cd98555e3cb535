"""LoRA adapters of vidrefine's DiT in diffusers' convention (`pipe.load_lora_weights`).

An adapter made with peft on `vidrefine.models.dit.VideoDiT` names its layers `blocks.N.attn.qkv`
(under `base_model.model.` when saved from a `PeftModel`, as `vidrefine tune` saves them); the
diffusers model names the same layers `transformer_blocks.N.attn.qkv`, and diffusers keys a
pipeline's adapter `transformer.*`. `load_tuned_adapter` loads a `vidrefine tune` adapter file.

"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from vidrefine.diffusers.names import BLOCKS, diffusers_key

PEFT_PREFIX = "base_model.model."


def to_diffusers_lora(adapter: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`VideoDiT` adapter tensors under `FlashVideoTransformer3DModel`'s names (no prefix)."""
    out = {}
    for key, value in adapter.items():
        if ".lora_" not in key:
            raise ValueError(f"{key}: not a LoRA tensor (a LoRA key holds '.lora_A' or '.lora_B')")
        out[diffusers_key(key.removeprefix(PEFT_PREFIX))] = value
    return out


def _videodit_key(name: str) -> str:
    """`VideoDiT`'s name of one of the diffusers model's parameters (inverse of diffusers_key)."""
    head, dot, rest = name.partition(".")
    return f"blocks{dot}{rest}" if head == BLOCKS else name


def save_diffusers_lora(
    folder: str | Path, adapter: Mapping[str, torch.Tensor], lora_config: Mapping[str, Any]
) -> Path:
    """Write `adapter` where `pipe.load_lora_weights(folder)` finds it (diffusers' own writer).

    `lora_config` is the adapter's peft `LoraConfig` as a dict (rank, alpha, targets): without
    it diffusers would take alpha = rank, a scale of 1 whatever the adapter was trained with.
    """
    from vidrefine.diffusers.pipeline import FlashVideoRefinePipeline

    config = {k: sorted(v) if isinstance(v, set) else v for k, v in lora_config.items()}
    FlashVideoRefinePipeline.save_lora_weights(
        folder,
        transformer_lora_layers=to_diffusers_lora(adapter),
        transformer_lora_adapter_metadata=config,
    )
    return Path(folder)


def load_tuned_adapter(pipe: Any, path: str | Path, adapter_name: str | None = None) -> str:
    """Load a `vidrefine tune` adapter file into `pipe.transformer`; returns the adapter's name.

    Its LoRA pairs become a peft adapter of the diffusers model (scaled per call by
    `attention_kwargs={"scale": s}`, removed by `pipe.unload_lora_weights()`), with the rank and
    alpha of its config. What tune trained whole (the stage-II embeddings, peft's
    `modules_to_save`) replaces the model's own weights: neither scaled nor unloaded.
    """
    from vidrefine.train.lora import _check_fits, read_adapter, weights_fingerprint

    adapter = read_adapter(path)
    transformer = pipe.transformer
    as_videodit = {_videodit_key(k): v for k, v in transformer.state_dict().items()}
    fingerprint = weights_fingerprint(SimpleNamespace(state_dict=lambda: as_videodit))
    _check_fits(adapter, transformer._dit, fingerprint)  # the base model and every shape
    config = adapter.config
    tensors = {}
    for name, (a, b) in adapter.pairs.items():
        tensors[f"{diffusers_key(name)}.lora_A.weight"] = a
        tensors[f"{diffusers_key(name)}.lora_B.weight"] = b
    metadata = {
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "target_modules": sorted(diffusers_key(n) for n in config.target_modules),
    }
    name = adapter_name or Path(path).stem
    transformer.load_lora_adapter(tensors, adapter_name=name, metadata=metadata, prefix=None)
    parameters = dict(transformer.named_parameters())
    with torch.no_grad():
        for key, value in adapter.modules.items():
            target = parameters[diffusers_key(key)]
            target.copy_(value.to(target.device, target.dtype))
    return name


__all__ = ["PEFT_PREFIX", "load_tuned_adapter", "save_diffusers_lora", "to_diffusers_lora"]
