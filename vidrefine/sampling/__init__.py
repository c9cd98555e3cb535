"""Pure sampling functions: time grids and schedules, samplers, guidance (no models imported)."""

from __future__ import annotations

from vidrefine.sampling.guidance import cfg_velocity, scale_at
from vidrefine.sampling.samplers import (
    degrade,
    sample_dpmpp_2m_sde,
    sample_euler,
    v_prediction_denoiser,
)
from vidrefine.sampling.timesteps import (
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

__all__ = [
    "cfg_velocity",
    "degradation_coefficient",
    "degrade",
    "dynamic_cfg_scales",
    "faithful_dynamic_cfg_scales",
    "quantised_alpha",
    "quantised_index",
    "ref_step_embedding_value",
    "sample_dpmpp_2m_sde",
    "sample_euler",
    "scale_at",
    "shifted_grid",
    "stage1_alphas",
    "stage1_timesteps",
    "timestep_indices",
    "v_prediction_denoiser",
    "zero_snr_alphas",
]
