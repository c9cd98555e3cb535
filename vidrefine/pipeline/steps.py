"""The numeric steps of stage II on one window: pixels to the degraded start latent, the guided
velocity, the overlap fusion, and latents back to pixels (spec §5; fusion is vidrefine's own,
docs/pipeline.md). `pipeline.refine` wires them over a clip's windows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from vidrefine.config import STAGE2_LATENT_SCALE, RunConfig
from vidrefine.pipeline.loading import StageTwoModels
from vidrefine.pipeline.vae_pass import decode_latents, encode_video
from vidrefine.plan.geometry import OutputGeometry
from vidrefine.plan.vae import VAEPlan
from vidrefine.plan.windows import WindowPlan
from vidrefine.runtime.attention import attention_kernels
from vidrefine.runtime.device import autocast_for
from vidrefine.sampling.guidance import cfg_velocity
from vidrefine.sampling.timesteps import (
    degradation_coefficient,
    ref_step_embedding_value,
    timestep_indices,
)

RESIZE_FRAMES = 4  # frames converted and resized together in `frames_to_model_input`
NOISE_STREAMS = "blake2b-1"  # how `stream_seed` derives seeds; part of the resume key


def stage2_caption(config: RunConfig, caption: str) -> str:
    """The text stage II is conditioned on: the caption behind the config's prefix.

    The original script prepends "medium motion," (spec §5.6); the default prefix is empty.
    """
    return f"{config.caption_prefix}{caption}"


def frames_to_model_input(
    frames: np.ndarray, geometry: OutputGeometry, device: torch.device
) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (1, 3, T, H', W') in [-1, 1]: resized, then padded to 16.

    Resizing is bilinear with antialiasing, in pixel space, as the original (spec §5.1). Frames
    go through float and the resize a few at a time: a window of big input frames (13 at 720p
    are 144 MB in float32) never exists in float at its input size all at once.
    """
    parts = []
    for start in range(0, len(frames), RESIZE_FRAMES):
        part = torch.from_numpy(np.ascontiguousarray(frames[start : start + RESIZE_FRAMES]))
        part = rearrange(part.to(device), "t h w c -> t c h w").float().div_(127.5).sub_(1.0)
        if tuple(part.shape[-2:]) != geometry.resize_hw:
            part = F.interpolate(
                part, size=geometry.resize_hw, mode="bilinear", align_corners=False, antialias=True
            )
        parts.append(part)
    video = torch.cat(parts)
    pad_h = geometry.model_hw[0] - geometry.resize_hw[0]
    pad_w = geometry.model_hw[1] - geometry.resize_hw[1]
    if pad_h or pad_w:
        video = F.pad(video, (0, pad_w, 0, pad_h), mode="replicate")
    return rearrange(video, "t c h w -> 1 c t h w")


def stream_seed(seed: int, stream: str, index: int) -> int:
    """The generator seed of random stream `stream` number `index` of a run with `seed`.

    A hash of the three, so no two streams (the posterior draw of window w, the degradation
    noise of global latent j) share numbers: a linear formula such as seed * 1_000_003 + w gave
    window w's posterior the very numbers of latent w's noise (issue 20 item 13).
    """
    text = f"vidrefine/{NOISE_STREAMS}/{stream}/{seed}/{index}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def window_noise(shape: torch.Size, first_latent: int, seed: int) -> torch.Tensor:
    """Degradation noise (B, T, C, h, w) drawn per global latent frame index.

    Latent j of a window starting at pixel frame s has global index s/4 + j, so overlapping
    windows draw identical noise for shared latents and a resumed run draws the same noise.
    """
    batch, frames, *rest = shape
    slices = []
    for j in range(frames):
        generator = torch.Generator().manual_seed(stream_seed(seed, "degrade", first_latent + j))
        slices.append(torch.randn((batch, 1, *rest), generator=generator))
    return torch.cat(slices, dim=1)


