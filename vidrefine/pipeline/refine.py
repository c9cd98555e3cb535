"""Stage II over one planned clip: windows are encoded, degraded, sampled with their overlap
fused to the previous window, decoded, cross-faded and streamed out (spec §5, docs/pipeline.md).

The `ClipPlan` decides geometry, windows, VAE tiles, guidance batching and output timing; this
module only reads it. `ClipRefiner.stream` yields output frames (for callers holding frames in
memory); `refine_stream` and `refine_file` write them to a file with resumable windows, tagged
with the job's resume key so that rerunning a finished job skips it (`finished_output`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vidrefine.config import RunConfig
from vidrefine.errors import OutputExists, is_disk_full
from vidrefine.io.atomic import output_disk_full, temp_bytes
from vidrefine.io.probe import MediaInfo
from vidrefine.io.reader import read_chunks
from vidrefine.io.writer import JOB_TAG, VideoWriter, job_tag
from vidrefine.pipeline.loading import StageTwoModels
from vidrefine.pipeline.resume import JobStore, file_identity, resume_key
from vidrefine.pipeline.steps import (
    crossfade,
    decode_to_frames,
    degraded_start,
    frames_to_model_input,
    guided_velocity,
    overlap_fuser,
    stage2_caption,
)
from vidrefine.plan.clip import ClipPlan
from vidrefine.plan.windows import FRAMES_PER_LATENT, WindowFrames, slice_windows
from vidrefine.progress import NullProgress, Progress
from vidrefine.runtime.device import peak_memory_bytes, torch_dtype
from vidrefine.runtime.prefetch import BackgroundWriter, prefetch
from vidrefine.sampling.samplers import sample_euler
from vidrefine.sampling.timesteps import shifted_grid

READ_CHUNK_FRAMES = 16
Chunks = Iterable[tuple[np.ndarray, np.ndarray]]  # (frames (T, H, W, 3), pts (T,)) pieces


@dataclass(frozen=True)
class RefineJob:
    """One clip to refine: where from, where to, and its caption."""

    input: Path
    output: Path
    caption: str


@dataclass
class JobResult:
    """What happened to one job (for the summary table).

    `skipped`: the output was already there, made by the same job (a rerun of a finished
    command); nothing was refined or written, and `frames` is 0.
    """

    job: RefineJob
    plan: ClipPlan
    frames: int = 0
    reused_windows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    peak_memory_bytes: int = 0
    skipped: bool = False

    @property
    def windows(self) -> int:
        """Windows planned for the clip."""
        return len(self.plan.windows)

    @property
    def output_hw(self) -> tuple[int, int]:
        """Size of the written frames."""
        return self.plan.geometry.output_hw


@dataclass
class _Carry:
    """What one window hands to the next: the overlap trajectory and the decoded tail frames."""

    trajectory: torch.Tensor | None = None  # (steps + 1, B, O, C, h, w) latent states
    tail: np.ndarray | None = None  # (overlap_frames, H, W, 3) uint8


def file_job_key(config: RunConfig, job: RefineJob, plan: ClipPlan, weights_identity: dict) -> str:
    """The resume key of a file job, with the precisions its plan places the models in.

    Equal to `ClipRefiner.job_key` of the same job on models loaded as `plan.models` says, but
    known before any model is loaded.
    """
    identity = {"input": file_identity(job.input), "caption": job.caption}
    dtypes = (torch_dtype(plan.models.dtype), torch_dtype(plan.models.vae_dtype))
    return resume_key(config, identity, plan, weights_identity, dtypes)


def finished_output(
    job: RefineJob, plan: ClipPlan, key: str, *, overwrite: bool, progress: Progress
) -> JobResult | None:
    """A skipped result when `job.output` was made by this very job (its tag is `key`).

    None when there is nothing to skip: no output yet, or `overwrite`. An existing output made
    by another job (other settings, input, caption or weights) or not by vidrefine at all raises
    OutputExists.
    """
    if overwrite or not job.output.exists():
        return None
    tag = job_tag(job.output)
    if tag == key:
        progress.info(f"{job.output.name}: already done with these settings, skipped")
        return JobResult(job, plan, skipped=True)
    made = "made with other settings (or input, caption or weights)" if tag else "already exists"
    raise OutputExists(
        f"{job.output}: {made}; pass --overwrite (overwrite=True in Python) to replace it"
    )


class ClipRefiner:
    """Stage II over loaded models: one planned clip at a time, streamed in and out."""

    def __init__(
        self,
        models: StageTwoModels,
        config: RunConfig,
        embeddings: Callable[[str], torch.Tensor],
        *,
        progress: Progress | None = None,
        weights_identity: dict | None = None,
    ) -> None:
        self.models = models
        self.config = config
        self.embeddings = embeddings  # caption -> (1, L, text_dim) T5 states (cached upstream)
        self.progress = progress or NullProgress()
        self.weights_identity = weights_identity or {}

    def refine_file(
        self,
        job: RefineJob,
        plan: ClipPlan,
        info: MediaInfo,
        *,
        overwrite: bool = False,
        resume: bool = True,
        key: str | None = None,
    ) -> JobResult:
        """Refine the probed `job.input` into `job.output` (checked when the job was planned).

        An existing output made by this same job is skipped (`finished_output`); `key` is the
        job's resume key when the caller has it already.
        """
        if key is None:
            key = self.job_key({"input": file_identity(job.input), "caption": job.caption}, plan)
        done = finished_output(job, plan, key, overwrite=overwrite, progress=self.progress)
        if done is not None:
            return done
        reader = read_chunks(job.input, READ_CHUNK_FRAMES, info=info)
        chunks = ((c.frames, c.pts) for c in reader)
        return self.refine_stream(
            chunks, plan, job, key=key, audio_from=job.input, overwrite=overwrite, resume=resume
        )

    def refine_stream(
        self,
        chunks: Chunks,
        plan: ClipPlan,
        job: RefineJob,
        *,
        key: str,
        audio_from: Path | None = None,
        overwrite: bool = False,
        resume: bool = True,
    ) -> JobResult:
        """Refine streamed chunks into `job.output`; finished windows are kept under `key`, and
        the output carries `key` as its `JOB_TAG`.

        Without `overwrite` an output that appeared since the job was checked is not replaced.
        """
        store = JobStore(key, warn=self.progress.warn)
        if not resume:
            store.clear()
        result = JobResult(job, plan)
        writer = self._writer(job.output, plan, audio_from, overwrite, key)
        if self.config.background_io:  # decode ahead, encode behind
            chunks, writer = prefetch(chunks, depth=1), BackgroundWriter(writer)
        written = 0  # bytes of the temporary output so far, for a full disk's message
        try:
            with writer:
                for frames, pts in self.stream(
                    chunks, plan, job.caption, store=store, result=result
                ):
                    with _timed(result, "write"):
                        writer.write(frames, pts)
                    written = max(written, temp_bytes(job.output))
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise output_disk_full(job.output, written, exc) from exc
        store.clear()
        result.peak_memory_bytes = peak_memory_bytes(self.models.device)
        return result

    def stream(
        self,
        chunks: Chunks,
        plan: ClipPlan,
        caption: str,
        *,
        store: JobStore | None = None,
        result: JobResult | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the refined clip as (uint8 frames (T, H, W, 3), pts) pieces, in order."""
        result = result or JobResult(RefineJob(Path(), Path(), caption), plan)
        context = self.embeddings(stage2_caption(self.config, caption))
        carry = _Carry()
        total, seen = len(plan.windows), 0
        with self.progress.task("windows", total=total, unit="window") as bar:
            for window in slice_windows(chunks, plan.windowing):
                frames = self._window(window, plan, context, store, carry, result)
                yield self._emit(window, frames, plan, carry, result)
                seen += 1
                bar.advance()
        if seen != total:
            self.progress.warn(
                f"the clip held {seen} windows of frames where {total} were planned "
                "(the probe's frame count was off); every frame was refined"
            )

    def job_key(self, identity: dict, plan: ClipPlan) -> str:
        """Resume key (`resume_key`) of `identity` (input and caption) on these models."""
        dtypes = (self.models.dtype, self.models.vae_dtype)
        return resume_key(self.config, identity, plan, self.weights_identity, dtypes)

    def _window(
        self,
        window: WindowFrames,
        plan: ClipPlan,
        context: torch.Tensor,
        store: JobStore | None,
        carry: _Carry,
        result: JobResult,
    ) -> np.ndarray:
        """Latents for `window` (reused or sampled), decoded to uint8 output frames."""
        saved = store.load_window(window.index) if store is not None else None
        if saved is not None:
            latents, trajectory = saved["latents"], saved["trajectory"]
            result.reused_windows += 1
            self.progress.info(f"window {window.index + 1}: reused from an earlier run")
        else:
            with _timed(result, "encode"):
                start = self._start_state(window, plan)
            with _timed(result, "sample"):
                latents, trajectory = self._sample(start, context, plan, carry.trajectory)
            if store is not None:
                store.save_window(window.index, {"latents": latents, "trajectory": trajectory})
        carry.trajectory = trajectory.to(self.models.device)
        with _timed(result, "decode"):
            latents = latents.to(self.models.device)
            return decode_to_frames(self.models, latents, plan.geometry, plan.vae)

    def _start_state(self, window: WindowFrames, plan: ClipPlan) -> torch.Tensor:
        video = frames_to_model_input(window.frames, plan.geometry, self.models.device)
        return degraded_start(
            self.models,
            self.config,
            video,
            plan.vae,
            window_index=window.index,
            first_latent=window.start_frame // FRAMES_PER_LATENT,
        )

    def _sample(
        self, x: torch.Tensor, context: torch.Tensor, plan: ClipPlan, previous: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Integrate the flow from the degraded latent, fusing the overlap with the last window."""
        cfg, overlap = self.config, plan.windowing.overlap_latent
        t_grid = shifted_grid(cfg.steps, cfg.shift, rounding=cfg.timestep_rounding)
        velocity = guided_velocity(
            self.models, cfg, context, num_latent=x.shape[1], cfg_batched=plan.memory.cfg_batched
        )
        fuse = overlap_fuser(plan.windowing, previous)
        states: list[torch.Tensor] = []

        def on_step(index: int, t_next: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
            state = fuse(index + 1, state)
            states.append(state[:, -overlap:].detach().cpu())
            bar.advance()
            return state

        x = fuse(0, x)
        states.append(x[:, -overlap:].detach().cpu())
        with torch.no_grad(), self.progress.task("steps", total=cfg.steps, unit="step") as bar:
            x = sample_euler(velocity, x, t_grid.to(x.device), callback=on_step)
        return x.detach().cpu(), torch.stack(states)

    def _emit(
        self, window: WindowFrames, frames: np.ndarray, plan: ClipPlan, carry: _Carry, result
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cross-fade the head with the previous tail; return what is final, keep the new tail."""
        windowing = plan.windowing
        if carry.tail is not None:  # `frames` is this window's own decode: blend in place
            crossfade(frames, carry.tail, windowing)
        keep = window.real if window.is_last else windowing.stride
        result.frames += keep
        carry.tail = None if window.is_last else frames[windowing.stride : windowing.frames].copy()
        if plan.timing.source_pts:
            pts = window.pts[:keep]
        else:  # the original's fixed rate: frame i at pts i
            pts = np.arange(window.start_frame, window.start_frame + keep, dtype=np.int64)
        return frames[:keep], pts

    def _writer(
        self, output: Path, plan: ClipPlan, audio_from: Path | None, overwrite: bool, key: str
    ) -> VideoWriter:
        cfg, timing = self.config, plan.timing
        return VideoWriter(
            output,
            size_hw=plan.geometry.output_hw,
            time_base=timing.time_base,
            fps=timing.fps,
            codec=cfg.codec,
            crf=cfg.crf,
            preset=cfg.encoder_preset,
            pix_fmt=cfg.pix_fmt,
            audio_from=audio_from if timing.copy_audio else None,
            overwrite=overwrite,
            on_warning=self.progress.warn,
            metadata={JOB_TAG: key},
        )


class _timed:
    """Add the wall time of a block to `result.seconds[phase]`."""

    def __init__(self, result: JobResult, phase: str) -> None:
        self.result, self.phase = result, phase

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        spent = time.perf_counter() - self.start
        self.result.seconds[self.phase] = self.result.seconds.get(self.phase, 0.0) + spent
