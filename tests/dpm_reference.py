"""A float64 transcription of one DPM-Solver++(2M) SDE step in VP form (spec §4.4), for tests."""

from __future__ import annotations

import math


def dpm_step(x, x0, a, a_next, eps, x0_prev, lam_prev):
    """Return (x_next, lambda_now): the update from alpha `a` to `a_next` given x0 predictions.

    alpha 0 has lambda = -inf (h = +inf), so the step is first order: x = a' x0 + s' eps; so is
    the step after it (r = inf). `x0_prev`/`lam_prev` are None at the first step.
    """
    s_now, s_next = math.sqrt(1 - a * a), math.sqrt(1 - a_next * a_next)
    lam_next = math.log(a_next / s_next)
    if a == 0.0:
        return a_next * x0 + s_next * eps, -math.inf
    lam = math.log(a / s_now)
    h = lam_next - lam
    d = x0
    if x0_prev is not None and lam_prev != -math.inf:
        r = (lam - lam_prev) / h
        d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
    x_next = (
        (s_next / s_now) * math.exp(-h) * x
        + a_next * (1 - math.exp(-2 * h)) * d
        + s_next * math.sqrt(1 - math.exp(-2 * h)) * eps
    )
    return x_next, lam
