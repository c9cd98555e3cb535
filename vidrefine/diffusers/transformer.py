"""FlashVideo's stage-II DiT as a diffusers model: `vidrefine.models.dit.VideoDiT`'s own math
behind `ModelMixin`, `ConfigMixin` and `PeftAdapterMixin` (docs/diffusers.md).

The config fields are named as `CogVideoXTransformer3DModel`'s where they mean the same thing;
`mlp_ratio` and `stage2_embeddings` (the frame-count and degradation-step embeddings, spec §3.3)
are FlashVideo's. Parameters keep `VideoDiT`'s names except the block list, `transformer_blocks`
as in diffusers' transformers, so LoRA keys read `transformer.transformer_blocks.N.attn.qkv...`.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import USE_PEFT_BACKEND, scale_lora_layers, unscale_lora_layers

from vidrefine.config import DiTConfig
from vidrefine.diffusers.names import BLOCKS, diffusers_key
from vidrefine.models.dit import VideoDiT


class _SharedDiT(VideoDiT):
    """A `VideoDiT` whose modules live in the diffusers model's registry (`_modules`).

    Sharing the registry means there is one set of parameters, named as diffusers names them,
    and a module swapped in by PEFT or accelerate is the one the math uses.
    """

    @property
    def blocks(self) -> torch.nn.ModuleList:
        """The block list, registered under diffusers' name."""
        return self._modules[BLOCKS]  # type: ignore[return-value]


def dit_config(config: Any) -> DiTConfig:
    """The `DiTConfig` a diffusers config of this model (a mapping) describes."""
    return DiTConfig(
        hidden_size=config["num_attention_heads"] * config["attention_head_dim"],
        num_layers=config["num_layers"],
        num_heads=config["num_attention_heads"],
        time_embed_dim=config["time_embed_dim"],
        text_dim=config["text_embed_dim"],
        text_length=config["max_text_seq_length"],
        patch_size=config["patch_size"],
        in_channels=config["in_channels"],
        out_channels=config["out_channels"],
        mlp_ratio=config["mlp_ratio"],
        stage2_embeddings=config["stage2_embeddings"],
    )


def diffusers_config(cfg: DiTConfig) -> dict[str, Any]:
    """The keyword arguments of `FlashVideoTransformer3DModel` for a `DiTConfig`."""
    return {
        "num_attention_heads": cfg.num_heads,
        "attention_head_dim": cfg.head_dim,
        "in_channels": cfg.in_channels,
        "out_channels": cfg.out_channels,
        "time_embed_dim": cfg.time_embed_dim,
        "text_embed_dim": cfg.text_dim,
        "num_layers": cfg.num_layers,
        "patch_size": cfg.patch_size,
        "max_text_seq_length": cfg.text_length,
        "mlp_ratio": cfg.mlp_ratio,
        "stage2_embeddings": cfg.stage2_embeddings,
    }


class FlashVideoTransformer3DModel(ModelMixin, ConfigMixin, PeftAdapterMixin):
    """The stage-II refiner DiT (defaults: stage2.pt's shape, 1.7 B parameters; spec §2-3).

    Inputs as `CogVideoXTransformer3DModel`'s: latents (B, T, C, H, W), text states (B, L, D) and
    the network timestep 0..1000; plus stage II's two embedding inputs (spec §3.3, §5.4).
    """

    _no_split_modules = ["DiTBlock"]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int = 16,
        time_embed_dim: int = 512,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        patch_size: int = 2,
        max_text_seq_length: int = 226,
        mlp_ratio: int = 4,
        stage2_embeddings: bool = True,
    ) -> None:
        """Build every parameter (no weights are read; use `from_pretrained`)."""
        super().__init__()
        dit = _SharedDiT(dit_config(self.config))
        for name, module in dit.named_children():
            self.add_module(diffusers_key(name), module)
        dit._modules = self._modules  # one registry: see _SharedDiT
        self.__dict__["_dit"] = dit  # not a submodule: its modules are this model's

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        num_frames: torch.Tensor | None = None,
        ref_step: torch.Tensor | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Predict the flow velocity toward the high-resolution latent (spec §5.3).

        Args:
            hidden_states: latents (B, T, C, H, W), time before channels.
            encoder_hidden_states: T5 states (B, 226, D); zeros for the unconditional branch.
            timestep: (B,) network timestep 1000 * (1 - t).
            num_frames: (B,) latent frame count for the frame-count embedding; default T.
            ref_step: (B,) degradation step for its embedding (the original feeds 676 for
                675, its bf16 rounding); required when `stage2_embeddings`.
            attention_kwargs: `{"scale": s}` scales loaded LoRA adapters, as in diffusers.
            return_dict: a `Transformer2DModelOutput` (else a tuple).
        """
        scale = (attention_kwargs or {}).get("scale", 1.0)
        if USE_PEFT_BACKEND:
            scale_lora_layers(self, scale)
        try:
            sample = self._dit(
                hidden_states,
                timestep,
                encoder_hidden_states,
                num_frames=num_frames,
                ref_step=ref_step,
            )
        finally:
            if USE_PEFT_BACKEND:
                unscale_lora_layers(self, scale)
        if not return_dict:
            return (sample,)
        return Transformer2DModelOutput(sample=sample)


__all__ = ["FlashVideoTransformer3DModel", "diffusers_config", "diffusers_key", "dit_config"]
