"""A run in progress (`Trainer`): the wrapped model, its optimizer and schedule, the step loop
with its logging, validation, previews and checkpoints, and the clean stop on Ctrl-C/SIGTERM.
`run.train` builds one and drives it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidrefine.errors import BadInput, Interrupted
from vidrefine.pipeline.loading import StageTwoModels
from vidrefine.progress import Progress
from vidrefine.runtime.distributed import RankInfo, barrier
from vidrefine.train.cache import TrainCache
from vidrefine.train.checkpoint import RunFolder
from vidrefine.train.loop import (
    TrainSettings,
    make_optimizer,
    make_schedule,
    rank_slots,
    slot_loss,
    split_windows,
    train_step,
)
from vidrefine.train.metrics import plot_losses, progress_line, validation_loss
from vidrefine.train.model import TrainableDiT, velocity_of
from vidrefine.train.output import write_outputs
from vidrefine.train.preview import (
    PreviewFrames,
    preview_config,
    refine_latent,
    write_preview,
)
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
    val_report: bool = False  # refine a held-out window at validation (RUN/previews/)

    def __post_init__(self) -> None:
        """Refuse counts the loop cannot use."""
        if self.log_every < 1:
            raise BadInput(f"--log-every {self.log_every}: log at least every N >= 1 steps")
        for flag, value in (
            ("--checkpoint-every", self.checkpoint_every),
            ("--keep", self.keep_checkpoints),
            ("--validate-every", self.validate_every),
        ):
            if value < 0:
                raise BadInput(f"{flag} {value}: not a count of steps (0 or more)")


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
        self.dtype = dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        self.velocity = velocity_of(self.model, device, dtype)
        self.eval_velocity = velocity_of(getattr(self.model, "module", self.model), device, dtype)
        self.step, self.position, self.loss = 0, 0, None
        self.previews: StageTwoModels | None = None
        self.preview_frames: PreviewFrames | None = None  # decoded once, on rank 0
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

    def enable_previews(self, vae_path: Path) -> None:
        """Load the VAE (rank 0 decodes) so that validation also writes a preview and report."""
        from vidrefine.checkpoints.vae import load_vae

        vae = (
            load_vae(vae_path, dtype=self.dtype, device=self.device) if self.place.is_main else None
        )
        dit = getattr(self.model, "module", self.model)
        self.previews = StageTwoModels(vae, dit, self.device, self.dtype, self.dtype)

    def preview(self) -> None:
        """A 4-step refine of the first held-out window: RUN/previews/step-N/ and its PSNR.

        Step 0 (the base model, before tuning) writes the clips only; later steps also the
        compare report of the refined clip against the HR one.
        """
        if self.previews is None or not self.split.val:
            return
        window = self.cache.window(self.split.val[0])
        refined = refine_latent(self.previews, preview_config(), window)  # every rank (FSDP)
        if self.place.is_main:
            folder = self.run.folder / "previews" / f"step-{self.step:06d}"
            if self.preview_frames is None:
                self.preview_frames = PreviewFrames.of(self.previews, window)
            frames = self.preview_frames
            psnr = write_preview(self.previews, frames, refined, folder, report=self.step > 0)
            self.run.append_metrics({"step": self.step, "preview_psnr": psnr})
            self.progress.info(f"step {self.step}: preview PSNR {psnr:.2f} dB ({folder})")

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
        self.preview()

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
