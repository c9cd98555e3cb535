"""FlashVideoFlowScheduler holds vidrefine's shifted grid and steps with sample_euler."""

from __future__ import annotations

import torch

from vidrefine.diffusers.scheduler import FlashVideoFlowScheduler
from vidrefine.sampling.samplers import sample_euler
from vidrefine.sampling.timesteps import shifted_grid


def test_scheduler_feeds_the_originals_bf16_timesteps_when_rounding_is_bf16() -> None:
    scheduler = FlashVideoFlowScheduler()
    scheduler.set_timesteps(5)
    assert scheduler.timesteps.tolist() == [1000.0, 904.0, 784.0, 624.0, 384.0]  # spec §5.4
    assert torch.equal(scheduler.t_grid, shifted_grid(5, 2.5, rounding="bf16"))
    exact = FlashVideoFlowScheduler.from_config(scheduler.config, timestep_rounding="exact")
    exact.set_timesteps(5)
    assert abs(float(exact.timesteps[1]) - 909.0909) < 1e-3


def test_flowmatch_euler_cannot_give_those_timesteps_when_given_the_same_grid() -> None:
    """Why the pipeline has its own scheduler: diffusers' takes sigma = 1 - t in fp32."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    grid = shifted_grid(5, 2.5, rounding="bf16").float()
    theirs = FlowMatchEulerDiscreteScheduler(shift=1.0)
    theirs.set_timesteps(sigmas=(1 - grid[:-1]).tolist())
    ours = FlashVideoFlowScheduler()
    ours.set_timesteps(5)
    assert float(theirs.timesteps[1]) == 906.25 != float(ours.timesteps[1])


def test_scheduler_steps_as_sample_euler_when_driven_step_by_step() -> None:
    scheduler = FlashVideoFlowScheduler(shift=3.0)
    scheduler.set_timesteps(3)
    x0 = torch.randn(1, 2, 4, 3, 3, generator=torch.Generator().manual_seed(0))

    def velocity(x, t, index):
        return torch.sin(x) + float(t)

    x = x0
    for timestep in scheduler.timesteps:
        t = scheduler.t_grid[scheduler.step_index or 0]
        x = scheduler.step(velocity(x, t, 0), timestep, x).prev_sample
    expected = sample_euler(velocity, x0, shifted_grid(3, 3.0, rounding="bf16"))
    assert torch.equal(x, expected)
