"""Stage II's flow-matching Euler as a diffusers scheduler over `vidrefine.sampling`'s grid.

diffusers' `FlowMatchEulerDiscreteScheduler` with explicit sigmas cannot reproduce FlashVideo's
numbers: under the default `timestep_rounding="bf16"` the network is fed 1000 - 1000 t computed
in bf16 (904 where the scheduler gives 906.25, spec §5.4) and its update runs in fp32 where the
original's runs in the state's dtype. This class holds the grid `shifted_grid` builds and steps
with `sample_euler`, the functions `vidrefine upscale` runs.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from vidrefine.config import TIMESTEP_ROUNDINGS
from vidrefine.sampling.samplers import sample_euler
from vidrefine.sampling.timesteps import shifted_grid, timestep_indices


class FlashVideoFlowScheduler(SchedulerMixin, ConfigMixin):
    """Explicit Euler from the noised low-res latent (t=0) to the high-res one (t=1).

    `t_grid` holds the flow times t_0 = 0 < ... < t_N = 1 (shifted toward 0 by `shift`, spec
    §5.3) and `timesteps` the network timestep of each step, 1000 * (1 - t_k). The model output
    is the velocity dx/dt toward the high-res latent, added as x + (t_{k+1} - t_k) * v.
    """

    order = 1

    @register_to_config
    def __init__(self, shift: float = 2.5, timestep_rounding: str = "bf16") -> None:
        """`timestep_rounding`: "bf16" (the original's and training's numbers) or "exact"."""
        if timestep_rounding not in TIMESTEP_ROUNDINGS:
            raise ValueError(
                f"timestep_rounding must be one of {', '.join(TIMESTEP_ROUNDINGS)}, "
                f"not {timestep_rounding!r}"
            )
        self.t_grid: torch.Tensor | None = None
        self.timesteps: torch.Tensor | None = None
        self.num_inference_steps: int | None = None
        self._step_index: int | None = None

    def set_timesteps(
        self,
        num_inference_steps: int,
        device: str | torch.device | None = None,
        shift: float | None = None,
    ) -> None:
        """Build the grid of `num_inference_steps` Euler steps; `shift` overrides the config's."""
        rounding = self.config.timestep_rounding
        grid = shifted_grid(num_inference_steps, shift or self.config.shift, rounding=rounding)
        self.t_grid = grid.to(device)
        self.timesteps = timestep_indices(grid[:-1], rounding=rounding).to(device)
        self.num_inference_steps = num_inference_steps
        self._step_index = None

    @property
    def step_index(self) -> int | None:
        """The index of the next `step` (None before the first)."""
        return self._step_index

    def _index_of(self, timestep: float | torch.Tensor) -> int:
        if self._step_index is not None:
            return self._step_index
        assert self.timesteps is not None
        matches = (self.timesteps == torch.as_tensor(timestep).to(self.timesteps)).nonzero()
        if len(matches) == 0:
            raise ValueError(f"timestep {float(timestep)} is not on the grid {self.timesteps}")
        return int(matches[0])

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor]:
        """One Euler step of `sample` along the velocity `model_output`."""
        if self.t_grid is None:
            raise ValueError("call set_timesteps before step")
        k = self._index_of(timestep)
        prev = sample_euler(lambda x, t, i: model_output, sample, self.t_grid[k : k + 2])
        self._step_index = k + 1
        return SchedulerOutput(prev_sample=prev) if return_dict else (prev,)


__all__ = ["FlashVideoFlowScheduler"]
