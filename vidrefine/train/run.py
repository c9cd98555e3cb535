"""`vidrefine tune train`: a run from a cache to a tuned adapter, on one process or many.

The order: read the cache and the run folder, plan memory from the weight file's shapes (a run
that cannot fit stops before loading), load the base DiT, make it trainable, wrap it for
torchrun (DDP for LoRA, FSDP2 `fully_shard` for full fine-tuning), continue from the newest
checkpoint when resuming, then step: log, validate, checkpoint. Ctrl-C and SIGTERM finish the
current step, save a checkpoint and stop (`TrainingStopped`).
"""

from __future__ import annotations

import dataclasses
import gc
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidrefine.errors import BadCheckpoint, BadInput, Interrupted
from vidrefine.progress import NullProgress, Progress
from vidrefine.runtime.distributed import RankInfo, barrier, init_distributed
from vidrefine.train.cache import TrainCache
from vidrefine.train.checkpoint import RunFolder, write_json
from vidrefine.train.loop import (
    TrainSettings,
    make_optimizer,
    make_schedule,
    rank_slots,
    slot_loss,
    split_windows,
    train_step,
)
from vidrefine.train.memory import TrainingMemory, plan_training_memory
from vidrefine.train.metrics import plot_losses, progress_line, validation_loss
from vidrefine.train.model import TrainableDiT, make_trainable, velocity_of
from vidrefine.train.output import write_outputs
from vidrefine.train.ranks import all_mean, all_steps, any_rank, restore, state_of, wrap_for_ranks


@dataclass(frozen=True)
class RunOptions:
    """How a run is watched and kept; none of it changes the numbers."""

    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    validate_every: int = 0  # 0: at every checkpoint
    log_every: int = 10
    resume: bool = False
    vram_gb: float | None = None


@dataclass(frozen=True)
class RunResult:
    """What a run did."""

    folder: Path
    start_step: int
    step: int
    loss: float | None
    output: Path | None
    memory: TrainingMemory


PLOT_EVERY_S = 60.0  # loss.png is redrawn at a checkpoint when it is older than this


class TrainingStopped(Interrupted):
    """Ctrl-C or SIGTERM stopped a run after it saved a checkpoint."""

    def __init__(self, message: str, signum: int) -> None:
        """`signum` is the signal that stopped the run."""
        super().__init__(message)
        self.signum = signum


class _Stop:
    signum: int | None = None


@contextmanager
def stop_on_signals() -> Iterator[_Stop]:
    """While training, SIGINT and SIGTERM only ask the loop to stop after the current step."""
    stop = _Stop()

    def ask(signum: int, _frame: Any) -> None:
        stop.signum = stop.signum or signum

    try:
        previous = {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals cannot be caught here
        yield stop
        return
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def settings_record(settings: TrainSettings) -> dict[str, Any]:
    """The settings a resumed run must share (all but the number of steps)."""
    record = dataclasses.asdict(settings)
    record.pop("steps")
    return record


def describe_run(settings: TrainSettings, cache: TrainCache, stage2: Path) -> dict[str, Any]:
    """run.json's content: what the run trains, from what."""
    return {
        "settings": settings_record(settings),
        "cache": {"path": str(cache.folder.resolve()), "key": cache.key},
        "base": {"path": str(stage2.resolve()), "fingerprint": None},
    }


def check_resumable(described: dict[str, Any], settings: TrainSettings, cache: TrainCache) -> None:
    """BadInput unless the run in RUN was started with these settings on this cache."""
    saved, now = _flat(described["settings"]), _flat(_jsonable(settings_record(settings)))
    differ = sorted(k for k in now if now[k] != saved.get(k))
    if differ:
        shown = "; ".join(f"{k} was {saved.get(k)}, now {now[k]}" for k in differ)
        raise BadInput(f"--resume with other settings than the run's ({shown}); use the run's")
    if described["cache"]["key"] != cache.key:
        raise BadInput(f"--resume on another cache than the run's ({described['cache']['path']})")


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"rank": 8}} -> {"model.rank": 8}."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def plan_memory(
    stage2: Path,
    cache: TrainCache,
    train: list[int],
    settings: TrainSettings,
    options: RunOptions,
    device: torch.device,
    world_size: int,
) -> TrainingMemory:
    """The memory plan, from the weight file's shapes (no weights read) and the longest window."""
    from vidrefine.checkpoints.dit import read_dit_weights
    from vidrefine.plan.memory import dit_tokens

    config = read_dit_weights(stage2).config  # memory-mapped: shapes only
    tokens = max(
        dit_tokens(cache.latent_shape(i)[0], cache.latent_shape(i)[2:], config) for i in train
    )
    budget = options.vram_gb
    if budget is None and device.type == "cuda":
        budget = torch.cuda.get_device_properties(device).total_memory / 1024**3
    return plan_training_memory(
        config,
        tokens,
        settings.model,
        device_kind=device.type,
        world_size=world_size,
        budget_gb=budget,
    )


