"""Stage II's training loss (flashvideo-spec §5.7, the draft of FlashVideo PR #12; the paper §3.3).

One sample: the HR latent z_HR and the latent of its degraded copy z are given. The start latent
is z_LR = a z + sqrt(1 - a^2) eps with a from the shift-1.0 zero-SNR table at a degradation step
drawn from a range (pitfall 8); t ~ U(0, 1) is shifted toward the noisy end; x_t = (1 - t) z_LR +
t z_HR; the network sees timestep 1000 - 1000 t, the drawn step and the latent frame count, and
the loss is mean((v - (z_HR - z_LR))^2). Captions are dropped (zeroed, the original's
unconditional branch) with probability 0.1, which is what makes guidance work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from vidrefine.errors import BadInput
from vidrefine.sampling.timesteps import (
    NUM_TRAIN_TIMESTEPS,
    ROUNDINGS,
    degradation_coefficient,
    ref_step_embedding_value,
    timestep_indices,
)

CAPTION_DROPOUT = 0.1  # the original's ucg_rate (spec §2.1, §7)
# Degradation steps: the paper trains on 600-900, then 650-750 from 1k iterations into its
# 1080p phase (Table 10); a fine-tune starts from that late phase. Inference uses 675.
STEP_RANGE = (650, 750)
SHIFT = 2.5  # shift_t: the sampler's (spec §5.3), so training sees the times inference visits

# velocity(x_t, timestep_index, context, num_frames, ref_step) -> v, all batched (B, ...)
Velocity = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor
]


@dataclass(frozen=True)
class LossSettings:
    """The loss's knobs; every default is the original's or the paper's."""

    shift: float = SHIFT
    step_range: tuple[int, int] = STEP_RANGE  # inclusive degradation step indices
    caption_dropout: float = CAPTION_DROPOUT
    rounding: str = "bf16"  # t, the timestep and the step as the bf16 original (spec §5.4)

    def __post_init__(self) -> None:
        """Refuse settings the loss cannot use."""
        lo, hi = self.step_range
        if not 0 <= lo <= hi < NUM_TRAIN_TIMESTEPS:
            raise BadInput(
                f"degradation steps {lo}-{hi}: need 0 <= low <= high <= "
                f"{NUM_TRAIN_TIMESTEPS - 1} (the paper uses 650-750)"
            )
        if not 0.0 <= self.caption_dropout <= 1.0:
            raise BadInput(f"caption dropout {self.caption_dropout} is not a probability")
        if self.shift <= 0:
            raise BadInput(f"the time shift must be positive, not {self.shift}")
        if self.rounding not in ROUNDINGS:
            raise BadInput(f"timestep rounding must be one of {', '.join(ROUNDINGS)}")


@dataclass(frozen=True)
class LossDraws:
    """The random part of one batch's loss, drawn once so that it can be replayed.

    Attributes:
        uniform: (B,) float32 t before the shift, in [0, 1).
        steps: (B,) int64 degradation step indices.
        noise: (B, T, C, h, w) float32 standard normal noise of the latent degradation.
        keep_caption: (B,) bool, False where the caption is dropped.
    """

    uniform: torch.Tensor
    steps: torch.Tensor
    noise: torch.Tensor
    keep_caption: torch.Tensor


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Shift t to 1 - s(1 - t) / (1 + (s - 1)(1 - t)): the sampler's grid shift (spec §5.3)."""
    u = 1 - t
    return 1 - (shift * u) / (1 + (shift - 1) * u)


def flow_time(uniform: torch.Tensor, settings: LossSettings) -> torch.Tensor:
    """The shifted flow time t (B,) float32; bf16-rounded under rounding "bf16" (spec §5.4)."""
    t = shift_time(uniform.float(), settings.shift)
    return t.to(torch.bfloat16).float() if settings.rounding == "bf16" else t


