"""FlashVideo stage-I loop against a float64 transcription of spec §4.1-4.4 written here."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from dit_fixtures import TINY_TEXT_DIM, official_dit_tensors, write_official
from dpm_reference import dpm_step

from generators.flashvideo_stage1 import FlashVideoStage1, guidance_scales, sample_stage1_latents
from vidrefine.checkpoints import load_dit
from vidrefine.config import RunConfig
from vidrefine.errors import BadInput
from vidrefine.models.vae import CausalVideoVAE
from vidrefine.pipeline.selftest import TINY_VAE
from vidrefine.plan.clip import ModelPlacement
from vidrefine.plugins import check_generator
from vidrefine.progress import NullProgress

LATENT_SHAPE = (2, 16, 4, 4)  # (T', C, h, w)


def reference_tables(steps: int) -> tuple[list[int], list[float], np.ndarray]:
    """Timesteps (visiting order), sampler alphas (+1.0) and the 1000-table, per spec §4.1."""
    betas = np.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=np.float64) ** 2
    root = np.sqrt(np.cumprod(1.0 - betas))

    def rescale(a: np.ndarray) -> np.ndarray:  # ascending timesteps: first kept, last -> 0
        return (a - a[-1]) * a[0] / (a[0] - a[-1])

    table = rescale(root)
    taus = np.floor(np.linspace(999, 0, steps, endpoint=False)).astype(int)  # 999 first
    ascending = taus[::-1]
    sub = rescale(root[ascending])[::-1]
    return [int(t) for t in taus], [*sub.tolist(), 1.0], table


def reference_sample(dit64, cond, scales, seed, steps):
    """DPM-Solver++(2M) SDE in VP form with v-prediction and x0-CFG, all float64 (spec §4)."""
    taus, alphas, table = reference_tables(steps)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((1, *LATENT_SHAPE), generator=gen, dtype=torch.float32).double()
    zero = torch.zeros_like(cond)
    x0_prev = lam_prev = None
    for i, tau in enumerate(taus):
        a = alphas[i]
        a_q = float(table[np.abs(table - a).argmin()])
        t = torch.full((1,), float(tau), dtype=torch.float64)
        x0_u = a_q * x - math.sqrt(1 - a_q**2) * dit64(x, t, zero)
        x0_c = a_q * x - math.sqrt(1 - a_q**2) * dit64(x, t, cond)
        x0 = x0_u + scales[i] * (x0_c - x0_u)
        if i == steps - 1:
            return x0
        eps = torch.randn(x.shape, generator=gen, dtype=torch.float32).double()
        x, lam = dpm_step(x, x0, a, alphas[i + 1], eps, x0_prev, lam_prev)
        x0_prev, lam_prev = x0, lam
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def tiny_stage1(tmp_path_factory) -> torch.nn.Module:
    path = tmp_path_factory.mktemp("s1") / "stage1.pt"
    write_official(path, official_dit_tensors(stage2=False, seed=3))
    return load_dit(path).eval()


@pytest.mark.parametrize("steps,mode", [(3, "faithful"), (4, "dynamic")])
def test_stage1_loop_matches_float64_transcription_when_run_for_few_steps(tiny_stage1, steps, mode):
    cond = torch.randn(1, 8, TINY_TEXT_DIM, generator=torch.Generator().manual_seed(5))
    scales = guidance_scales(mode, 8.0, steps)
    ours = sample_stage1_latents(
        tiny_stage1, cond, LATENT_SHAPE, 11, scales=scales, dtype=torch.float32, steps=steps
    )
    dit64 = copy.deepcopy(tiny_stage1).double()
    with torch.no_grad():
        expected = reference_sample(dit64, cond.double(), scales, 11, steps)
    assert ours.dtype == torch.float32 and ours.shape == (1, *LATENT_SHAPE)
    err = (ours.double() - expected).abs().max().item()
    assert err < 1e-4 * max(1.0, expected.abs().max().item())


def test_stage1_loop_depends_on_seed_and_caption_when_either_changes(tiny_stage1):
    scales = guidance_scales("dynamic", 8.0, 3)
    gen = torch.Generator().manual_seed(1)
    cond_a, cond_b = torch.randn(2, 1, 8, TINY_TEXT_DIM, generator=gen)

    def run(cond, seed):
        return sample_stage1_latents(
            tiny_stage1, cond, LATENT_SHAPE, seed, scales=scales, dtype=torch.float32, steps=3
        )

    base = run(cond_a, 0)
    assert torch.equal(base, run(cond_a, 0))  # same seed, same clip
    assert (base - run(cond_a, 1)).abs().max() > 1e-3
    assert (base - run(cond_b, 0)).abs().max() > 1e-3


def test_schedule_of_wrong_length_is_bad_input_when_sampling(tiny_stage1):
    with pytest.raises(BadInput, match="3 guidance scales given for 4 steps"):
        sample_stage1_latents(
            tiny_stage1,
            torch.zeros(1, 8, TINY_TEXT_DIM),
            LATENT_SHAPE,
            0,
            scales=[1.0, 2.0, 3.0],
            dtype=torch.float32,
            steps=4,
        )


def test_unknown_guidance_mode_is_bad_input_naming_the_choices():
    with pytest.raises(BadInput, match="dynamic, faithful"):
        guidance_scales("cosine", 8.0)


def test_default_guidance_is_monotone_and_faithful_is_not_when_built_for_51_steps():
    dynamic, faithful = guidance_scales("dynamic", 8.0), guidance_scales("faithful", 8.0)
    assert all(a >= b for a, b in zip(dynamic, dynamic[1:], strict=False))
    assert dynamic[0] == pytest.approx(9.0) and len(dynamic) == len(faithful) == 51
    assert faithful[:3] == pytest.approx([8.287, 4.004, 2.404], abs=1e-3)  # spec §4.3 table


# ---- the bundled generator as a plugin: loaded through the shared loader, placed by the plan ----


@pytest.fixture(scope="module")
def stage1_weights(tmp_path_factory):
    """stage1.pt and 3d-vae.pt, tiny, random and in the official formats."""
    folder = tmp_path_factory.mktemp("s1weights")
    write_official(folder / "stage1.pt", official_dit_tensors(stage2=False, seed=4))
    torch.manual_seed(6)
    torch.save({"state_dict": CausalVideoVAE(TINY_VAE).state_dict()}, folder / "3d-vae.pt")
    return folder


def tiny_generator() -> FlashVideoStage1:
    generator = FlashVideoStage1(size_hw=(16, 16), num_frames=5, steps=3, dit_config=None)
    generator.configure(RunConfig(stage1_guidance="dynamic"))
    return generator


def generate_placed(weights, offload: str):
    """(clip, whether the DiT's blocks stream) for the tiny generator placed with `offload`."""
    generator = tiny_generator()
    placement = ModelPlacement(dtype="fp32", vae_dtype="fp32", offload=offload)
    generator.load(weights, device=torch.device("cpu"), placement=placement)
    streamed = bool(generator._dit.blocks[0]._forward_pre_hooks)
    cond = torch.randn(1, 8, TINY_TEXT_DIM, generator=torch.Generator().manual_seed(2))
    clip = generator.generate(cond, 7, progress=NullProgress())
    settings = generator.describe()
    generator.release()
    return clip, streamed, settings


def test_bundled_generator_satisfies_protocol_2_when_built_by_its_entry_point():
    generator = FlashVideoStage1()
    assert check_generator("flashvideo-stage1", FlashVideoStage1) is None
    assert check_generator("flashvideo-stage1", generator) is None
    assert generator.dit_config is not None
    assert generator.latent_shape() == (13, 16, 32, 60)  # known before load, for the plan


def test_streamed_stage1_gives_the_resident_clip_when_placed_with_layer_offload(stage1_weights):
    resident, resident_streams, settings = generate_placed(stage1_weights, "none")
    streamed, streams, _ = generate_placed(stage1_weights, "layer")
    assert not resident_streams and streams  # the placement decided, through the shared loader
    assert resident.frames.shape == (5, 16, 16, 3) and resident.frames.dtype == np.float32
    assert resident.frames.std() > 0
    np.testing.assert_array_equal(streamed.frames, resident.frames)
    np.testing.assert_array_equal(streamed.preview, resident.preview)
    assert settings["dtype"] == settings["vae_dtype"] == "fp32" and settings["steps"] == 3


def test_configure_takes_guidance_and_leaves_precision_to_the_placement():
    generator = FlashVideoStage1()
    generator.configure(RunConfig(stage1_cfg_scale=6.0, stage1_guidance="faithful", vram_gb=12))
    assert (generator.cfg_scale, generator.guidance, generator.vram_gb) == (6.0, "faithful", 12)
    assert not hasattr(generator, "offload") and not hasattr(generator, "vae_dtype_name")
    with pytest.raises(BadInput, match="dynamic, faithful"):
        generator.configure(RunConfig(stage1_guidance="cosine"))
