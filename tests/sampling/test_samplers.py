"""Samplers and guidance against analytic answers and float64 transcriptions of spec §4.4."""

from __future__ import annotations

import math

import pytest
import torch
from dpm_reference import dpm_step

from vidrefine.sampling.guidance import cfg_velocity
from vidrefine.sampling.samplers import (
    degrade,
    sample_dpmpp_2m_sde,
    sample_euler,
    v_prediction_denoiser,
)
from vidrefine.sampling.timesteps import shifted_grid, zero_snr_alphas

SHAPE = (1, 3, 2, 4, 5)  # (B, T, C, H, W), small


def rand(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape or SHAPE, generator=g, dtype=torch.float64).to(dtype)


# ---------------------------------------------------------------------------------------- Euler


@pytest.mark.parametrize("steps", [1, 4, 5, 9])
def test_euler_integrates_constant_velocity_exactly_when_any_grid(steps):
    x0, c = rand(seed=1), rand(seed=2)
    grid = shifted_grid(steps, 2.5)
    out = sample_euler(lambda x, t, k: c, x0, grid)
    torch.testing.assert_close(out, x0 + c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_euler_equals_left_riemann_sum_when_velocity_is_linear_in_t(steps):
    # v(t) = a + b t on a uniform grid: sum_k dt * t_k = (N - 1) / (2N), analytically
    x0, a, b = rand(seed=3), rand(seed=4), rand(seed=5)
    grid = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    out = sample_euler(lambda x, t, k: a + b * t, x0, grid)
    expected = x0 + a + b * (steps - 1) / (2 * steps)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_euler_lands_on_target_when_path_is_straight(steps):
    # the rectified-flow velocity toward a single point, v = (x1 - x) / (1 - t), is followed
    # exactly by Euler on any grid: every step stays on the straight line to x1
    x0, x1 = rand(seed=6), rand(seed=7)
    grid = shifted_grid(steps, 2.5)
    out = sample_euler(lambda x, t, k: (x1 - x) / (1 - t), x0, grid)
    torch.testing.assert_close(out, x1, rtol=0, atol=1e-12)


def test_euler_passes_grid_times_and_indices_when_called():
    seen = []
    grid = shifted_grid(4, 2.5)

    def velocity(x, t, k):
        seen.append((k, float(t)))
        return torch.zeros_like(x)

    sample_euler(velocity, rand(seed=0), grid)
    assert seen == [(k, float(grid[k])) for k in range(4)]


def test_euler_callback_replacement_is_used_when_returned():
    x0, c = rand(seed=8), rand(seed=9)
    grid = shifted_grid(5, 2.5)
    calls = []

    def callback(k, t_next, x):
        calls.append((k, float(t_next)))
        return torch.zeros_like(x) if k == 1 else None

    out = sample_euler(lambda x, t, k: c, x0, grid, callback=callback)
    torch.testing.assert_close(out, c * float(grid[-1] - grid[2]), rtol=0, atol=1e-12)
    assert calls == [(k, float(grid[k + 1])) for k in range(5)]


def test_euler_keeps_bf16_state_and_rounds_each_op_when_faithful():
    x0 = rand(seed=10, dtype=torch.bfloat16)
    v = rand(seed=11, dtype=torch.bfloat16)
    grid = shifted_grid(5, 2.5, rounding="bf16")
    out = sample_euler(lambda x, t, k: v, x0, grid)
    assert out.dtype == torch.bfloat16
    # transcription of torchdiffeq's Euler on bf16 tensors: dy = bf16(dt * v); y = bf16(y + dy)
    expected = x0.float()
    for k in range(5):
        dt = float(grid[k + 1]) - float(grid[k])
        dt = float(torch.tensor(dt, dtype=torch.bfloat16))
        dy = (dt * v.float()).to(torch.bfloat16).float()
        expected = (expected + dy).to(torch.bfloat16).float()
    assert torch.equal(out.float(), expected)


# ---------------------------------------------------------------------------------------- degrade


def test_degrade_mixes_signal_and_generator_noise_when_seeded():
    z = rand(seed=12, dtype=torch.float32)
    a = 0.263959
    out = degrade(z, a, generator=torch.Generator().manual_seed(5))
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    torch.testing.assert_close(out, a * z + math.sqrt(1 - a * a) * eps)


def test_degrade_keeps_dtype_when_bf16():
    z = rand(seed=12, dtype=torch.bfloat16)
    assert degrade(z, 0.3, generator=torch.Generator().manual_seed(0)).dtype == torch.bfloat16


# ---------------------------------------------------------------------------------------- guidance


def toy_model(calls):
    """A nonlinear stand-in network: mixes x, t and the text embedding row by row."""

    def model_fn(x, t, text):
        calls.append(text.clone())
        gain = text.mean(dim=(1, 2)).reshape(-1, *([1] * (x.ndim - 1)))
        return torch.tanh(x * gain) + 0.1 * float(t)

    return model_fn


def texts(batch=2):
    cond = rand(batch, 6, 4, seed=20)
    uncond = torch.zeros_like(cond)
    return cond, uncond


def test_cfg_at_scale_one_is_cond_only_and_skips_uncond_when_scale_is_one():
    cond, uncond = texts()
    x = rand(2, 3, 4, seed=21)
    calls = []
    guided = cfg_velocity(toy_model(calls), cond, uncond, 1.0)
    out = guided(x, 0.5, 0)
    torch.testing.assert_close(out, toy_model([])(x, 0.5, cond))
    assert len(calls) == 1 and torch.equal(calls[0], cond)


@pytest.mark.parametrize("cond_first", [True, False])
def test_cfg_batched_equals_sequential_when_either_order(cond_first):
    cond, uncond = texts()
    x = rand(2, 3, 4, seed=22)
    batched_calls, seq_calls = [], []
    batched = cfg_velocity(toy_model(batched_calls), cond, uncond, 13.0, cond_first=cond_first)
    sequential = cfg_velocity(
        toy_model(seq_calls), cond, uncond, 13.0, batched=False, cond_first=cond_first
    )
    torch.testing.assert_close(batched(x, 0.25, 0), sequential(x, 0.25, 0), rtol=0, atol=1e-12)
    assert len(batched_calls) == 1 and batched_calls[0].shape[0] == 4
    assert len(seq_calls) == 2
    first = cond if cond_first else uncond
    assert torch.equal(batched_calls[0][:2], first)


def test_cfg_combines_as_uncond_plus_scale_times_difference_when_guided():
    cond, uncond = texts()
    x = rand(2, 3, 4, seed=23)
    plain = toy_model([])
    c, u = plain(x, 0.0, cond), plain(x, 0.0, uncond)
    out = cfg_velocity(toy_model([]), cond, uncond, 13.0)(x, 0.0, 0)
    torch.testing.assert_close(out, u + 13.0 * (c - u), rtol=0, atol=1e-12)
    # extrapolates beyond the conditional output, away from the unconditional one
    assert float(((out - u) * (c - u)).sum()) > float(((c - u) ** 2).sum())


def test_cfg_schedule_picks_scale_by_step_index_when_sequence_given():
    cond, uncond = texts()
    x = rand(2, 3, 4, seed=24)
    schedule = [1.0, 3.0, 8.0]
    guided = cfg_velocity(toy_model([]), cond, uncond, schedule, cond_first=False)
    for index, s in enumerate(schedule):
        constant = cfg_velocity(toy_model([]), cond, uncond, s, cond_first=False)
        torch.testing.assert_close(guided(x, 0.1, index), constant(x, 0.1, 0))


def test_cfg_duplicates_per_sample_times_when_batched():
    cond, uncond = texts()
    x = rand(2, 3, 4, seed=25)
    seen = []

    def model_fn(x, t, text):
        seen.append(t)
        return x * t.reshape(-1, 1, 1)

    cfg_velocity(model_fn, cond, uncond, 2.0)(x, torch.tensor([0.5, 0.75]), 0)
    assert seen[0].tolist() == [0.5, 0.75, 0.5, 0.75]


# ---------------------------------------------------------------------------------------- DPM++


def toy_denoiser(calls=None):
    """Deterministic x0 predictor depending on x, alpha, timestep and index."""

    def denoiser(x, alpha, timestep, index):
        if calls is not None:
            calls.append((alpha, timestep, index))
        return 0.5 * torch.tanh(x) + 0.01 * timestep + 0.1 * index

    return denoiser


def reference_dpmpp(x, alphas, timesteps, noises):
    """float64 transcription of spec §4.4, with the noise tensors given explicitly."""
    den = toy_denoiser()
    x = x.double()
    x0_prev = lam_prev = None
    for i, tau in enumerate(timesteps):
        x0 = den(x, alphas[i], tau, i).double()
        if i == len(timesteps) - 1:
            return x0, x
        x, lam = dpm_step(x, x0, alphas[i], alphas[i + 1], noises[i].double(), x0_prev, lam_prev)
        x0_prev, lam_prev = x0, lam
    raise AssertionError("unreachable")


def noises_for(seed, count, shape=SHAPE):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float32) for _ in range(count)]


