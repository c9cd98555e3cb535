"""Samplers as small pure functions over a model callable (k-diffusion's contract).

Stage II: explicit Euler over a fixed flow-time grid (spec §5.3). Stage I: DPM-Solver++(2M) SDE in
VP form with a v-prediction denoiser (spec §4.2, §4.4). Noise comes only from the generator passed
in; progress and window fusion go through `callback`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from vidrefine.sampling.timesteps import quantised_alpha

# velocity(x, t, index) -> v, same shape as x; t is a 0-d tensor from the grid.
Velocity = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
# denoiser(x, alpha, timestep, index) -> x0_hat, same shape as x.
Denoiser = Callable[[torch.Tensor, float, int, int], torch.Tensor]
# callback(index, t_next or alpha_next, x) -> replacement x, or None to keep x.
StepCallback = Callable[[int, object, torch.Tensor], torch.Tensor | None]


def _noise_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """N(0, I) drawn in float32 on the generator's device, then moved to x's device and dtype."""
    eps = torch.randn(x.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return eps.to(device=x.device, dtype=x.dtype)


def sample_euler(
    velocity: Velocity,
    x: torch.Tensor,
    t_grid: torch.Tensor,
    *,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Integrate dx/dt = velocity from t_grid[0] to t_grid[-1] with explicit Euler.

    x_{k+1} = x_k + (t_{k+1} - t_k) * v_k, one evaluation per interval, as torchdiffeq's fixed-grid
    Euler. The state stays in x's dtype; with a bf16 grid and a bf16 state every product and sum
    rounds to bf16 as in the original (spec §5.4).

    Args:
        velocity: called as velocity(x, t_grid[k], k).
        x: start state (the noised low-res latent at t=0), any layout.
        t_grid: (N + 1,) increasing flow times.
        callback: called as callback(k, t_grid[k + 1], x) after each step; a returned tensor
            replaces x (this is how overlapping windows are fused), None keeps it.

    Returns:
        The state at t_grid[-1].
    """
    for k in range(len(t_grid) - 1):
        dt = t_grid[k + 1] - t_grid[k]
        v = velocity(x, t_grid[k], k)
        x = x + dt * v.to(x.dtype)
        if callback is not None:
            replacement = callback(k, t_grid[k + 1], x)
            if replacement is not None:
                x = replacement
    return x


def degrade(z: torch.Tensor, a: float, *, generator: torch.Generator) -> torch.Tensor:
    """Stage-II start state a*z + sqrt(1 - a^2)*eps in z's dtype (spec §5.2)."""
    eps = _noise_like(z, generator)
    return a * z + math.sqrt(1.0 - a * a) * eps


def v_prediction_denoiser(
    model_fn: Callable[[torch.Tensor, int, int], torch.Tensor],
) -> Denoiser:
    """Turn a v-predicting network into an x0 denoiser (spec §4.2).

    x0 = a_q*x - sqrt(1 - a_q^2)*v, where a_q is the sampler's alpha snapped to the 1000-entry
    table while the network still gets the sampler's own timestep (pitfall 20).

    Args:
        model_fn: called as model_fn(x, timestep, index) -> v, same shape as x.
    """

    def denoiser(x: torch.Tensor, alpha: float, timestep: int, index: int) -> torch.Tensor:
        a_q = quantised_alpha(alpha)
        v = model_fn(x, timestep, index).to(x.dtype)
        return a_q * x - math.sqrt(1.0 - a_q * a_q) * v

    return denoiser


def _log_snr(alpha: float) -> float:
    """Log-SNR lambda = ln(alpha / sigma) with sigma = sqrt(1 - alpha^2); -inf at alpha = 0."""
    if alpha <= 0.0:
        return -math.inf
    return math.log(alpha) - 0.5 * math.log1p(-alpha * alpha)


def sample_dpmpp_2m_sde(
    denoiser: Denoiser,
    x: torch.Tensor,
    alphas: Sequence[float] | torch.Tensor,
    timesteps: Sequence[int],
    *,
    generator: torch.Generator,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) SDE in VP form, exactly as spec §4.4; the state is kept in float32.

    Args:
        denoiser: called as denoiser(x, alphas[i], timesteps[i], i) -> x0_hat.
        x: initial noise (stage I: (B, T, C, H, W)).
        alphas: (N + 1,) signal coefficients in visiting order, alphas[0] = 0 for zero terminal SNR
            and a trailing 1.0 (see `stage1_alphas`).
        timesteps: (N,) network timesteps in visiting order (see `stage1_timesteps`).
        generator: source of the fresh noise drawn at every step but the last.
        callback: called as callback(i, alphas[i + 1], x) after each step but the last.

    Returns:
        The last step's x0_hat (the last step does not integrate, as the original).
    """
    alphas = [float(a) for a in alphas]
    x = x.to(torch.float32)
    x0_prev, lam_prev = None, None
    for i, timestep in enumerate(timesteps):
        x0 = denoiser(x, alphas[i], timestep, i).to(torch.float32)
        if i == len(timesteps) - 1:
            return x0
        a_now, a_next = alphas[i], alphas[i + 1]
        s_now, s_next = math.sqrt(1.0 - a_now**2), math.sqrt(1.0 - a_next**2)
        lam_now, lam_next = _log_snr(a_now), _log_snr(a_next)
        eps = _noise_like(x, generator)
        if math.isinf(lam_now):
            # alpha = 0 => h = inf: e^{-h} = 0 and the update is alpha*x0 + sigma*eps (no NaN).
            x = a_next * x0 + s_next * eps
        else:
            h = lam_next - lam_now
            d = x0
            if x0_prev is not None and not math.isinf(lam_prev):
                r = (lam_now - lam_prev) / h
                d = (1.0 + 1.0 / (2.0 * r)) * x0 - (1.0 / (2.0 * r)) * x0_prev
            decay = math.exp(-h)
            x = (
                (s_next / s_now) * decay * x
                + a_next * (-math.expm1(-2.0 * h)) * d
                + s_next * math.sqrt(-math.expm1(-2.0 * h)) * eps
            )
        x0_prev, lam_prev = x0, lam_now
        if callback is not None:
            replacement = callback(i, a_next, x)
            if replacement is not None:
                x = replacement.to(torch.float32)
    return x
