"""Refining a cached window as `upscale` would: how a run is judged on pictures.

The window's degraded latent is noised to the config's strength and integrated with the guided
velocity of `pipeline.steps` (the sampler and guidance `upscale` runs, 4 steps), then decoded;
its HR latent decoded the same way is what the refinement is compared with, as clips and as a
`vidrefine compare` report (`tune train --val-report`: RUN/previews/step-N/).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

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


def write_clip(frames: np.ndarray, path: Path) -> Path:
    """uint8 frames (F, H, W, 3) as a lossless H.264 clip at 8 fps (the model's rate)."""
    from vidrefine.io.writer import VideoWriter

    rate = Fraction(8)
    with VideoWriter(
        path,
        size_hw=frames.shape[1:3],
        time_base=1 / rate,
        fps=rate,
        crf=0,
        preset="ultrafast",
        overwrite=True,
    ) as writer:
        writer.write(frames, np.arange(len(frames), dtype=np.int64))
    return path


def psnr_of(frames: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB) of uint8 frames against `reference`."""
    from vidrefine.quality.metrics import psnr_db

    diff = frames.astype(np.float64) - reference.astype(np.float64)
    return psnr_db(float((diff**2).mean()))


@dataclass
class PreviewFrames:
    """A held-out window's decoded input and HR frames, decoded once for every preview."""

    input: np.ndarray
    hr: np.ndarray

    @classmethod
    def of(cls, models: StageTwoModels, window: CachedWindow) -> PreviewFrames:
        """Decode the window's first degraded copy and its HR latent."""
        return cls(
            decode_window(models, window.degraded[0][None]), decode_window(models, window.hr[None])
        )


def write_preview(
    models: StageTwoModels,
    frames: PreviewFrames,
    refined: torch.Tensor,
    folder: Path,
    *,
    report: bool = True,
) -> float:
    """Write a window's preview into `folder`: input, hr and refined clips and (`report`) a
    compare report of refined against hr. Returns the refined frames' PSNR against the HR
    latent's frames.

    `refined` is `refine_latent`'s result (under FSDP every rank computes it; one writes).
    """
    from vidrefine.quality.compare import compare_clips
    from vidrefine.quality.report import write_report

    folder.mkdir(parents=True, exist_ok=True)
    out = decode_window(models, refined)
    write_clip(frames.input, folder / "input.mp4")
    write_clip(frames.hr, folder / "hr.mp4")
    write_clip(out, folder / "refined.mp4")
    if report:
        result = compare_clips(folder / "hr.mp4", folder / "refined.mp4")
        write_report(result, folder / "report", overwrite=True)
    return psnr_of(out, frames.hr)
