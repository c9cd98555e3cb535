"""Classifier-free guidance as a wrapper that returns a new callable (spec §4.2-4.3, §5.3).

The combine is u + s*(c - u) on whatever the model returns. Stage II guides the velocity with a
constant scale and batches [cond; uncond]; stage I guides x0 with a per-step schedule and batches
[uncond; cond] (pitfall 5). Guiding stage I's v and then converting to x0 is the same as guiding
x0, because x0 = a*x - sigma*v is affine in v with coefficients shared by both branches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

# model_fn(x, t, text) -> output shaped like x; text is (B, L, D) conditioning.
ModelFn = Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]
# guided(x, t, index) -> guided output; index selects the scale from a schedule.
Guided = Callable[[torch.Tensor, Any, int], torch.Tensor]


def scale_at(scale: float | Sequence[float], index: int) -> float:
    """Guidance scale for step `index`: a constant, or the index-th entry of a schedule."""
    if isinstance(scale, (int, float)):
        return float(scale)
    return float(scale[index])


def _twice(t: Any, batch: int) -> Any:
    """Duplicate a per-sample time tensor for the doubled batch; scalars pass through."""
    if isinstance(t, torch.Tensor) and t.ndim > 0 and t.shape[0] == batch:
        return torch.cat([t, t])
    return t


def cfg_velocity(
    model_fn: ModelFn,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    scale: float | Sequence[float],
    *,
    batched: bool = True,
    cond_first: bool = True,
) -> Guided:
    """Wrap `model_fn` with classifier-free guidance.

    Args:
        model_fn: the conditional network, called as model_fn(x, t, text).
        cond: (B, L, D) caption embedding.
        uncond: (B, L, D) unconditional embedding (the original uses zeros, pitfall 3).
        scale: a constant, or a per-step schedule indexed by the `index` argument.
        batched: run both branches as one batch of 2B (faster) or one after the other (less memory).
        cond_first: batch order [cond; uncond] (stage II) or [uncond; cond] (stage I); the result is
            the same up to kernel rounding, the order only matters to match the original's batches.

    Returns:
        guided(x, t, index) -> u + s*(c - u); when s == 1 only the conditional pass runs.
    """

    def guided(x: torch.Tensor, t: Any, index: int) -> torch.Tensor:
        s = scale_at(scale, index)
        if s == 1.0:
            return model_fn(x, t, cond)
        if batched:
            texts = [cond, uncond] if cond_first else [uncond, cond]
            out = model_fn(torch.cat([x, x]), _twice(t, x.shape[0]), torch.cat(texts))
            first, second = out.chunk(2)
            c, u = (first, second) if cond_first else (second, first)
        elif cond_first:
            c, u = model_fn(x, t, cond), model_fn(x, t, uncond)
        else:
            u, c = model_fn(x, t, uncond), model_fn(x, t, cond)
        return u + s * (c - u)

    return guided
