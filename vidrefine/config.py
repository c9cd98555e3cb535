"""Frozen configuration: model architectures (code, not settings) and the run knobs presets set."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from vidrefine.errors import BadInput

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], *, source: str = "config") -> T:
    """Build dataclass `cls` from `data`, naming any unknown key and where it came from."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadInput(
            f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return cls(**data)


@dataclass(frozen=True)
class VAEConfig:
    """CogVideoX 3D causal VAE shape (flashvideo-spec §6); the official one is `OFFICIAL_VAE`."""

    block_out_channels: tuple[int, ...] = (128, 256, 256, 512)
    layers_per_block: int = 3  # encoder resnets per level; the decoder has one more
    latent_channels: int = 16
    in_channels: int = 3
    norm_groups: int = 32
    norm_eps: float = 1e-6
    time_compress_levels: int = 2  # levels that also halve time: 2 -> 4x temporal compression

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent along height and width (8 for the official VAE)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def temporal_factor(self) -> int:
        """Frames per latent frame after the first (4 for the official VAE)."""
        return 2**self.time_compress_levels


OFFICIAL_VAE = VAEConfig()


@dataclass(frozen=True)
class DiTConfig:
    """CogVideoX-style DiT shape (flashvideo-spec §2-3); stage I and II differ only here."""

    hidden_size: int
    num_layers: int
    num_heads: int
    time_embed_dim: int = 512
    text_dim: int = 4096
    text_length: int = 226
    patch_size: int = 2
    in_channels: int = 16
    out_channels: int = 16
    mlp_ratio: int = 4
    stage2_embeddings: bool = False  # time_size_embedding + ref_step_time_embedding (spec §3.3)

    @property
    def head_dim(self) -> int:
        """Width of one attention head (64 in both stages)."""
        return self.hidden_size // self.num_heads


STAGE1_DIT = DiTConfig(hidden_size=3072, num_layers=42, num_heads=48)
STAGE2_DIT = DiTConfig(hidden_size=1920, num_layers=30, num_heads=30, stage2_embeddings=True)

# Latent scale factors belong to the pipeline, not the VAE (spec §6.4).
STAGE1_LATENT_SCALE = 0.7
STAGE2_LATENT_SCALE = 1.15258426


def replace(cfg: T, **changes: Any) -> T:
    """Return a copy of frozen dataclass `cfg` with `changes` applied."""
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class RunConfig:
    """Run knobs set by `presets/*.toml` and CLI flags (defaults < preset < flags).

    `faithful` values reproduce the original FlashVideo scripts; see presets/faithful.toml.
    """

    # Output picture and timing.
    size: str = "1080p"  # "720p" | "1080p" | "1440p" | "WxH"
    aspect: str = (
        "keep"  # "keep" (pad and crop back) | "stretch" (the original's resize, spec §10.1)
    )
    fps_mode: str = "source"  # "source" (timestamps kept) | "fixed8" (the original writes 8 fps)
    audio: bool = True  # copy or re-encode every audio stream (the original drops audio)
    codec: str = "h264"  # "h264" | "hevc"
    pix_fmt: str = "yuv420p"  # "yuv420p" | "yuv420p10le"
    crf: int = 18
    encoder_preset: str = "medium"
    # Stage-II sampling (spec §5).
    steps: int = 4
    shift: float = 2.5
    cfg_scale: float = 13.0
    strength: int = 675  # degradation step index on the zero-SNR table, 600..750
    # "bf16": t, the network timestep and the reference step are bf16-rounded, as in training and
    # the release (spec §5.4: training drew t in bf16, so 675 is only ever seen as 676);
    # "exact": float64 grid and unrounded network inputs, for experiments.
    timestep_rounding: str = "bf16"
    caption_prefix: str = ""  # the original script prepends "medium motion," (spec §5.6)
    seed: int = 0
    posterior: str = "sample"  # "sample" (the original, spec §5.1) | "mean" of the VAE posterior
    # Precision and memory.
    dtype: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "fp16" | "fp32"
    vae_dtype: str = "auto"
    vram_gb: float | None = None  # memory budget for planning; None = what the device has
    offload: str = "none"  # "none" | "layer" (DiT and T5 blocks stream from host memory)
    # Speed (issue 7, docs/performance.md); none of these changes the sampled numbers beyond
    # kernel rounding.
    cfg_batched: bool = True  # CFG passes as one batch of 2 (faster) or in turn (less memory)
    attention: str = "auto"  # SDPA kernel tried first: auto | cudnn | flash | efficient | math
    compile: bool = False  # torch.compile each DiT block (the first window pays the compile time)
    background_io: bool = True  # decode the next input and encode the last output on threads
    # Windows over time (latent frames) and VAE tiling.
    window_latent: int = 13  # 13 latent frames = 49 pixel frames, the size the DiT was trained on
    window_overlap_latent: int = 4
    vae_mode: str = "blend"  # "blend" (feathered tiles) | "faithful" (hard seams) | "whole"
    vae_tile_latent: int = 0  # 0 = planned from the memory budget
    vae_tile_overlap_latent: int = 8
    vae_chunk_latent: int = 0  # 0 = planned from the memory budget
    # Stage I (`vidrefine t2v`, spec §4).
    stage1_cfg_scale: float = 8.0  # the original's stage-I guidance scale (spec §4.3, §9.2)
    stage1_guidance: str = "dynamic"  # "dynamic" (monotone schedule) | "faithful" (spec §4.3 table)
