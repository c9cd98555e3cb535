"""Temporal chunk plans for the causal VAE on the 1 + 4k frame grid (pure; no tensors).

The VAE maps 1 + 4k pixel frames to 1 + k latent frames: frame 0 alone, then four frames per latent.
A chunked pass carries the causal cache between chunks, so a chunk boundary must fall on that
grid: encode chunks hold 1 + 4m frames first and multiples of 4 later; decode chunks hold any
number of latent frames, the first yielding 1 + 4(n-1) frames and later ones 4n.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidrefine.config import OFFICIAL_VAE

TIME_FACTOR = OFFICIAL_VAE.temporal_factor  # pixel frames per latent after the first (spec §6.2)
FAITHFUL_ENCODE_CHUNK_FRAMES = 16  # the original's pixel chunks [17, 16, 16] (spec §6.5)
FAITHFUL_DECODE_CHUNK_LATENT = 2  # the original's latent chunks [0:3], [3:5], ... (spec §6.5)


@dataclass(frozen=True)
class Chunk:
    """Input range [start, stop) of one pass and the output range it produces."""

    start: int
    stop: int
    out_start: int
    out_stop: int


def grid_frames(frames: int) -> int:
    """Smallest 1 + 4k >= frames (the padded length a clip is encoded at)."""
    if frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {frames}")
    return 1 + TIME_FACTOR * -(-(frames - 1) // TIME_FACTOR)


def latent_count(frames: int) -> int:
    """Latent frames of a clip of `frames` pixel frames (padded to the grid first)."""
    return 1 + (grid_frames(frames) - 1) // TIME_FACTOR


def pixel_count(latent_frames: int) -> int:
    """Pixel frames decoded from `latent_frames` latent frames: 1 + 4(n - 1)."""
    return 1 + TIME_FACTOR * (latent_frames - 1)


def _latent_index(frame: int) -> int:
    """Latent frame that pixel frame `frame` (a chunk boundary on the grid) starts."""
    return 0 if frame == 0 else 1 + (frame - 1) // TIME_FACTOR


def _pixel_index(latent: int) -> int:
    return 0 if latent == 0 else 1 + TIME_FACTOR * (latent - 1)


def plan_encode_chunks(frames: int, chunk_frames: int) -> tuple[Chunk, ...]:
    """Pixel chunks of a 1 + 4k clip: 1 + chunk_frames first, then chunk_frames (the last may be
    shorter, a multiple of 4); 0 = one pass. Outputs are latent frame ranges.

    faithful: chunk_frames 16 gives [17, 16, 16] for 49 frames, as the original (spec §6.5).
    """
    if (frames - 1) % TIME_FACTOR:
        raise ValueError(f"encode needs 1 + 4k frames, got {frames}")
    if chunk_frames % TIME_FACTOR or chunk_frames < 0:
        raise ValueError(f"encode chunks must be a multiple of 4 frames, got {chunk_frames}")
    bounds = [0]
    step = chunk_frames if chunk_frames else frames
    first = min(frames, 1 + step)
    bounds.append(first)
    while bounds[-1] < frames:
        bounds.append(min(frames, bounds[-1] + step))
    return tuple(
        Chunk(a, b, _latent_index(a), _latent_index(b - 1) + 1)
        for a, b in zip(bounds, bounds[1:], strict=False)
    )


def plan_decode_chunks(latent_frames: int, chunk_latent: int) -> tuple[Chunk, ...]:
    """Latent chunks: 1 + chunk_latent first, then chunk_latent (the last may be shorter);
    0 = one pass. Outputs are pixel frame ranges.

    faithful: chunk_latent 2 gives [0:3], [3:5], ... [11:13] for 13 latents (spec §6.5). The
    original drops the last latent of an even count; this plan decodes it.
    """
    if latent_frames < 1 or chunk_latent < 0:
        raise ValueError(f"bad decode plan: {latent_frames} latents, chunks of {chunk_latent}")
    step = chunk_latent if chunk_latent else latent_frames
    bounds = [0, min(latent_frames, 1 + step)]
    while bounds[-1] < latent_frames:
        bounds.append(min(latent_frames, bounds[-1] + step))
    return tuple(
        Chunk(a, b, _pixel_index(a), _pixel_index(b))
        for a, b in zip(bounds, bounds[1:], strict=False)
    )
