"""Time grids and schedules against the analytic formulas and the published spec numbers."""

from __future__ import annotations

import math

import pytest
import torch

from vidrefine.errors import BadInput
from vidrefine.sampling.timesteps import (
    _bf16_linspace,
    degradation_coefficient,
    dynamic_cfg_scales,
    faithful_dynamic_cfg_scales,
    quantised_alpha,
    quantised_index,
    ref_step_embedding_value,
    shifted_grid,
    stage1_alphas,
    stage1_timesteps,
    timestep_indices,
    zero_snr_alphas,
)

# flashvideo-spec §5.4 (bf16-emulated by the spec author).
SPEC_BF16_T = {
    5: [0.0, 0.09375, 0.21484, 0.375, 0.61719, 1.0],
    4: [0.0, 0.11719, 0.28516, 0.54688, 1.0],
}
SPEC_BF16_IDX = {5: [1000, 904, 784, 624, 384], 4: [1000, 884, 712, 452]}
SPEC_BF16_DT_5 = [0.09375, 0.12109, 0.16016, 0.24219, 0.38281]
# flashvideo-spec §5.2
SPEC_DEGRADATION = {600: 0.3571, 650: 0.2940, 675: 0.263959, 700: 0.2351, 750: 0.1811}
# flashvideo-spec §4.1 (ascending, as printed there)
SPEC_STAGE1_TIMESTEPS = [
    19, 39, 58, 78, 97, 117, 137, 156, 176, 195, 215, 235, 254, 274, 293, 313, 333, 352, 372, 391,
    411, 430, 450, 470, 489, 509, 528, 548, 568, 587, 607, 626, 646, 666, 685, 705, 724, 744, 763,
    783, 803, 822, 842, 861, 881, 901, 920, 940, 959, 979, 999,
]  # fmt: skip
SPEC_STAGE1_ALPHAS = [
    0, .00927, .01938, .0298, .04166, .05378, .06747, .08214, .09697, .11354, .13019, .14867,
    .16809, .18741, .20862, .22956, .25241, .27483, .29912, .32405, .34828, .37428, .39937, .42612,
    .45314, .47898, .50625, .53217, .55937, .58639, .61182, .63825, .66297, .68849, .7122, .73653,
    .76015, .78188, .80395, .8241, .84443, .86382, .88133, .89879, .91444, .92992, .94437, .95716,
    .96963, .98055, .99108, 1.0,
]  # fmt: skip
# flashvideo-spec §4.3
SPEC_FAITHFUL_CFG = [
    8.287, 4.004, 2.404, 5.046, 6.275, 2.003, 6.806, 1.616, 1.024, 8.099, 8.797, 3.026, 4.597,
    1.405, 5.100, 8.875, 1.236, 8.840, 6.197, 8.360, 8.479, 8.779, 2.283, 2.647, 3.211, 5.767,
    1.682, 1.051, 1.435, 4.365, 8.591, 7.591, 1.279, 8.668, 8.612, 1.307, 3.597, 3.248, 8.582,
    7.576, 1.439, 5.533, 4.378, 8.998, 3.359, 3.415, 6.200, 1.034, 1.000, 1.000, 1.185,
]  # fmt: skip


def analytic_grid(steps: int, shift: float) -> list[float]:
    out = []
    for k in range(steps + 1):
        u = 1 - k / steps
        out.append(1 - shift * u / (1 + (shift - 1) * u))
    return out


@pytest.mark.parametrize("steps", [1, 4, 5, 12])
@pytest.mark.parametrize("shift", [1.0, 2.5, 3.0])
def test_exact_grid_matches_shift_formula_when_rounding_is_exact(steps, shift):
    t = shifted_grid(steps, shift, rounding="exact")
    assert t.dtype == torch.float64
    assert t.tolist() == pytest.approx(analytic_grid(steps, shift), abs=1e-15)


def test_exact_grid_is_increasing_from_zero_to_one_when_shifted():
    t = shifted_grid(7, 2.5)
    assert t[0] == 0 and t[-1] == 1
    assert bool((t[1:] > t[:-1]).all())
    # shift > 1 puts more of the steps near t = 0 (the noisy end)
    assert float(t[1] - t[0]) < float(t[-1] - t[-2])


@pytest.mark.parametrize("steps", [4, 5])
def test_bf16_grid_reproduces_spec_table_when_rounding_is_bf16(steps):
    t = shifted_grid(steps, 2.5, rounding="bf16")
    assert t.dtype == torch.bfloat16
    assert t.float().tolist() == pytest.approx(SPEC_BF16_T[steps], abs=6e-6)  # spec: 5 digits
    idx = timestep_indices(t, rounding="bf16")
    assert idx[:-1].tolist() == SPEC_BF16_IDX[steps]
    assert idx[-1] == 0


