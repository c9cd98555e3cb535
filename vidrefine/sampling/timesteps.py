"""Pure time-grid and noise-schedule builders for both stages (flashvideo-spec §4.1-4.3, §5.2-5.4).

Stage II: a shifted flow-time grid t in [0, 1] (t=0 noised low-res latent, t=1 clean) and the
network timestep index 1000*(1-t). Stage I: the zero-terminal-SNR DDPM table, the 51 sampler
timesteps and alphas, and the guidance-scale schedules. `rounding="bf16"` reproduces the original's
bf16 arithmetic op by op (spec §5.4); `"exact"` is the float64 formula.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from vidrefine.errors import BadInput

ROUNDINGS = ("exact", "bf16")
NUM_TRAIN_TIMESTEPS = 1000
STAGE1_STEPS = 51
_BETA_START = 0.00085
_BETA_END = 0.012


def _check_rounding(rounding: str) -> None:
    if rounding not in ROUNDINGS:
        raise BadInput(f"timestep rounding must be one of {', '.join(ROUNDINGS)}, not {rounding!r}")


def _bf16_linspace(start: float, end: float, steps: int) -> torch.Tensor:
    """The torch linspace kernel evaluated in bf16 scalar arithmetic (each op rounds to bf16).

    The kernel computes step = (end - start) / (steps - 1), then start + step*i for the first half
    and end - step*(steps-1-i) for the second half. Equal to `torch.linspace(..., dtype=bfloat16)`
    on CPU, but written out so the faithful grid does not depend on a device's kernel.
    """

    def bf16(value: float) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.bfloat16)

    lo, hi = bf16(start), bf16(end)
    if steps == 1:
        return lo.reshape(1)
    step = (hi - lo) / bf16(steps - 1)
    halfway = steps // 2
    values = [
        lo + step * bf16(i) if i < halfway else hi - step * bf16(steps - 1 - i)
        for i in range(steps)
    ]
    return torch.stack(values)


def shifted_grid(steps: int, shift: float = 2.5, *, rounding: str = "exact") -> torch.Tensor:
    """Flow-time grid t_0=0 < ... < t_steps=1, denser near t=0 for shift > 1 (spec §5.3).

    t <- 1 - s(1-t) / (1 + (s-1)(1-t)) applied to a uniform grid.

    Args:
        steps: number of Euler intervals (network evaluations), >= 1.
        shift: the original's `shift_t`; 1.0 keeps the uniform grid.
        rounding: "exact" returns float64; "bf16" returns bfloat16 values computed exactly as the
            original (bf16 linspace, then each arithmetic op rounded to bf16, spec §5.4).

    Returns:
        (steps + 1,) tensor of t.
    """
    _check_rounding(rounding)
    if steps < 1:
        raise BadInput(f"the number of sampling steps must be at least 1, not {steps}")
    if shift <= 0:
        raise BadInput(f"the time shift must be positive, not {shift}")
    if rounding == "exact":
        t = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    else:
        t = _bf16_linspace(0.0, 1.0, steps + 1)
    # Same op order as the original: every intermediate is a bf16 tensor in bf16 mode.
    u = 1 - t
    return 1 - (shift * u) / (1 + (shift - 1) * u)


def timestep_indices(t: torch.Tensor, *, rounding: str = "exact") -> torch.Tensor:
    """Network timestep 1000*(1-t) for flow times `t` (t=0 -> 1000, t=1 -> 0).

    In bf16 mode the original computes `1000 - 1000*t` on bf16 tensors, so the grid t=0.09375
    is fed as 904, not 906.25 (spec §5.4, pitfall 7). Returned as float32 either way; the bf16
    values are exactly representable.
    """
    _check_rounding(rounding)
    if rounding == "bf16":
        tb = t.to(torch.bfloat16)
        return (1000 - 1000 * tb).to(torch.float32)
    return (1000.0 * (1.0 - t.to(torch.float64))).to(torch.float32)


def ref_step_embedding_value(step: int, *, rounding: str = "exact") -> float:
    """Value the stage-II reference-step embedding receives for degradation step `step`.

    The original passes it as a bf16 tensor, so 675 arrives as 676 (spec §5.4, pitfall 7).
    """
    _check_rounding(rounding)
    if rounding == "bf16":
        return float(torch.tensor(float(step), dtype=torch.bfloat16))
    return float(step)


def _zero_terminal_rescale(a: torch.Tensor) -> torch.Tensor:
    """Rescale sqrt(alpha_bar) so the last entry is 0 and the first unchanged (spec §4.1)."""
    first, last = a[0].clone(), a[-1].clone()
    return (a - last) * first / (first - last)


def _alphas_cumprod(n: int, shift: float) -> torch.Tensor:
    """Scaled-linear DDPM alpha_bar (float64), with the SD3-style shift alpha_bar/(s+(1-s)ab)."""
    betas = torch.linspace(math.sqrt(_BETA_START), math.sqrt(_BETA_END), n, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas**2, dim=0)
    return alphas_cumprod / (shift + (1.0 - shift) * alphas_cumprod)


@lru_cache(maxsize=8)
def _zero_snr_table(n: int, shift: float) -> torch.Tensor:
    return _zero_terminal_rescale(_alphas_cumprod(n, shift).sqrt())


def zero_snr_alphas(n: int = NUM_TRAIN_TIMESTEPS, shift: float = 1.0) -> torch.Tensor:
    """sqrt(alpha_bar) per DDPM index 0..n-1 with zero terminal SNR: a[0]=0.99957, a[n-1]=0.

    float64; the original rescales in float32, which moves entries by < 1e-6.
    """
    return _zero_snr_table(n, float(shift)).clone()


def degradation_coefficient(step_index: int) -> float:
    """Signal coefficient a of the stage-II start x0 = a*z + sqrt(1-a^2)*eps (spec §5.2).

    From the shift-1.0 1000-entry table (pitfall 8): 675 -> 0.263959.
    """
    if not 0 <= step_index < NUM_TRAIN_TIMESTEPS:
        raise BadInput(
            f"degradation strength must be a step index in 0..{NUM_TRAIN_TIMESTEPS - 1} "
            f"(the original uses 675; 600..750 are sensible), not {step_index}"
        )
    return float(_zero_snr_table(NUM_TRAIN_TIMESTEPS, 1.0)[step_index])


def stage1_timesteps(steps: int = STAGE1_STEPS) -> list[int]:
    """Stage-I sampler timesteps in visiting order, 999 first (spec §4.1).

    floor(linspace(999, 0, steps, endpoint=False)); for 51 steps: 999, 979, 959, ..., 39, 19.
    """
    grid = np.linspace(NUM_TRAIN_TIMESTEPS - 1, 0, steps, endpoint=False)
    return [int(v) for v in grid.astype(np.int64)]


def stage1_alphas(steps: int = STAGE1_STEPS) -> torch.Tensor:
    """Stage-I sampler alphas (sqrt(alpha_bar)) in visiting order plus a trailing 1.0.

    The zero-SNR rescale runs over the sub-sampled table (endpoints at timesteps 19 and 999,
    pitfall 20), so entry 0 is exactly 0 and entries differ from the 1000-table by up to 6.2e-4.

    Returns:
        (steps + 1,) float64 tensor, paired index by index with `stage1_timesteps(steps)`.
    """
    ascending = list(reversed(stage1_timesteps(steps)))
    a = _alphas_cumprod(NUM_TRAIN_TIMESTEPS, 1.0)[ascending].sqrt()
    a = _zero_terminal_rescale(a).flip(0)
    return torch.cat([a, torch.ones(1, dtype=torch.float64)])


def quantised_index(alpha: float) -> int:
    """Index of the 1000-table entry nearest to `alpha` (the v-denoiser's quantisation, §4.2)."""
    table = _zero_snr_table(NUM_TRAIN_TIMESTEPS, 1.0)
    return int((table - float(alpha)).abs().argmin())


def quantised_alpha(alpha: float) -> float:
    """`alpha` snapped to the nearest entry of the 1000-entry zero-SNR table (spec §4.2)."""
    return float(_zero_snr_table(NUM_TRAIN_TIMESTEPS, 1.0)[quantised_index(alpha)])


def _cosine_ramp(scale: float, x: float, exponent: float) -> float:
    return 1.0 + scale * (1.0 - math.cos(math.pi * x**exponent)) / 2.0


def faithful_dynamic_cfg_scales(scale: float = 8.0, steps: int = STAGE1_STEPS) -> list[float]:
    """Per-step stage-I guidance scales as the released code computes them (spec §4.3).

    The original feeds `steps - timestep` where the step counter was meant, so for timesteps
    above `steps` the cosine argument is large and negative and the scale jumps pseudo-randomly
    between 1 and 1+scale (pitfall 4). Index k is the k-th sampler step (timestep 999 first).
    """
    return [_cosine_ramp(scale, (steps - tau) / steps, 5) for tau in stage1_timesteps(steps)]


def dynamic_cfg_scales(
    scale: float = 8.0, steps: int = STAGE1_STEPS, exponent: float = 5
) -> list[float]:
    """The intended monotone stage-I schedule: 1+scale at the first step, falling to about 1."""
    return [_cosine_ramp(scale, (steps - k) / steps, exponent) for k in range(steps)]
