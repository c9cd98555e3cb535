"""CogVideoX causal VAE math: causal padding, time pooling, cache semantics, frame grid, dtypes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from vae_fixtures import TINY_WIDTHS, random_official_vae

from vidrefine.config import VAEConfig
from vidrefine.models.vae import CausalVideoVAE, latent_mean, sample_latent
from vidrefine.models.vae_blocks import CausalConv3d, CausalStep, GroupNorm, halve_time
from vidrefine.pipeline.vae_pass import decode_latents, encode_video, pad_to_plan
from vidrefine.plan.vae import plan_vae

TINY = VAEConfig(block_out_channels=TINY_WIDTHS)


@pytest.fixture(scope="module")
def vae() -> CausalVideoVAE:
    model = CausalVideoVAE(TINY).eval()
    model.load_state_dict(random_official_vae(seed=1))
    return model


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _conv(seed: int = 0) -> CausalConv3d:
    torch.manual_seed(seed)
    return CausalConv3d(4, 5, 3)


def test_causal_conv_pads_time_with_frame_zero_and_space_with_zeros_when_first() -> None:
    conv, x = _conv(), _rand(1, 4, 3, 5, 6)
    got = conv(x, CausalStep(previous={}, first=True))
    padded = torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2)  # frame 0 twice, then the clip
    padded = F.pad(padded, (1, 1, 1, 1))  # zeros on W and H only
    expected = F.conv3d(padded, conv.conv.weight, conv.conv.bias)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cut", [1, 2, 5])
def test_causal_conv_chunked_with_cache_equals_whole_when_split_anywhere(cut: int) -> None:
    conv, x = _conv(1), _rand(1, 4, 7, 5, 6, seed=1)
    whole = conv(x, CausalStep(previous={}, first=True))
    first = CausalStep(previous={}, first=True)
    head = conv(x[:, :, :cut], first)
    tail = conv(x[:, :, cut:], CausalStep(previous=first.next, first=False))
    torch.testing.assert_close(torch.cat([head, tail], dim=2), whole, rtol=0, atol=1e-6)


def test_cache_holds_the_last_two_padded_frames_when_a_chunk_has_one_frame() -> None:
    conv, x = _conv(), _rand(1, 4, 1, 3, 3)
    step = CausalStep(previous={}, first=True)
    conv(x, step)
    torch.testing.assert_close(step.next[conv.cache_key], torch.cat([x, x], dim=2))


def test_time_pooling_keeps_frame_zero_apart_when_first_chunk() -> None:
    x = _rand(1, 2, 5, 3, 3)
    got = halve_time(x, keep_first=True)
    expected = torch.stack(
        [x[:, :, 0], (x[:, :, 1] + x[:, :, 2]) / 2, (x[:, :, 3] + x[:, :, 4]) / 2], 2
    )
    torch.testing.assert_close(got, expected)
    later = halve_time(x[:, :, 1:], keep_first=False)
    torch.testing.assert_close(later, expected[:, :, 1:])
    with pytest.raises(ValueError, match="pair"):
        halve_time(x[:, :, :4], keep_first=True)


@pytest.mark.parametrize(("frames", "latents"), [(1, 1), (5, 2), (9, 3)])
def test_frame_counts_follow_the_4k_plus_1_grid_when_encoding_and_decoding(
    vae: CausalVideoVAE, frames: int, latents: int
) -> None:
    with torch.no_grad():
        moments, _ = vae.encode(_rand(1, 3, frames, 16, 16))
        video, _ = vae.decode(_rand(1, 16, latents, 2, 2))
    assert moments.shape == (1, 32, latents, 2, 2)
    assert video.shape == (1, 3, frames, 16, 16)


def test_chunked_decode_equals_whole_when_the_latent_is_static_in_time(
    vae: CausalVideoVAE,
) -> None:
    """A clip constant in time keeps every activation constant in time, so per-chunk GroupNorm
    statistics equal the whole clip's: chunking with the cache must then change nothing.
    """
    z = _rand(1, 16, 1, 2, 3).expand(-1, -1, 5, -1, -1).contiguous()
    with torch.no_grad():
        whole, _ = vae.decode(z)
        head, cache = vae.decode(z[:, :, :3])
        tail, _ = vae.decode(z[:, :, 3:], cache)
    torch.testing.assert_close(torch.cat([head, tail], dim=2), whole, rtol=1e-4, atol=1e-5)


def test_chunked_encode_equals_whole_when_the_clip_is_static_in_time(vae: CausalVideoVAE) -> None:
    x = _rand(1, 3, 1, 16, 16).expand(-1, -1, 9, -1, -1).contiguous()
    with torch.no_grad():
        whole, _ = vae.encode(x)
        head, cache = vae.encode(x[:, :, :5])
        tail, _ = vae.encode(x[:, :, 5:], cache)
    torch.testing.assert_close(torch.cat([head, tail], dim=2), whole, rtol=1e-4, atol=1e-5)


def test_later_chunk_depends_on_the_cache_when_history_differs(vae: CausalVideoVAE) -> None:
    z = _rand(1, 16, 5, 2, 2, seed=4)
    other = z.clone()
    other[:, :, :3] = _rand(1, 16, 3, 2, 2, seed=5)
    with torch.no_grad():
        _, cache = vae.decode(z[:, :, :3])
        _, other_cache = vae.decode(other[:, :, :3])
        tail, _ = vae.decode(z[:, :, 3:], cache)
        other_tail, _ = vae.decode(z[:, :, 3:], other_cache)
    assert (tail - other_tail).abs().max() > 1e-3
    assert set(cache) == set(other_cache) and "conv_in" in cache


def test_model_holds_no_buffers_when_built() -> None:
    assert list(CausalVideoVAE(TINY).buffers()) == []


def test_sample_latent_draws_from_the_generator_and_clamps_logvar_when_asked() -> None:
    mean, logvar = _rand(1, 16, 2, 2, 2), torch.full((1, 16, 2, 2, 2), 50.0)
    moments = torch.cat([mean, logvar], dim=1)
    got = sample_latent(moments, torch.Generator().manual_seed(7))
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, mean + torch.exp(torch.tensor(10.0)) * eps)  # 50 -> 20
    torch.testing.assert_close(latent_mean(moments), mean)


def test_group_norm_computes_in_float32_when_given_half_precision() -> None:
    norm = GroupNorm(2, 4, eps=1e-6)
    x = (_rand(1, 4, 3, 8, 8) * 0.01 + 300.0).half()  # fp16 variance would lose the signal
    got = norm(x)
    assert got.dtype == torch.float16
    expected = F.group_norm(x.float(), 2, eps=1e-6)
    torch.testing.assert_close(got.float(), expected, rtol=0, atol=2e-2)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.bfloat16, 5e-2), (torch.float16, 1e-2)])
def test_low_precision_decode_tracks_float32_when_weights_are_cast(
    vae: CausalVideoVAE, dtype: torch.dtype, tol: float
) -> None:
    """Stated tolerances (relative L2): bf16 5e-2, fp16 1e-2 on the tiny random-weight VAE."""
    z = _rand(1, 16, 1, 2, 2, seed=8)
    with torch.no_grad():
        ref, _ = vae.decode(z)
        low = CausalVideoVAE(TINY).eval().to(dtype)
        low.load_state_dict(vae.state_dict())
        got, _ = low.decode(z.to(dtype))
    assert got.dtype == dtype
    assert ((got.float() - ref).norm() / ref.norm()).item() < tol


@pytest.mark.parametrize(("frames", "size_hw"), [(1, (13, 11)), (2, (8, 8)), (7, (9, 6))])
def test_clip_comes_back_at_its_size_when_frames_and_size_are_off_grid(
    vae: CausalVideoVAE, frames: int, size_hw: tuple[int, int]
) -> None:
    plan = plan_vae(size_hw, frames, mode="whole")
    video = torch.rand(1, 3, frames, *size_hw, generator=torch.Generator().manual_seed(9)) * 2 - 1
    z = encode_video(vae, video, plan, sample=False)
    assert z.shape == (1, 16, plan.latent_frames, *plan.latent_hw)
    assert decode_latents(vae, z, plan).shape == video.shape


def test_padding_replicates_the_last_frame_and_edges_when_off_grid(vae: CausalVideoVAE) -> None:
    plan = plan_vae((13, 21), 3, mode="whole")
    video = _rand(1, 3, 3, 13, 21)
    padded = pad_to_plan(video, plan)
    assert padded.shape == (1, 3, 5, 16, 24)
    torch.testing.assert_close(padded[:, :, 4], padded[:, :, 2])
    torch.testing.assert_close(padded[..., 15, :21], padded[..., 12, :21])
    torch.testing.assert_close(padded[..., :13, 23], padded[..., :13, 20])
    torch.testing.assert_close(padded[:, :, :3, :13, :21], video)
