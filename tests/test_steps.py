"""Stage II's numeric steps on one window: independent noise streams and the faithful writer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vae_fixtures import random_official_vae

from vidrefine.config import STAGE2_LATENT_SCALE, RunConfig, VAEConfig
from vidrefine.models.vae import CausalVideoVAE
from vidrefine.pipeline.loading import StageTwoModels
from vidrefine.pipeline.steps import decode_to_frames, degraded_start, window_noise
from vidrefine.pipeline.vae_pass import decode_latents
from vidrefine.plan.geometry import OutputGeometry
from vidrefine.plan.vae import plan_vae
from vidrefine.sampling.timesteps import degradation_coefficient


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


@pytest.fixture(scope="module")
def unit_posterior_models() -> StageTwoModels:
    return _vae_models(zero_posterior=True)


def _noises(models: StageTwoModels, seed: int, window: int, first_latent: int) -> tuple:
    """(posterior noise, degradation noise) (B, T, C, h, w) of one window's start state."""
    config = RunConfig(seed=seed, posterior="sample")
    video = torch.zeros(1, 3, 1, 16, 24)  # one frame -> one latent of 2 x 3
    x0 = degraded_start(
        models, config, video, plan_vae((16, 24), 1, mode="whole"),
        window_index=window, first_latent=first_latent,
    )  # fmt: skip
    a = degradation_coefficient(config.strength)
    degradation = window_noise(x0.shape, first_latent, seed)
    posterior = (x0 - (1 - a * a) ** 0.5 * degradation) / (a * STAGE2_LATENT_SCALE)
    return posterior, degradation


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


@pytest.mark.parametrize("seed", [0, 5])
def test_posterior_and_degradation_noise_are_independent_when_window_equals_latent(
    unit_posterior_models: StageTwoModels, seed: int
) -> None:
    """Window w's posterior draw and global latent j's degradation draw once shared a seed
    (seed * 1_000_003 + w and + j), so for w = j they were the same numbers (issue 20 item 13)."""
    draws = {}
    for index in range(3):
        draws[index] = _noises(unit_posterior_models, seed, window=index, first_latent=index)
    for w in range(3):
        posterior = draws[w][0]
        assert posterior.std() > 0.5  # the posterior really was sampled
        for j in range(3):
            degradation = draws[j][1]
            assert not torch.equal(posterior, degradation)
            assert abs(_correlation(posterior, degradation)) < 0.5, (w, j)  # 96 values
        other = draws[(w + 1) % 3][0]
        assert abs(_correlation(posterior, other)) < 0.5  # windows draw their own posteriors


def test_noise_is_shared_by_overlapping_windows_and_repeats_when_drawn_again() -> None:
    """Degradation noise belongs to the global latent: windows starting at latents 0 and 2 draw
    the same numbers for latents 2 and 3; the same seed draws the same, another seed not."""
    shape = torch.Size((2, 4, 16, 3, 5))
    first, second = window_noise(shape, 0, seed=3), window_noise(shape, 2, seed=3)
    assert torch.equal(first[:, 2:], second[:, :2])
    assert not torch.equal(first[:, :2], second[:, :2])
    assert torch.equal(window_noise(shape, 0, seed=3), first)
    assert abs(_correlation(window_noise(shape, 0, seed=4), first)) < 0.1


def test_start_state_repeats_exactly_when_a_window_is_computed_again(
    unit_posterior_models: StageTwoModels,
) -> None:
    """What resume and ranks rely on: a window's start depends only on (seed, window, latent)."""
    once = _noises(unit_posterior_models, 1, window=4, first_latent=8)
    again = _noises(unit_posterior_models, 1, window=4, first_latent=8)
    assert all(torch.equal(a, b) for a, b in zip(once, again, strict=True))
