"""Refining a cached window as `upscale` would: how a run is judged on pictures.

The window's degraded latent is noised to the config's strength and integrated with the guided
velocity of `pipeline.steps` (the sampler and guidance `upscale` runs), then decoded; its HR
latent decoded the same way is what the refinement is compared with.
"""

from __future__ import annotations

import numpy as np
import torch

from vidrefine.config import RunConfig
from vidrefine.pipeline.loading import StageTwoModels
from vidrefine.pipeline.steps import decode_to_frames, guided_velocity
from vidrefine.plan.geometry import OutputGeometry
from vidrefine.plan.vae import plan_vae
from vidrefine.sampling.samplers import sample_euler
from vidrefine.sampling.timesteps import degradation_coefficient, shifted_grid
from vidrefine.train.cache import CachedWindow

PREVIEW_STEPS = 4  # the README's NFE


def refine_latent(
    models: StageTwoModels, config: RunConfig, window: CachedWindow, *, copy: int = 0
) -> torch.Tensor:
    """The refined latent (1, T, C, h, w) of the window's degraded copy `copy`."""
    generator = torch.Generator().manual_seed(config.seed)
    z = window.degraded[copy][None]
    a = degradation_coefficient(config.strength)
    x = a * z + (1 - a * a) ** 0.5 * torch.randn(z.shape, generator=generator)
    grid = shifted_grid(config.steps, config.shift, rounding=config.timestep_rounding)
    velocity = guided_velocity(
        models, config, window.context[None], num_latent=z.shape[1], cfg_batched=True
    )
    with torch.no_grad():
        x = sample_euler(velocity, x.to(models.device, models.dtype), grid.to(models.device))
    return x


def decode_window(models: StageTwoModels, latent: torch.Tensor) -> np.ndarray:
    """uint8 frames (F, H, W, 3) of a scaled latent (1, T, C, h, w)."""
    frames = 1 + 4 * (latent.shape[1] - 1)
    hw = (latent.shape[3] * 8, latent.shape[4] * 8)
    geometry = OutputGeometry(hw, hw, hw)
    return decode_to_frames(models, latent, geometry, plan_vae(hw, frames, mode="whole"))


def preview_config(**settings: object) -> RunConfig:
    """The settings a preview refines with: `upscale`'s defaults in 4 steps."""
    return RunConfig(steps=PREVIEW_STEPS, **settings)
