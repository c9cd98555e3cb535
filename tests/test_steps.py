"""Stage II's numeric steps on one window: the faithful writer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vae_fixtures import random_official_vae

from vidrefine.config import STAGE2_LATENT_SCALE, VAEConfig
from vidrefine.models.vae import CausalVideoVAE
from vidrefine.pipeline.loading import StageTwoModels
from vidrefine.pipeline.steps import decode_to_frames
from vidrefine.pipeline.vae_pass import decode_latents
from vidrefine.plan.geometry import OutputGeometry
from vidrefine.plan.vae import plan_vae


def _vae_models(zero_posterior: bool = False) -> StageTwoModels:
    """A tiny random VAE (fp32, CPU); `zero_posterior`: its posterior is N(0, 1) everywhere, so
    a sampled latent is the posterior noise itself."""
    vae = CausalVideoVAE(VAEConfig(block_out_channels=(32, 32, 32, 32))).eval()
    vae.load_state_dict(random_official_vae(seed=3, widths=(32, 32, 32, 32)))
    if zero_posterior:
        with torch.no_grad():
            for parameter in vae.encoder.conv_out.parameters():
                parameter.zero_()  # mean 0, logvar 0
    cpu, fp32 = torch.device("cpu"), torch.float32
    return StageTwoModels(vae, torch.nn.Identity(), cpu, fp32, fp32)


@pytest.fixture(scope="module")
def tiny_models() -> StageTwoModels:
    return _vae_models()


@pytest.mark.parametrize("mode", ["faithful", "whole"])
def test_frames_are_truncated_under_faithful_and_rounded_otherwise_when_decoded(
    tiny_models: StageTwoModels, mode: str
) -> None:
    """The original's writer casts clamp((x + 1) / 2, 0, 1) * 255 (fp32) to uint8, which truncates
    (spec §6.5, §9.2, pitfall 25); vidrefine's own modes round to the nearest level."""
    latents = torch.randn(1, 3, 16, 4, 6, generator=torch.Generator().manual_seed(0))
    geometry = OutputGeometry((32, 48), (30, 44), (32, 48))  # the crop is taken before quantising
    plan = plan_vae((32, 48), 9, mode=mode)
    frames = decode_to_frames(tiny_models, latents, geometry, plan)
    z = latents.permute(0, 2, 1, 3, 4) / STAGE2_LATENT_SCALE
    with torch.no_grad():
        video = decode_latents(tiny_models.vae, z, plan)[0, :, :, :30, :44].permute(1, 2, 3, 0)
    levels = torch.clamp((video.float() + 1.0) / 2.0, 0.0, 1.0) * 255
    truncated, rounded = levels.floor().numpy(), (levels.clamp(0, 255)).round().numpy()
    assert frames.dtype == np.uint8 and frames.shape == (9, 30, 44, 3)
    assert (truncated != rounded).mean() > 0.2  # the two rules differ on many pixels here
    expected = truncated if mode == "faithful" else rounded
    assert np.abs(frames.astype(int) - expected).max() <= (0 if mode == "faithful" else 1)
    assert (frames == expected).mean() > 0.999