def test_bf16_grid_steps_match_spec_dt_when_five_steps():
    t = shifted_grid(5, 2.5, rounding="bf16")
    dt = (t[1:] - t[:-1]).float().tolist()
    assert dt == pytest.approx(SPEC_BF16_DT_5, abs=5e-6)


@pytest.mark.parametrize("points", [1, 2, 3, 4, 5, 6, 9, 14, 18, 32, 51, 101])
def test_bf16_linspace_emulation_equals_torch_cpu_kernel_when_compared(points):
    # the faithful grid spells out torch's linspace kernel; the CPU kernel is the oracle
    ours = _bf16_linspace(0.0, 1.0, points)
    assert torch.equal(ours, torch.linspace(0, 1, points, dtype=torch.bfloat16))


def test_indices_are_1000_times_one_minus_t_when_exact():
    t = shifted_grid(5, 2.5)
    idx = timestep_indices(t)
    assert idx.dtype == torch.float32
    expected = [1000 * (1 - v) for v in analytic_grid(5, 2.5)]
    assert idx.tolist() == pytest.approx(expected, rel=1e-6)


def test_bf16_indices_differ_from_exact_ones_when_faithful():
    # pitfall 7: 909.09 is fed as 904
    exact = timestep_indices(shifted_grid(5, 2.5))
    faithful = timestep_indices(shifted_grid(5, 2.5, rounding="bf16"), rounding="bf16")
    assert float(exact[1]) == pytest.approx(909.0909, abs=1e-3)
    assert float(faithful[1]) == 904.0


def test_ref_step_is_bf16_rounded_when_faithful():
    assert ref_step_embedding_value(675, rounding="bf16") == 676.0
    assert ref_step_embedding_value(675, rounding="exact") == 675.0


def test_unknown_rounding_is_rejected_when_given():
    with pytest.raises(BadInput, match="rounding"):
        shifted_grid(5, rounding="fp8")


def test_zero_steps_are_rejected_when_building_a_grid():
    with pytest.raises(BadInput, match="steps"):
        shifted_grid(0)


def test_zero_snr_table_has_zero_terminal_alpha_when_built():
    a = zero_snr_alphas()
    assert a.dtype == torch.float64 and a.shape == (1000,)
    assert float(a[-1]) == 0.0
    assert float(a[0]) == pytest.approx(0.99957, abs=5e-6)
    assert bool((a[1:] < a[:-1]).all())


def test_zero_snr_table_keeps_first_alpha_of_plain_ddpm_when_rescaled():
    beta0 = 0.00085  # first beta of the scaled-linear schedule
    assert float(zero_snr_alphas()[0]) == pytest.approx(math.sqrt(1 - beta0), abs=1e-12)


@pytest.mark.parametrize(("step", "expected"), sorted(SPEC_DEGRADATION.items()))
def test_degradation_coefficient_matches_spec_when_step_given(step, expected):
    digits = len(str(expected).split(".")[1])
    assert degradation_coefficient(step) == pytest.approx(expected, abs=0.6 * 10**-digits)


def test_degradation_step_out_of_range_is_rejected_when_given():
    with pytest.raises(BadInput, match="675"):
        degradation_coefficient(1000)


def test_stage1_timesteps_match_spec_when_default():
    ts = stage1_timesteps()
    assert ts == list(reversed(SPEC_STAGE1_TIMESTEPS))


def test_stage1_alphas_match_spec_when_default():
    a = stage1_alphas()
    assert a.shape == (52,)
    assert a.tolist() == pytest.approx(SPEC_STAGE1_ALPHAS, abs=6e-6)


def test_stage1_alphas_differ_from_full_table_by_subsampled_rescale_when_compared():
    a = stage1_alphas()[:-1]
    full = zero_snr_alphas()[stage1_timesteps()]
    diff = (a - full).abs().max()
    assert 1e-4 < float(diff) < 6.3e-4  # spec §4.1: up to 6.2e-4


def test_quantised_index_is_timestep_above_235_and_one_less_below_when_stage1():
    for tau, alpha in zip(stage1_timesteps(), stage1_alphas()[:-1].tolist(), strict=True):
        expected = tau if tau >= 235 else tau - 1
        assert quantised_index(alpha) == expected
        assert quantised_alpha(alpha) == float(zero_snr_alphas()[expected])


def test_faithful_cfg_table_matches_spec_when_scale_8():
    scales = faithful_dynamic_cfg_scales(8.0)
    assert len(scales) == 51
    assert scales == pytest.approx(SPEC_FAITHFUL_CFG, abs=1.5e-3)


def test_intended_cfg_schedule_falls_monotonically_from_nine_when_scale_8():
    scales = dynamic_cfg_scales(8.0)
    assert len(scales) == 51
    assert scales[0] == pytest.approx(9.0)
    assert all(b <= a for a, b in zip(scales, scales[1:], strict=False))
    assert scales[-1] == pytest.approx(1.0, abs=1e-6)