@pytest.mark.parametrize("alphas", [[0.3, 0.5, 0.8, 0.95, 1.0], [0.0, 0.2, 0.6, 0.9, 1.0]])
def test_dpmpp_2m_sde_matches_float64_transcription_when_seeded(alphas):
    timesteps = [900, 600, 300, 50]
    x = rand(seed=30, dtype=torch.float32)
    states = []
    out = sample_dpmpp_2m_sde(
        toy_denoiser(),
        x,
        alphas,
        timesteps,
        generator=torch.Generator().manual_seed(7),
        callback=lambda i, a, xs: states.append(xs.clone()),
    )
    expected_out, expected_last_state = reference_dpmpp(x, alphas, timesteps, noises_for(7, 3))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(states[-1].double(), expected_last_state, rtol=1e-5, atol=1e-5)


def test_dpmpp_first_step_is_alpha_x0_plus_sigma_noise_when_alpha_zero():
    alphas, timesteps = [0.0, 0.4, 1.0], [999, 500]
    x = rand(seed=31, dtype=torch.float32)
    states = []
    sample_dpmpp_2m_sde(
        toy_denoiser(),
        x,
        alphas,
        timesteps,
        generator=torch.Generator().manual_seed(3),
        callback=lambda i, a, xs: states.append(xs),
    )
    (eps,) = noises_for(3, 1)
    x0 = toy_denoiser()(x, 0.0, 999, 0)
    assert torch.isfinite(states[0]).all()
    torch.testing.assert_close(states[0], 0.4 * x0 + math.sqrt(1 - 0.16) * eps)