def split_step_range(step_range: tuple[int, int], parts: int) -> list[tuple[int, int]]:
    """`parts` disjoint, contiguous inclusive sub-ranges covering `step_range`, as equal as can be.

    The original gives each rank its own sub-range; here each sample slot of the global batch
    has one (a rank holds whole slots, so ranks' sub-ranges are disjoint too). A range with fewer
    steps than parts repeats its steps, in order.
    """
    lo, hi = step_range
    count = hi - lo + 1
    if parts <= count:
        bounds = [lo + (count * i) // parts for i in range(parts + 1)]
        return [(bounds[i], bounds[i + 1] - 1) for i in range(parts)]
    return [(lo + i % count, lo + i % count) for i in range(parts)]


def draw_loss(
    generator: torch.Generator,
    latent_shape: Sequence[int],
    step_ranges: Sequence[tuple[int, int]],
    settings: LossSettings,
) -> LossDraws:
    """Draw t, the degradation steps (one per sample, from its sub-range), noise and dropout.

    `latent_shape` is one sample's (T, C, h, w); the batch is `len(step_ranges)` samples.
    """
    batch = len(step_ranges)
    uniform = torch.rand(batch, generator=generator)
    steps = torch.tensor(
        [int(torch.randint(lo, hi + 1, (1,), generator=generator)) for lo, hi in step_ranges]
    )
    noise = torch.randn((batch, *latent_shape), generator=generator)
    keep = torch.rand(batch, generator=generator) >= settings.caption_dropout
    return LossDraws(uniform, steps, noise, keep)


def degrade_latent(z: torch.Tensor, steps: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z_LR = a z + sqrt(1 - a^2) eps per sample, a from the shift-1.0 table (spec §5.2)."""
    a = torch.tensor([degradation_coefficient(int(s)) for s in steps], dtype=torch.float32)
    a = a.to(z.device).view(-1, *([1] * (z.ndim - 1)))
    return a * z.float() + (1 - a * a).sqrt() * noise.to(z.device).float()


def interpolate(z_lr: torch.Tensor, z_hr: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) z_LR + t z_HR, t (B,) broadcast over (B, T, C, h, w)."""
    t = t.to(z_lr.device).view(-1, *([1] * (z_lr.ndim - 1)))
    return (1 - t) * z_lr + t * z_hr


def drop_captions(context: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Zero the (B, L, D) context of the samples `keep` marks False (the zero uncond, pitfall 3)."""
    return torch.where(keep.to(context.device).view(-1, 1, 1), context, torch.zeros_like(context))


@dataclass(frozen=True)
class LossInputs:
    """What the network is fed for one batch, and what it should predict."""

    x_t: torch.Tensor  # (B, T, C, h, w)
    timestep_index: torch.Tensor  # (B,) float32, 1000 - 1000 t
    context: torch.Tensor  # (B, L, D), dropped captions zeroed
    num_frames: torch.Tensor  # (B,) latent frame count
    ref_step: torch.Tensor  # (B,) degradation step as the embedding receives it
    target: torch.Tensor  # (B, T, C, h, w) float32, z_HR - z_LR


def loss_inputs(
    z_hr: torch.Tensor,
    z_degraded: torch.Tensor,
    context: torch.Tensor,
    draws: LossDraws,
    settings: LossSettings,
) -> LossInputs:
    """The network inputs and the velocity target for HR latents and their degraded copies.

    Args:
        z_hr: scaled HR latents (B, T, C, h, w).
        z_degraded: scaled latents of the pixel-degraded copies (B, T, C, h, w), before the
            latent degradation.
        context: T5 states (B, L, D).
        draws: this batch's random draws (`draw_loss`).
        settings: the loss's knobs.
    """
    z_hr = z_hr.float()
    z_lr = degrade_latent(z_degraded, draws.steps, draws.noise)
    t = flow_time(draws.uniform, settings)
    batch, frames = z_hr.shape[:2]
    refs = [ref_step_embedding_value(int(s), rounding=settings.rounding) for s in draws.steps]
    return LossInputs(
        x_t=interpolate(z_lr, z_hr, t),
        timestep_index=timestep_indices(t, rounding=settings.rounding).to(z_hr.device),
        context=drop_captions(context, draws.keep_caption),
        num_frames=torch.full((batch,), float(frames), device=z_hr.device),
        ref_step=torch.tensor(refs, dtype=torch.float32, device=z_hr.device),
        target=z_hr - z_lr,
    )


def velocity_loss(velocity: Velocity, inputs: LossInputs) -> torch.Tensor:
    """mean((v - (z_HR - z_LR))^2) over every element of the batch, in float32."""
    v = velocity(
        inputs.x_t, inputs.timestep_index, inputs.context, inputs.num_frames, inputs.ref_step
    )
    return (v.float() - inputs.target).pow(2).mean()


def reset_stage2_embeddings(dit: torch.nn.Module) -> torch.nn.Module:
    """Initialise the two stage-II embeddings as the original did before training (spec §3.3).

    The frame-count MLP is zeroed whole and the degradation-step MLP's last linear, so both add
    nothing to the time embedding until training moves them. Returns `dit`, changed in place.
    """
    frames, ref = getattr(dit, "frames_embed", None), getattr(dit, "ref_step_embed", None)
    if frames is None or ref is None:
        raise BadInput("this DiT has no stage-II embeddings to reset (a stage-I model?)")
    with torch.no_grad():
        for parameter in frames.parameters():
            parameter.zero_()
        ref.fc2.weight.zero_()
        ref.fc2.bias.zero_()
    return dit