def load_base(stage2: Path, settings: TrainSettings, device: torch.device) -> TrainableDiT:
    """The stage-II DiT from `stage2`, trainable (bf16 base on a GPU, fp32 on the CPU)."""
    from vidrefine.checkpoints.dit import load_dit

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    dit = load_dit(stage2, None, dtype=dtype, device=device, stage=2)
    return make_trainable(dit, settings.model, seed=settings.seed)


class Trainer:
    """A run in progress: the model, its optimizer, where it is, and where it writes."""

    def __init__(
        self,
        run: RunFolder,
        cache: TrainCache,
        settings: TrainSettings,
        options: RunOptions,
        trainable: TrainableDiT,
        place: RankInfo,
        device: torch.device,
        progress: Progress,
    ) -> None:
        """Wrap the model for the ranks and build the optimizer (nothing is trained yet)."""
        self.run, self.cache, self.settings, self.options = run, cache, settings, options
        self.trainable, self.place, self.device, self.progress = trainable, place, device, progress
        self.split = split_windows(len(cache), settings.val_windows, settings.seed)
        self.model = wrap_for_ranks(trainable, place, device)
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.parameters, settings)
        self.schedule = make_schedule(self.optimizer, settings)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        self.velocity = velocity_of(self.model, device, dtype)
        self.eval_velocity = velocity_of(getattr(self.model, "module", self.model), device, dtype)
        self.step, self.position, self.loss = 0, 0, None
        self.plotted = -PLOT_EVERY_S  # the first checkpoint draws it

    def resume(self) -> None:
        """Continue from the newest complete checkpoint, exactly where it stopped."""
        self.run.remove_partial()
        latest = self.run.latest()
        if latest is None:
            return
        weights, saved, state = self.run.load(latest)
        restore(self.model, self.optimizer, weights, saved["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(saved["rng"]["torch"])
        self.step, self.position = state["step"], state["position"]
        if self.place.is_main:
            self.run.truncate_metrics(self.step)
        self.progress.info(f"resuming {self.run.folder} at step {self.step}")

    def save(self) -> None:
        """Checkpoint this step (every rank gathers; rank 0 writes), then the adapter."""
        weights, optimizer = state_of(self.model, self.optimizer)
        if self.place.is_main:
            state = {"position": self.position, "schedule": self.schedule.state_dict()}
            saved = {"optimizer": optimizer, "rng": {"torch": torch.get_rng_state()}}
            self.run.save(self.step, weights, saved, state, self.options.keep_checkpoints)
            write_outputs(self.run.folder, self.trainable, weights)
        barrier()

    def plot(self, *, final: bool = False) -> None:
        """Redraw loss.png: at the end, and at checkpoints at most every PLOT_EVERY_S seconds."""
        if not final and time.monotonic() - self.plotted < PLOT_EVERY_S:
            return
        plot_losses(self.run.read_metrics(), self.run.folder / "loss.png")
        self.plotted = time.monotonic()

    def one_step(self) -> float:
        """Train one step; record its metrics; returns its loss (mean over the ranks)."""
        started = time.perf_counter()
        slots = rank_slots(self.position, self.settings, self.place.rank, self.place.world_size)

        def losses(slot):  # noqa: ANN001, ANN202
            return slot_loss(
                self.velocity, self.cache, self.split.train, slot, self.settings, self.device
            )

        no_sync = getattr(self.model, "no_sync", None)
        result = train_step(
            self.model,
            self.parameters,
            self.optimizer,
            self.schedule,
            losses,
            slots,
            self.settings,
            no_sync,
        )
        self.step += 1
        self.position += self.settings.accumulate * self.place.world_size
        self.loss = all_mean(result.loss, self.device)
        steps = all_steps(result.degradation_steps, self.device)
        record = {
            "step": self.step,
            "loss": self.loss,
            "lr": result.lr,
            "grad_norm": result.grad_norm,
            "step_s": time.perf_counter() - started,
            "degradation_steps": steps,
        }
        if self.place.is_main:
            self.run.append_metrics(record)
        return record["step_s"]

    def validate(self) -> None:
        """Score the held-out windows; every rank computes it (FSDP needs them all)."""
        if not self.split.val:
            return
        value = validation_loss(
            self.eval_velocity, self.cache, self.split.val, self.settings.loss, self.device
        )
        if self.place.is_main:
            self.run.append_metrics({"step": self.step, "val_loss": value})
        self.progress.info(f"step {self.step}: validation loss {value:.4f}")

    def due(self, every: int) -> bool:
        """True on steps that are multiples of `every` and on the last step."""
        return self.step == self.settings.steps or (every > 0 and self.step % every == 0)

    def loop(self) -> None:
        """Step until `steps`; stop cleanly (checkpoint first) on Ctrl-C or SIGTERM."""
        total, options = self.settings.steps, self.options
        with (
            stop_on_signals() as stop,
            self.progress.task("training", total=total, unit="steps") as bar,
        ):
            bar.advance(self.step)
            while self.step < total:
                step_s = self.one_step()
                bar.advance()
                if self.step % options.log_every == 0 or self.step == total:
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.progress.info(progress_line(self.step, total, self.loss, lr, step_s))
                if self.due(options.validate_every or options.checkpoint_every):
                    self.validate()
                stopping = any_rank(stop.signum is not None, self.device)
                if self.due(options.checkpoint_every) or stopping:
                    self.save()
                    if self.place.is_main:
                        self.plot(final=stopping or self.step == total)
                if stopping and self.step < total:
                    raise TrainingStopped(
                        f"interrupted at step {self.step}: saved {self.run.checkpoints}; "
                        "continue with --resume",
                        stop.signum or signal.SIGINT,
                    )


def train(
    cache_dir: str | Path,
    run_dir: str | Path,
    settings: TrainSettings,
    options: RunOptions,
    *,
    stage2: Path,
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Train (or continue) the run in `run_dir` on the cache in `cache_dir` up to `steps` steps.

    Raises:
        BadInput: not a cache, --resume without a run or with other settings.
        OutputExists: a new run's folder holds anything.
        DoesNotFit: the memory plan exceeds the device (before any weight is read).
        BadCheckpoint: the base model is not the one the resumed run started from.
        TrainingStopped: Ctrl-C or SIGTERM, after a checkpoint was saved.
    """
    progress = progress or NullProgress()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    place = init_distributed(device.type)
    cache, run = TrainCache(cache_dir), RunFolder(run_dir)
    split = split_windows(len(cache), settings.val_windows, settings.seed)
    memory = plan_memory(stage2, cache, split.train, settings, options, device, place.world_size)
    if options.resume:
        described = run.description()
        check_resumable(described, settings, cache)
    elif place.is_main:
        described = describe_run(settings, cache, stage2)
        run.create(described)
    barrier()
    described = run.description()
    progress.info(f"memory plan: {memory.line()}")
    trainable = load_base(stage2, settings, device)
    _check_base(run, described, trainable, place)
    trainer = Trainer(run, cache, settings, options, trainable, place, device, progress)
    if options.resume:
        trainer.resume()
    start = trainer.step
    if start >= settings.steps:
        progress.info(f"{run.folder} is at step {start} already; nothing to train")
    try:
        trainer.loop()
    finally:
        step, loss = trainer.step, trainer.loss
        del trainer, trainable  # DDP's reducer holds the process group until it is collected
        gc.collect()
    output = _output_path(run.folder, settings.model.full)
    return RunResult(run.folder, start, step, loss, output, memory)


def _check_base(
    run: RunFolder, described: dict[str, Any], trainable: TrainableDiT, place: RankInfo
) -> None:
    """Record the base model's fingerprint, or check that a resumed run's is unchanged."""
    saved = described["base"].get("fingerprint")
    if saved is None:
        if place.is_main:
            described["base"]["fingerprint"] = trainable.base_fingerprint
            write_json(run.folder / "run.json", described)
        return
    if saved != trainable.base_fingerprint:
        raise BadCheckpoint(
            f"{run.folder} was trained from another base model (fingerprint {saved}, this "
            f"stage2's is {trainable.base_fingerprint}); resume with the weights it started from"
        )


def _output_path(folder: Path, full: bool) -> Path | None:
    from vidrefine.train.output import ADAPTER_FILE, FULL_FILE

    path = folder / (FULL_FILE if full else ADAPTER_FILE)
    return path if path.is_file() else None
