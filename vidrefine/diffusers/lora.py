"""LoRA adapters of vidrefine's DiT in diffusers' convention (`pipe.load_lora_weights`).

An adapter made with peft on `vidrefine.models.dit.VideoDiT` names its layers `blocks.N.attn.qkv`
(under `base_model.model.` when saved from a `PeftModel`); the diffusers model names the same
layers `transformer_blocks.N.attn.qkv`, and diffusers keys a pipeline's adapter `transformer.*`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vidrefine.diffusers.transformer import diffusers_key

PEFT_PREFIX = "base_model.model."


def to_diffusers_lora(adapter: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`VideoDiT` adapter tensors under `FlashVideoTransformer3DModel`'s names (no prefix)."""
    out = {}
    for key, value in adapter.items():
        if ".lora_" not in key:
            raise ValueError(f"{key}: not a LoRA tensor (a LoRA key holds '.lora_A' or '.lora_B')")
        out[diffusers_key(key.removeprefix(PEFT_PREFIX))] = value
    return out


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


__all__ = ["PEFT_PREFIX", "save_diffusers_lora", "to_diffusers_lora"]
