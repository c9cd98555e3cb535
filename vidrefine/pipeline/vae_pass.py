"""Running the causal VAE over a clip under a `VAEPlan`: spatial tiles outside, temporal chunks
with the causal cache inside (the original's order, spec §6.5), feathered or hard-seam blending.

Latents here are UNSCALED: the pipeline multiplies by 1.15258426 (stage II) or 0.7 (stage I).
How the operators run (conv method, call cap, layout, compiled norms) is the plan's
`VAEKernelPlan`, resolved for the device by `vae_kernels` (issue 21, docs/vae.md "Kernels").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from vidrefine.models.vae import CausalVideoVAE, latent_mean, sample_latent
from vidrefine.models.vae_conv import MEASURED, VAEKernels
from vidrefine.pipeline.blending import add_weighted
from vidrefine.plan.chunking import Chunk, pixel_count
from vidrefine.plan.tiling import Tile, TilePlan
from vidrefine.plan.vae import CUDA_CAP_MI, SPATIAL, VAEKernelPlan, VAEPlan
from vidrefine.runtime.kernel_choice import FASTEST, compiled

_MI = 2**20


def vae_kernels(plan: VAEKernelPlan, device: torch.device) -> VAEKernels:
    """The plan's kernel choices resolved for `device`.

    "auto" is one conv3d per call and no cap on the CPU (its numbers stay those of every
    earlier release), and on CUDA a per-layer measured choice between conv3d and conv2d_sum
    (`runtime.kernel_choice.FASTEST`, once per layer shape) with calls capped at 2**31 elements.
    """
    cuda = device.type == "cuda"
    conv = plan.conv if plan.conv != "auto" else (MEASURED if cuda else "conv3d")
    cap_mi = plan.cap_mi or (CUDA_CAP_MI if cuda else 0)
    return VAEKernels(
        conv=conv,
        max_elements=cap_mi * _MI,
        measure=FASTEST if conv == MEASURED else None,
        fuse=compiled if plan.compile else None,
    )


def _laid_out(x: torch.Tensor, plan: VAEKernelPlan) -> torch.Tensor:
    """Return x in the plan's layout: NDHWC (channels_last_3d) if asked, else as it comes."""
    if plan.layout == "ndhwc":
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


def _accumulate(out: torch.Tensor, part: torch.Tensor, tiles: TilePlan, tile: Tile, scale: int):
    """out[window] += part * weights; one tile has weight 1 everywhere: copied, same numbers."""
    if len(tiles.tiles) == 1:
        out[(..., *tile.window(scale))] = part
    else:
        add_weighted(out, part, tiles, tile, scale)


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


class TileShare(Protocol):
    """How several ranks share one VAE pass: each computes the tiles it owns, one assembles.

    The assembler adds every tile's parts in the one-process order and hands the result to
    every rank, so all ranks hold the one-process tensor bit for bit (the parts are the same
    computation, added in the same order). `pipeline.tile_share.RankTileShare` is the one there
    is.
    """

    assembles: bool  # this rank adds the parts (and owns tile 0)

    def owns(self, index: int) -> bool:
        """Whether this rank computes tile `index`."""
        ...

    def hand_in(self, part: torch.Tensor) -> None:
        """Send one computed part (in the accumulator's dtype) to the assembler."""
        ...

    def take(self, index: int, like: torch.Tensor) -> torch.Tensor:
        """The next part of tile `index` from its owner, shaped and typed as `like`."""
        ...

    def spread(self, out: torch.Tensor) -> torch.Tensor:
        """The assembler's `out`, on every rank."""
        ...


Step = Callable[[Tile, Chunk, Any], tuple[torch.Tensor, Any]]  # (tile, chunk, cache) -> part


def _tiled_pass(
    out: torch.Tensor,
    tiles: TilePlan,
    chunks: tuple[Chunk, ...],
    step: Step,
    scale: int,
    share: TileShare | None,
) -> torch.Tensor:
    """Fill `out` tile by tile, the causal cache carried over each tile's chunks; with `share`
    the tiles are computed by their owners and added by the assembler in the same order.
    """
    for index, tile in enumerate(tiles.tiles):
        mine = share is None or share.owns(index)
        if not (mine or share.assembles):
            continue
        cache = None
        for chunk in chunks:
            target = out[:, :, chunk.out_start : chunk.out_stop]
            if mine:
                part, cache = step(tile, chunk, cache)
                if share is not None and not share.assembles:
                    share.hand_in(part.to(out.dtype))
                    continue
            else:
                part = share.take(index, target[(..., *tile.window(scale))])
            _accumulate(target, part, tiles, tile, scale)
    return out if share is None else share.spread(out)


def _shared(share: TileShare | None, tiles: TilePlan) -> TileShare | None:
    """`share` where there are tiles to share; one tile is computed by every rank itself."""
    return share if len(tiles.tiles) > 1 else None


@torch.no_grad()
def encode_video(
    vae: CausalVideoVAE,
    video: torch.Tensor,
    plan: VAEPlan,
    *,
    sample: bool,
    generator: torch.Generator | None = None,
    share: TileShare | None = None,
) -> torch.Tensor:
    """Video (B, 3, T, H, W) in [-1, 1] -> UNSCALED latents (B, latent, T', h, w), video's dtype.

    Pads to 1 + 4k frames and multiples of 8 (replicate), encodes tile by tile and chunk by chunk,
    blends the posterior moments, then takes the mean or (sample=True) one draw from `generator`.
    `share` splits the tiles over ranks (every rank then draws from a generator of its own,
    seeded alike, and gets the same latents).
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
    kernels = vae_kernels(plan.kernels, video.device)

    def step(tile: Tile, chunk: Chunk, cache: Any) -> tuple[torch.Tensor, Any]:
        pixels = x[(..., slice(chunk.start, chunk.stop), *tile.window(SPATIAL))]
        return vae.encode(_laid_out(pixels, plan.kernels), cache, kernels)

    tiles = plan.encode_tiles
    moments = _tiled_pass(moments, tiles, plan.encode_chunks(), step, 1, _shared(share, tiles))
    latents = sample_latent(moments, generator) if sample else latent_mean(moments)
    return latents.to(video.dtype)


@torch.no_grad()
def decode_latents(
    vae: CausalVideoVAE, z: torch.Tensor, plan: VAEPlan, *, share: TileShare | None = None
) -> torch.Tensor:
    """UNSCALED latents (B, latent, T', h, w) -> video (B, 3, frames, H, W) float32, unclamped.

    Decodes tile by tile (causal chunks inside each tile), blends with the plan's weights (hard
    seams in faithful mode) and crops the padding back to the plan's frames and size. `share`
    splits the tiles over ranks; every rank returns the same frames.
    """
    _check_shape("latents", z, (plan.latent_frames, *plan.latent_hw))
    out = torch.zeros(
        (z.shape[0], vae.config.in_channels, pixel_count(plan.latent_frames), *plan.padded_hw),
        device=z.device,
        dtype=torch.float32,
    )
    kernels = vae_kernels(plan.kernels, z.device)

    def step(tile: Tile, chunk: Chunk, cache: Any) -> tuple[torch.Tensor, Any]:
        latents = z[(..., slice(chunk.start, chunk.stop), *tile.window(1))]
        return vae.decode(_laid_out(latents, plan.kernels), cache, kernels)

    tiles = plan.decode_tiles
    out = _tiled_pass(out, tiles, plan.decode_chunks(), step, SPATIAL, _shared(share, tiles))
    return out[:, :, : plan.frames, : plan.size_hw[0], : plan.size_hw[1]]
