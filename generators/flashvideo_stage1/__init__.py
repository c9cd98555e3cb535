"""FlashVideo stage I (5.6B CogVideoX-5B-shaped DiT + LoRA) as a vidrefine generator plugin."""

from generators.flashvideo_stage1.generator import FlashVideoStage1
from generators.flashvideo_stage1.sampler import (
    guidance_scales,
    initial_noise,
    sample_stage1_latents,
    stage1_denoiser,
)

__all__ = [
    "FlashVideoStage1",
    "guidance_scales",
    "initial_noise",
    "sample_stage1_latents",
    "stage1_denoiser",
]