def degraded_start(
    models: StageTwoModels,
    config: RunConfig,
    video: torch.Tensor,
    vae_plan: VAEPlan,
    *,
    window_index: int,
    first_latent: int,
) -> torch.Tensor:
    """Model-size video (1, 3, T, H, W) -> scaled latent z -> degraded start x_0 (B, T, C, h, w)."""
    posterior_seed = stream_seed(config.seed, "posterior", window_index)
    generator = torch.Generator(device="cpu").manual_seed(posterior_seed)
    z = encode_video(
        models.vae,
        video.to(models.vae_dtype),
        vae_plan,
        sample=config.posterior == "sample",
        generator=generator,
        share=models.vae_share,
    )
    z = rearrange(z.float() * STAGE2_LATENT_SCALE, "b c t h w -> b t c h w")
    noise = window_noise(z.shape, first_latent, config.seed)
    a = degradation_coefficient(config.strength)
    x0 = a * z + (1.0 - a * a) ** 0.5 * noise.to(z.device)
    return x0.to(models.dtype)


def guided_velocity(
    models: StageTwoModels,
    config: RunConfig,
    context: torch.Tensor,
    *,
    num_latent: int,
    cfg_batched: bool,
) -> Callable:
    """The DiT as a velocity field v(x, t) with classifier-free guidance (zero uncond, spec §7)."""
    dtype = models.dtype
    ref = ref_step_embedding_value(config.strength, rounding=config.timestep_rounding)

    def model_fn(x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        index = timestep_indices(t, rounding=config.timestep_rounding)
        index = index.reshape(1).expand(batch).to(x.device, dtype)
        frames = torch.full((batch,), float(num_latent), device=x.device, dtype=dtype)
        ref_step = torch.full((batch,), float(ref), device=x.device, dtype=dtype)
        with autocast_for(x.device, dtype), attention_kernels(x.device, config.attention):
            return models.dit(x, index, ctx, num_frames=frames, ref_step=ref_step)

    cond = context.to(models.device, dtype)
    uncond = torch.zeros_like(cond)  # the original's unconditional branch (spec §7)
    return cfg_velocity(model_fn, cond, uncond, config.cfg_scale, batched=cfg_batched)


def overlap_fuser(
    plan: WindowPlan, previous: torch.Tensor | None
) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """A function (state_index, x) -> x that pulls this window's head toward the previous tail.

    `previous` holds the previous window's last `overlap_latent` latents at every state of its
    trajectory; latent j of this window matches latent j of that tail.
    """
    if previous is None:
        return lambda _index, x: x
    weights = torch.tensor(plan.latent_fusion_weights(), dtype=torch.float32)
    n = plan.overlap_latent

    def fuse(index: int, x: torch.Tensor) -> torch.Tensor:
        w = weights.to(x.device).view(1, n, 1, 1, 1)
        head = x[:, :n].float()
        mixed = w * previous[index].to(x.device).float() + (1 - w) * head
        return torch.cat([mixed.to(x.dtype), x[:, n:]], dim=1)

    return fuse


def decode_to_frames(
    models: StageTwoModels, latents: torch.Tensor, geometry: OutputGeometry, vae_plan: VAEPlan
) -> np.ndarray:
    """Latents (B, T, C, h, w) -> uint8 frames (F, H, W, 3) at the output size."""
    z = rearrange(latents, "b t c h w -> b c t h w").to(models.vae_dtype)
    with torch.no_grad():
        video = decode_latents(
            models.vae, z / STAGE2_LATENT_SCALE, vae_plan, share=models.vae_share
        )
    out_h, out_w = geometry.output_hw
    frames = to_levels(video[0, :, :, :out_h, :out_w], truncate=vae_plan.mode == "faithful")
    return rearrange(frames, "c t h w -> t h w c").cpu().numpy()


def to_levels(video: torch.Tensor, *, truncate: bool) -> torch.Tensor:
    """Decoded [-1, 1] video -> uint8 levels, rounded to the nearest level.

    `truncate` (the faithful VAE mode) does what the original does instead: fp32
    clamp((x + 1) / 2, 0, 1) * 255, which torchvision's `write_video` casts to uint8 toward zero
    (spec §6.5, §9.2, pitfall 25): about half a level darker on average.
    """
    video = video.float()
    if truncate:
        return (torch.clamp((video + 1.0) / 2.0, min=0.0, max=1.0) * 255).to(torch.uint8)
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def crossfade(frames: np.ndarray, tail: np.ndarray, plan: WindowPlan) -> None:
    """Blend a window's head with the previous window's decoded tail, in place."""
    n = plan.overlap_frames
    w = plan.crossfade_weights()[:, None, None, None]
    mixed = w * frames[:n].astype(np.float64) + (1 - w) * tail.astype(np.float64)
    frames[:n] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
