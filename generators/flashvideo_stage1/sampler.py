"""Stage-I sampling loop: v-prediction DiT, zero-SNR DDPM, DPM-Solver++(2M) SDE (spec §4).

Built only from vidrefine.sampling's pure pieces; this module wires them to a `VideoDiT`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vidrefine.errors import BadInput
from vidrefine.models.text import zero_uncond
from vidrefine.progress import NullProgress, Progress
from vidrefine.runtime.device import autocast_for
from vidrefine.sampling import (
    cfg_velocity,
    dynamic_cfg_scales,
    faithful_dynamic_cfg_scales,
    sample_dpmpp_2m_sde,
    stage1_alphas,
    stage1_timesteps,
    v_prediction_denoiser,
)
from vidrefine.sampling.samplers import Denoiser

STEPS = 51  # network evaluations; the last step returns x0 (spec §4.4)
GUIDANCE_MODES = ("dynamic", "faithful")


def guidance_scales(mode: str, scale: float, steps: int = STEPS) -> list[float]:
    """Per-step guidance scales: "dynamic" (intended, monotone) or "faithful" (spec §4.3 table).

    "faithful" reproduces the released code's pseudo-random scales, which come from feeding the
    timestep where the step counter was meant (pitfall 4).
    """
    if mode == "faithful":
        return faithful_dynamic_cfg_scales(scale, steps)
    if mode == "dynamic":
        return dynamic_cfg_scales(scale, steps)
    raise BadInput(f"stage-I guidance {mode!r} is not one of {', '.join(GUIDANCE_MODES)}")


def initial_noise(shape: Sequence[int], seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """N(0, I) float32 start state (B, T, C, h, w) drawn on a CPU generator (pitfall 21).

    Returns the noise and the generator, which the sampler keeps drawing its per-step noise from,
    so one seed gives the same clip on any device.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32), generator


def stage1_denoiser(
    dit: torch.nn.Module,
    cond: torch.Tensor,
    scales: Sequence[float],
    *,
    dtype: torch.dtype,
) -> Denoiser:
    """x0 denoiser for stage I: CFG on v with [uncond; cond] batches and a zero uncond.

    Guiding v then converting to x0 equals guiding x0 (x0 is affine in v with shared
    coefficients); the network receives the sampler's integer timestep as a float32 value and the
    v-to-x0 conversion uses the quantised alpha (pitfall 20).

    Args:
        dit: stage-I `VideoDiT`, called as dit(x (B, T, C, h, w), timestep (B,), text).
        cond: (1, 226, D) caption embedding.
        scales: guidance scale per sampler step.
        dtype: compute dtype of the DiT (autocast on CUDA for bf16/fp16).
    """
    device = next(dit.parameters()).device

    def model_fn(x: torch.Tensor, timestep: int, text: torch.Tensor) -> torch.Tensor:
        index = torch.full((x.shape[0],), float(timestep), device=device, dtype=torch.float32)
        with autocast_for(device, dtype):
            return dit(x.to(device), index, text).float()  # fp32 sampler state (spec §9.4)

    cond = cond.to(device=device, dtype=dtype)
    guided = cfg_velocity(model_fn, cond, zero_uncond(cond), list(scales), cond_first=False)
    return v_prediction_denoiser(guided)


@torch.no_grad()
def sample_stage1_latents(
    dit: torch.nn.Module,
    cond: torch.Tensor,
    latent_shape: Sequence[int],
    seed: int,
    *,
    scales: Sequence[float],
    dtype: torch.dtype,
    steps: int = STEPS,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Sample stage-I latents (1, T', C, h, w) float32, in the DiT's latent scale (x 0.7).

    Args:
        dit: the stage-I `VideoDiT`.
        cond: (1, 226, D) caption embedding.
        latent_shape: (T', C, h, w), e.g. (13, 16, 32, 60) for 49 frames of 256x480.
        seed: seeds the CPU generator of the start noise and of every step's fresh noise.
        scales: guidance scale per step (`guidance_scales`).
        dtype: DiT compute dtype.
        steps: network evaluations (51 in the original).
        progress: one task advanced per network evaluation.
    """
    if len(scales) != steps:
        raise BadInput(f"{len(scales)} guidance scales given for {steps} steps")
    progress = progress or NullProgress()
    device = next(dit.parameters()).device
    noise, generator = initial_noise((1, *latent_shape), seed)
    denoiser = stage1_denoiser(dit, cond, scales, dtype=dtype)
    with progress.task("stage I", total=steps, unit="step") as bar:

        def counted(x: torch.Tensor, alpha: float, timestep: int, index: int) -> torch.Tensor:
            x0 = denoiser(x, alpha, timestep, index)
            bar.advance()
            return x0

        latents = sample_dpmpp_2m_sde(
            counted,
            noise.to(device),
            stage1_alphas(steps),
            stage1_timesteps(steps),
            generator=generator,
        )
    return latents
