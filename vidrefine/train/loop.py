"""One optimisation step, and what decides it: the data order, the draws, the optimizer.

Every random number of a sample comes from a generator seeded by the run's seed and the
sample's global index (samples consumed so far + its slot in the step's global batch), and the
data order of each epoch from the seed and the epoch. So a step depends only on the weights,
the optimizer's state and the step number: a resumed run repeats an uninterrupted one exactly,
and a torchrun run with the same global batch draws what one process draws. The global batch
has slots rank * accumulate + micro; slot j of G takes the j-th of G disjoint sub-ranges of the
degradation steps (the original gives each rank its own sub-range).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from vidrefine.errors import BadInput
from vidrefine.pipeline.steps import stream_seed
from vidrefine.train.cache import TrainCache
from vidrefine.train.loss import LossSettings, draw_loss, loss_inputs, split_step_range
from vidrefine.train.loss import velocity_loss as loss_of
from vidrefine.train.model import ModelSettings

OPTIMIZERS = ("adamw", "adamw8bit")
_SEED_SPACING = 1_000_003  # global sample indices of one seed never reach the next seed's


@dataclass(frozen=True)
class TrainSettings:
    """Everything a run's numbers depend on; defaults are the paper's (batch aside)."""

    steps: int
    lr: float = 4e-5
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    warmup_steps: int = 0  # linear warm-up; the maintainers use a constant lr (issue #18)
    accumulate: int = 1  # micro-batches (one window each) per rank per step
    seed: int = 0
    optimizer: str = "adamw"
    val_windows: int = 0  # held-out windows, scored every `validate_every` steps
    loss: LossSettings = field(default_factory=LossSettings)
    model: ModelSettings = field(default_factory=ModelSettings)

    def __post_init__(self) -> None:
        """Refuse settings a run cannot use."""
        if self.steps < 1:
            raise BadInput(f"--steps {self.steps}: train at least one step")
        if self.accumulate < 1:
            raise BadInput(f"--accumulate {self.accumulate}: at least one micro-batch a step")
        if not 0 < self.lr < 1:
            raise BadInput(f"--lr {self.lr}: a learning rate between 0 and 1 (the paper's: 4e-5)")
        if self.val_windows < 0:
            raise BadInput(f"--val-windows {self.val_windows}: a count of windows (0 or more)")
        if self.optimizer not in OPTIMIZERS:
            raise BadInput(f"--optimizer {self.optimizer}: use one of {', '.join(OPTIMIZERS)}")


@dataclass(frozen=True)
class Split:
    """Which cached windows train and which are held out for validation."""

    train: list[int]
    val: list[int]


def split_windows(windows: int, val_windows: int, seed: int) -> Split:
    """Hold out `val_windows` windows chosen by the seed; the rest train."""
    if val_windows >= windows:
        raise BadInput(
            f"--val-windows {val_windows}: the cache holds {windows} windows; leave some to train"
        )
    order = torch.randperm(windows, generator=holdout_generator(seed)).tolist()
    return Split(train=sorted(order[val_windows:]), val=sorted(order[:val_windows]))


def holdout_generator(seed: int) -> torch.Generator:
    """The generator that picks the held-out windows: a hashed stream of its own
    (`stream_seed`), never one of the epochs' order streams (`order_generator`), which
    seed * spacing + epoch would be at epoch 0.
    """
    return torch.Generator().manual_seed(stream_seed(seed, "holdout", 0))


def order_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch `epoch`'s data order."""
    return torch.Generator().manual_seed(seed * _SEED_SPACING + epoch)


def window_of(train: Sequence[int], sample: int, seed: int) -> int:
    """The cached window of global sample `sample`: a fresh permutation every epoch."""
    epoch, position = divmod(sample, len(train))
    generator = order_generator(seed, epoch)
    return train[int(torch.randperm(len(train), generator=generator)[position])]


def sample_generator(seed: int, sample: int) -> torch.Generator:
    """The generator of every draw of global sample `sample`."""
    return torch.Generator().manual_seed((seed + 1) * _SEED_SPACING * 7919 + sample)


@dataclass(frozen=True)
class Slot:
    """One micro-batch of a step: its global sample index and its degradation sub-range."""

    sample: int
    step_range: tuple[int, int]


def rank_slots(position: int, settings: TrainSettings, rank: int, world_size: int) -> list[Slot]:
    """The slots `rank` computes in the step that starts at global sample `position`."""
    per_rank, total = settings.accumulate, settings.accumulate * world_size
    ranges = split_step_range(settings.loss.step_range, total)
    slots = range(rank * per_rank, (rank + 1) * per_rank)
    return [Slot(position + j, ranges[j]) for j in slots]


def slot_loss(
    velocity: Callable,
    cache: TrainCache,
    train: Sequence[int],
    slot: Slot,
    settings: TrainSettings,
    device: torch.device,
) -> tuple[torch.Tensor, int]:
    """The loss of one micro-batch (one window, one degraded copy) and its degradation step."""
    window = cache.window(window_of(train, slot.sample, settings.seed))
    generator = sample_generator(settings.seed, slot.sample)
    copy = int(torch.randint(len(window.degraded), (1,), generator=generator))
    draws = draw_loss(generator, window.hr.shape, [slot.step_range], settings.loss)
    inputs = loss_inputs(
        window.hr[None].to(device),
        window.degraded[copy][None].to(device),
        window.context[None].to(device),
        draws,
        settings.loss,
    )
    return loss_of(velocity, inputs), int(draws.steps[0])


def make_optimizer(
    parameters: list[nn.Parameter], settings: TrainSettings
) -> torch.optim.Optimizer:
    """AdamW (0.9, 0.95), weight decay 1e-4 (the paper's); 8-bit AdamW when asked and installed."""
    options = {"lr": settings.lr, "betas": settings.betas, "weight_decay": settings.weight_decay}
    if settings.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise BadInput(
                "--optimizer adamw8bit needs bitsandbytes (pip install bitsandbytes)"
            ) from None
        return bnb.optim.AdamW8bit(parameters, **options)
    return torch.optim.AdamW(parameters, foreach=False, **options)


def make_schedule(
    optimizer: torch.optim.Optimizer, settings: TrainSettings
) -> torch.optim.lr_scheduler.LRScheduler:
    """A constant lr (the maintainers'), after a linear warm-up of `warmup_steps`."""
    warmup = settings.warmup_steps

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) if warmup else 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class StepResult:
    """What one step measured (every rank's values are averaged or gathered by the caller)."""

    loss: float
    grad_norm: float
    lr: float
    degradation_steps: list[int]


def train_step(
    model: nn.Module,
    parameters: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    slot_losses: Callable[[Slot], tuple[torch.Tensor, int]],
    slots: list[Slot],
    settings: TrainSettings,
    no_sync: Callable[[], object] | None = None,
) -> StepResult:
    """Accumulate the gradients of `slots`, clip them to `grad_clip` and update once.

    `no_sync` (DDP's) skips the gradient all-reduce on every micro-batch but the last.
    """
    import contextlib

    total, steps = 0.0, []
    for number, slot in enumerate(slots):
        last = number == len(slots) - 1
        context = no_sync() if no_sync is not None and not last else contextlib.nullcontext()
        with context:
            loss, drawn = slot_losses(slot)
            (loss / len(slots)).backward()
        total += float(loss.detach()) / len(slots)
        steps.append(drawn)
    norm = torch.nn.utils.clip_grad_norm_(parameters, settings.grad_clip)
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    schedule.step()
    return StepResult(total, float(norm), lr, steps)
