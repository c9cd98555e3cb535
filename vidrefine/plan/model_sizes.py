"""The sizes a memory plan is made of: the stage-II DiT's architecture, the VAE's parameters and
widths and T5's parameters and blocks. The official ones are the default; a run plans with those
of the weight files it found (`vidrefine.pipeline.loading.found_model_sizes`), so tiny test
weights are not planned as 26 GB of official ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vidrefine.config import STAGE2_DIT, DiTConfig, VAEConfig
from vidrefine.plan.vae_memory import OFFICIAL_PARAMS as OFFICIAL_VAE_PARAMS

T5_XXL_PARAMS = 4_762_310_656  # T5EncoderModel(t5-v1_1-xxl config) parameter count
T5_XXL_BLOCKS = 24
T5_XXL_BLOCK_PARAMS = 192_946_176  # one T5Block: attention 4 x 4096^2, gated FFN 3 x 4096 x 10240
T5_XXL_WIDTH = 4096
# `vae_memory` is written for the official widths: the encoder peaks at block_out_channels[0]
# = 128 channels at full resolution, the decoder at block_out_channels[1] = 256 (after up.1's
# upsampling); other widths scale the activations (`ModelSizes.vae_scale`).
OFFICIAL_VAE_WIDTHS = VAEConfig().block_out_channels
ENCODE_WIDTH, DECODE_WIDTH = OFFICIAL_VAE_WIDTHS[0], OFFICIAL_VAE_WIDTHS[1]


@dataclass(frozen=True)
class ModelSizes:
    """Parameter counts and widths of the three stage-II models (the official ones by default)."""

    dit: DiTConfig = STAGE2_DIT
    vae_params: int = OFFICIAL_VAE_PARAMS
    vae_widths: tuple[int, ...] = OFFICIAL_VAE_WIDTHS  # block_out_channels
    t5_params: int = T5_XXL_PARAMS
    t5_blocks: int = T5_XXL_BLOCKS
    t5_block_params: int = T5_XXL_BLOCK_PARAMS
    t5_width: int = T5_XXL_WIDTH

    @property
    def vae_scale(self) -> float:
        """The VAE's pass activations against the official VAE's, cautiously: the larger of its
        encoder's and decoder's width ratios at full resolution. A narrower decoder does not
        shrink in proportion (its caches and halo frames: a 32-wide one peaks at 0.19 of the
        official estimate, not 32/256), so one ratio serves both passes.
        """
        encode = self.vae_widths[0] / ENCODE_WIDTH
        decode = self.vae_widths[min(1, len(self.vae_widths) - 1)] / DECODE_WIDTH
        return max(encode, decode)

    @property
    def official(self) -> bool:
        """Whether these are the official models' sizes."""
        return self == OFFICIAL_SIZES


OFFICIAL_SIZES = ModelSizes()


def dit_param_count(cfg: DiTConfig) -> int:
    """Parameters of `VideoDiT(cfg)` from its shapes (tested against the module)."""
    d, e, p = cfg.hidden_size, cfg.time_embed_dim, cfg.patch_size
    inner = cfg.mlp_ratio * d
    block = (
        (3 * d * d + 3 * d)  # qkv
        + 4 * cfg.head_dim  # q and k LayerNorms
        + (d * d + d)  # attention output
        + 4 * d  # norm1, norm2
        + (d * inner + inner + inner * d + d)  # MLP
        + (e * 12 * d + 12 * d)  # adaLN modulation
    )
    time_mlps = 3 if cfg.stage2_embeddings else 1
    rest = (
        cfg.in_channels * d * p * p
        + d  # patch embedding
        + cfg.text_dim * d
        + d  # text projection
        + time_mlps * (d * e + e + e * e + e)
        + 2 * d  # final norm
        + 2 * d
        + (e * 2 * d + 2 * d)  # head norm and modulation
        + d * p * p * cfg.out_channels
        + p * p * cfg.out_channels
    )
    return cfg.num_layers * block + rest


def dit_block_params(cfg: DiTConfig) -> int:
    """Parameters of one transformer block."""
    one = dataclasses.replace(cfg, num_layers=1)
    none = dataclasses.replace(cfg, num_layers=0)
    return dit_param_count(one) - dit_param_count(none)


def t5_block_params(config: Mapping[str, Any]) -> int:
    """Parameters of one T5 encoder block from a transformers `config.json`: self-attention
    (q, k, v, o), the feed-forward (gated: two input matrices) and two layer norms.
    """
    d, inner = config["d_model"], config["num_heads"] * config["d_kv"]
    gated = str(config.get("feed_forward_proj", "relu")).startswith("gated")
    return 4 * d * inner + (3 if gated else 2) * d * config["d_ff"] + 2 * d


def t5_encoder_params(config: Mapping[str, Any]) -> int:
    """Parameters of `T5EncoderModel(config)`: the shared embedding, the blocks, the first
    block's relative position buckets and the final layer norm.
    """
    d = config["d_model"]
    buckets = config.get("relative_attention_num_buckets", 32) * config["num_heads"]
    blocks = config["num_layers"] * t5_block_params(config)
    return config["vocab_size"] * d + blocks + buckets + d


def t5_sizes(config: Mapping[str, Any]) -> dict[str, int]:
    """The `ModelSizes` fields of a T5 encoder, from its transformers `config.json`."""
    return {
        "t5_params": t5_encoder_params(config),
        "t5_blocks": int(config["num_layers"]),
        "t5_block_params": t5_block_params(config),
        "t5_width": int(config["d_model"]),
    }


__all__ = [
    "OFFICIAL_SIZES",
    "ModelSizes",
    "dit_block_params",
    "dit_param_count",
    "t5_encoder_params",
    "t5_sizes",
]
