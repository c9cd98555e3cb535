"""Watching a run: the progress line, held-out validation at fixed draws, the loss plot."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from vidrefine.io.atomic import atomic_output
from vidrefine.train.cache import TrainCache
from vidrefine.train.loss import LossDraws, LossSettings, loss_inputs, velocity_loss

VAL_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)  # uniform t before the shift: the noisy end to the clean
VAL_SEED = 20250205  # the noise of the validation draws, the same for every run


def progress_line(step: int, steps: int, loss: float, lr: float, step_s: float) -> str:
    """'step 10/100: loss 0.1234, lr 4.00e-05, 0.52 s/step, ETA 0:00:47'."""
    eta = timedelta(seconds=round(step_s * (steps - step)))
    return f"step {step}/{steps}: loss {loss:.4f}, lr {lr:.2e}, {step_s:.2f} s/step, ETA {eta}"


@torch.no_grad()
def validation_loss(
    velocity: Callable,
    cache: TrainCache,
    windows: Sequence[int],
    settings: LossSettings,
    device: torch.device,
) -> float:
    """Mean loss of the held-out windows at fixed times, step and noise (comparable over a run).

    Each window uses its first degraded copy, its caption and the middle of the step range.
    """
    lo, hi = settings.step_range
    losses = []
    for index in windows:
        window = cache.window(index)
        generator = torch.Generator().manual_seed(VAL_SEED + index)
        for u in VAL_TIMES:
            noise = torch.randn((1, *window.hr.shape), generator=generator)
            draws = LossDraws(
                torch.tensor([u]), torch.tensor([(lo + hi) // 2]), noise, torch.tensor([True])
            )
            inputs = loss_inputs(
                window.hr[None].to(device),
                window.degraded[0][None].to(device),
                window.context[None].to(device),
                draws,
                settings,
            )
            losses.append(float(velocity_loss(velocity, inputs)))
    return sum(losses) / len(losses)


def plot_losses(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Training loss per step (and validation loss, when there is one) as a PNG at `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    figure = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    if train:
        ax.plot(*zip(*train, strict=True), color="tab:blue", lw=1, alpha=0.6, label="training")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", color="tab:orange", lw=2, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("velocity loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_output(path, overwrite=True) as temp:
        figure.savefig(temp, format="png")
