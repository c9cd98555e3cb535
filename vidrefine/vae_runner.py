"""Running the causal VAE over a clip under a `VAEPlan`: spatial tiles outside, temporal chunks
with the causal cache inside (the original's order, spec §6.5), feathered or hard-seam blending.

Latents here are UNSCALED: the pipeline multiplies by 1.15258426 (stage II) or 0.7 (stage I).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vidrefine.chunking import (
    FAITHFUL_DECODE_CHUNK_LATENT,
    FAITHFUL_ENCODE_CHUNK_FRAMES,
    TIME_FACTOR,
    Chunk,
    grid_frames,
    pixel_count,
    plan_decode_chunks,
    plan_encode_chunks,
)
from vidrefine.errors import BadInput, DoesNotFit
from vidrefine.models.vae import CausalVideoVAE, latent_mean, sample_latent
from vidrefine.tiling import TilePlan, add_weighted, plan_split, plan_tiles
from vidrefine.vae_memory import decode_peak_bytes, encode_peak_bytes, fixed_bytes

SPATIAL = 8  # pixels per latent along height and width
MODES = ("blend", "faithful", "whole")
FAITHFUL_MARGIN_LATENT = 16  # the original's decode tile overlap (spec §6.5)
_GB = 1024**3


@dataclass(frozen=True)
class VAEPlan:
    """How one clip of `frames` x `size_hw` is encoded and decoded (all sizes before padding).

    Tiles are in latent coordinates of the padded clip; chunk lengths are pixel frames (encode)
    and latent frames (decode). `estimate_gb` is the planned peak of the larger pass.
    """

    mode: str
    size_hw: tuple[int, int]
    frames: int
    encode_tiles: TilePlan
    decode_tiles: TilePlan
    encode_chunk_frames: int
    decode_chunk_latent: int
    estimate_gb: float

    @property
    def padded_hw(self) -> tuple[int, int]:
        """Pixel size after replicate padding to multiples of 8."""
        return (_ceil_to(self.size_hw[0], SPATIAL), _ceil_to(self.size_hw[1], SPATIAL))

    @property
    def padded_frames(self) -> int:
        """Frame count after replicate padding to 1 + 4k."""
        return grid_frames(self.frames)

    @property
    def latent_hw(self) -> tuple[int, int]:
        """Latent (height, width)."""
        return (self.padded_hw[0] // SPATIAL, self.padded_hw[1] // SPATIAL)

    @property
    def latent_frames(self) -> int:
        """Latent frame count, 1 + (padded_frames - 1) / 4."""
        return 1 + (self.padded_frames - 1) // TIME_FACTOR

    def encode_chunks(self) -> tuple[Chunk, ...]:
        """Pixel-frame chunks of the padded clip."""
        return plan_encode_chunks(self.padded_frames, self.encode_chunk_frames)

    def decode_chunks(self) -> tuple[Chunk, ...]:
        """Latent-frame chunks."""
        return plan_decode_chunks(self.latent_frames, self.decode_chunk_latent)


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def default_budget_gb() -> float:
    """Free CUDA memory when a GPU is present, else half of the available host memory."""
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return 0.9 * free / _GB
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 16.0
    return 0.5 * available / _GB


def _peaks(plan_bits: dict, size_px: tuple[int, int], dtype_bytes: int) -> float:
    """Largest planned pass (encode or decode) in bytes, fixed costs included."""
    enc_frames = 1 + plan_bits["encode_chunk_frames"]
    dec_frames = 1 + TIME_FACTOR * plan_bits["decode_chunk_latent"]
    enc_hw = tuple(SPATIAL * s for s in plan_bits["encode_tiles"].tile_hw)
    dec_hw = tuple(SPATIAL * s for s in plan_bits["decode_tiles"].tile_hw)
    return max(
        encode_peak_bytes(enc_frames, enc_hw, dtype_bytes=dtype_bytes),
        decode_peak_bytes(dec_frames, dec_hw, dtype_bytes=dtype_bytes),
    )


def _fit_tile(
    latent_hw: tuple[int, int], frames: int, room: float, dtype_bytes: int, *, decode: bool
) -> int:
    """Largest square tile (latent, multiple of 8, >= 8) whose pass fits in `room` bytes."""
    peak = decode_peak_bytes if decode else encode_peak_bytes
    for tile in range(_ceil_to(max(latent_hw), 8), 7, -8):
        window = (SPATIAL * min(tile, latent_hw[0]), SPATIAL * min(tile, latent_hw[1]))
        if peak(frames, window, dtype_bytes=dtype_bytes) <= room:
            return tile
    raise DoesNotFit(
        f"the VAE needs more than the {room / _GB:.1f} GB left for it even with 8-latent tiles;"
        " raise --vram-gb or lower the output size"
    )


def plan_vae(
    size_hw: tuple[int, int],
    frames: int,
    *,
    budget_gb: float | None = None,
    mode: str = "blend",
    tile_latent: int = 0,
    overlap_latent: int = 8,
    chunk_latent: int = 0,
    dtype_bytes: int = 2,
    faithful_splits_hw: tuple[int, int] = (1, 2),
) -> VAEPlan:
    """Plan encoding and decoding a clip of `frames` x `size_hw` pixels.

    Modes: "blend" (cosine-feathered tiles and chunks sized to `budget_gb`, None = what the device
    has), "faithful" (the original: encode chunks [17, 16, 16], decode latents [0:3] then pairs,
    `faithful_splits_hw` tiles with a 16-latent margin and hard seams, spec §6.5) and "whole"
    (one pass each way). `tile_latent`/`chunk_latent` 0 = planned; chunk_latent n means decode
    chunks of n latents and encode chunks of 4n frames (planned: 2 and 16, the original's).
    """
    if mode not in MODES:
        raise BadInput(f"unknown VAE mode {mode!r}; use one of {', '.join(MODES)}")
    if frames < 1 or min(size_hw) < 1:
        raise BadInput(f"cannot plan a VAE pass for {frames} frames of {size_hw[1]}x{size_hw[0]}")
    latent_hw = (_ceil_to(size_hw[0], SPATIAL) // SPATIAL, _ceil_to(size_hw[1], SPATIAL) // SPATIAL)
    single = plan_tiles(latent_hw, (0, 0), 0)
    bits: dict = {"encode_tiles": single, "decode_tiles": single}
    if mode == "whole":
        bits |= {"encode_chunk_frames": 0, "decode_chunk_latent": 0}
    elif mode == "faithful":
        bits |= {
            "encode_chunk_frames": FAITHFUL_ENCODE_CHUNK_FRAMES,
            "decode_chunk_latent": FAITHFUL_DECODE_CHUNK_LATENT,
            "decode_tiles": plan_split(latent_hw, faithful_splits_hw, FAITHFUL_MARGIN_LATENT),
        }
    else:
        bits |= _blend_bits(
            latent_hw, frames, budget_gb, tile_latent, overlap_latent, chunk_latent, dtype_bytes
        )
    padded = (SPATIAL * latent_hw[0], SPATIAL * latent_hw[1])
    whole_frames = grid_frames(frames)
    for key, value in (
        ("encode_chunk_frames", whole_frames - 1),
        ("decode_chunk_latent", (whole_frames - 1) // TIME_FACTOR),
    ):
        bits[key] = bits[key] or value  # 0 = one pass; size the estimate on the whole clip
    peak = _peaks(bits, padded, dtype_bytes) + fixed_bytes(
        whole_frames, padded, dtype_bytes=dtype_bytes
    )
    return VAEPlan(mode, tuple(size_hw), frames, estimate_gb=peak / _GB, **bits)


def _blend_bits(
    latent_hw: tuple[int, int],
    frames: int,
    budget_gb: float | None,
    tile_latent: int,
    overlap_latent: int,
    chunk_latent: int,
    dtype_bytes: int,
) -> dict:
    decode_chunk = chunk_latent or FAITHFUL_DECODE_CHUNK_LATENT
    encode_chunk = TIME_FACTOR * chunk_latent or FAITHFUL_ENCODE_CHUNK_FRAMES
    if tile_latent:
        enc_tile = dec_tile = tile_latent
    else:
        budget = (budget_gb if budget_gb is not None else default_budget_gb()) * _GB
        padded = (SPATIAL * latent_hw[0], SPATIAL * latent_hw[1])
        room = budget - fixed_bytes(grid_frames(frames), padded, dtype_bytes=dtype_bytes)
        dec_frames = min(grid_frames(frames), 1 + TIME_FACTOR * decode_chunk)
        enc_frames = min(grid_frames(frames), 1 + encode_chunk)
        dec_tile = _fit_tile(latent_hw, dec_frames, room, dtype_bytes, decode=True)
        enc_tile = _fit_tile(latent_hw, enc_frames, room, dtype_bytes, decode=False)
    return {
        "encode_chunk_frames": encode_chunk,
        "decode_chunk_latent": decode_chunk,
        "encode_tiles": plan_tiles(latent_hw, (enc_tile, enc_tile), overlap_latent),
        "decode_tiles": plan_tiles(latent_hw, (dec_tile, dec_tile), overlap_latent),
    }


def _check_shape(name: str, tensor: torch.Tensor, expected: tuple[int, ...]) -> None:
    if tuple(tensor.shape[2:]) != expected or tensor.ndim != 5:
        raise ValueError(
            f"{name} of shape {tuple(tensor.shape)} does not match the plan {expected}"
        )


def pad_to_plan(video: torch.Tensor, plan: VAEPlan) -> torch.Tensor:
    """Replicate-pad (B, C, T, H, W) at the end of time, bottom and right to the plan's grid."""
    pad_t = plan.padded_frames - plan.frames
    pad_h, pad_w = plan.padded_hw[0] - plan.size_hw[0], plan.padded_hw[1] - plan.size_hw[1]
    if pad_t + pad_h + pad_w == 0:
        return video
    return F.pad(video, (0, pad_w, 0, pad_h, 0, pad_t), mode="replicate")


@torch.no_grad()
def encode_video(
    vae: CausalVideoVAE,
    video: torch.Tensor,
    plan: VAEPlan,
    *,
    sample: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Video (B, 3, T, H, W) in [-1, 1] -> UNSCALED latents (B, latent, T', h, w), video's dtype.

    Pads to 1 + 4k frames and multiples of 8 (replicate), encodes tile by tile and chunk by chunk,
    blends the posterior moments, then takes the mean or (sample=True) one draw from `generator`.
    """
    _check_shape("video", video, (plan.frames, *plan.size_hw))
    if sample and generator is None:
        raise ValueError("sample=True needs a torch.Generator")
    x = pad_to_plan(video, plan)
    channels = 2 * vae.config.latent_channels
    moments = torch.zeros(
        (video.shape[0], channels, plan.latent_frames, *plan.latent_hw),
        device=video.device,
        dtype=torch.float32,
    )
    tiles = plan.encode_tiles
    for tile in tiles.tiles:
        window = x[(..., *tile.window(SPATIAL))]
        cache = None
        for chunk in plan.encode_chunks():
            part, cache = vae.encode(window[:, :, chunk.start : chunk.stop], cache)
            add_weighted(moments[:, :, chunk.out_start : chunk.out_stop], part, tiles, tile, 1)
    latents = sample_latent(moments, generator) if sample else latent_mean(moments)
    return latents.to(video.dtype)


@torch.no_grad()
def decode_latents(vae: CausalVideoVAE, z: torch.Tensor, plan: VAEPlan) -> torch.Tensor:
    """UNSCALED latents (B, latent, T', h, w) -> video (B, 3, frames, H, W) float32, unclamped.

    Decodes tile by tile (causal chunks inside each tile), blends with the plan's weights (hard
    seams in faithful mode) and crops the padding back to the plan's frames and size.
    """
    _check_shape("latents", z, (plan.latent_frames, *plan.latent_hw))
    out = torch.zeros(
        (z.shape[0], vae.config.in_channels, pixel_count(plan.latent_frames), *plan.padded_hw),
        device=z.device,
        dtype=torch.float32,
    )
    tiles = plan.decode_tiles
    for tile in tiles.tiles:
        window = z[(..., *tile.window(1))]
        cache = None
        for chunk in plan.decode_chunks():
            part, cache = vae.decode(window[:, :, chunk.start : chunk.stop], cache)
            add_weighted(out[:, :, chunk.out_start : chunk.out_stop], part, tiles, tile, SPATIAL)
    return out[:, :, : plan.frames, : plan.size_hw[0], : plan.size_hw[1]]