def test_dpmpp_last_step_returns_denoiser_output_when_finished():
    calls = []
    alphas, timesteps = [0.0, 0.3, 0.7, 1.0], [999, 600, 19]
    x = rand(seed=32, dtype=torch.float32)
    outputs = []

    def denoiser(x, alpha, timestep, index):
        outputs.append(toy_denoiser(calls)(x, alpha, timestep, index))
        return outputs[-1]

    out = sample_dpmpp_2m_sde(denoiser, x, alphas, timesteps, generator=torch.Generator())
    assert torch.equal(out, outputs[-1])
    assert calls == [(0.0, 999, 0), (0.3, 600, 1), (0.7, 19, 2)]


def test_dpmpp_is_reproducible_when_same_seed_and_differs_when_other_seed():
    alphas, timesteps = [0.0, 0.3, 0.7, 0.9, 1.0], [999, 700, 300, 19]
    x = rand(seed=33, dtype=torch.float32)

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return sample_dpmpp_2m_sde(toy_denoiser(), x, alphas, timesteps, generator=gen)

    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))


def test_v_prediction_denoiser_uses_quantised_alpha_and_sampler_timestep_when_called():
    table = zero_snr_alphas()
    alpha = float(table[500]) + 1e-6  # off-table: snaps to entry 500
    x, v = rand(seed=34), rand(seed=35)
    seen = []

    def model_fn(x, timestep, index):
        seen.append((timestep, index))
        return v

    out = v_prediction_denoiser(model_fn)(x, alpha, 437, 3)
    a_q = float(table[500])
    torch.testing.assert_close(out, a_q * x - math.sqrt(1 - a_q**2) * v, rtol=0, atol=1e-12)
    assert seen == [(437, 3)]


def test_guiding_v_equals_guiding_x0_when_composed_for_stage1():
    # stage I guides x0; v_prediction_denoiser(cfg_velocity(...)) guides v first (module docstring)
    cond, uncond = texts()
    x = rand(2, 3, 4, seed=36)
    plain = toy_model([])
    table = zero_snr_alphas()
    a = float(table[300])
    s_a = math.sqrt(1 - a * a)
    x0_c, x0_u = a * x - s_a * plain(x, 300, cond), a * x - s_a * plain(x, 300, uncond)
    guided = cfg_velocity(
        lambda x, tau, text: plain(x, tau, text), cond, uncond, [1.0, 6.5], cond_first=False
    )
    out = v_prediction_denoiser(guided)(x, a, 300, 1)
    torch.testing.assert_close(out, x0_u + 6.5 * (x0_c - x0_u), rtol=0, atol=1e-12)
