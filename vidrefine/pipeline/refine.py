"""Stage II over one planned clip: windows are encoded, degraded, sampled with their overlap
fused to the previous window, decoded, cross-faded and streamed out (spec §5, docs/pipeline.md).

The `ClipPlan` decides geometry, windows, VAE tiles, guidance batching and output timing; this
module only reads it. `ClipRefiner.stream` yields output frames (for callers holding frames in
memory); `refine_stream` and `refine_file` write them to a file with resumable windows, tagged
with the job's resume key so that rerunning a finished job skips it (`finished_output`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidrefine.config import RunConfig
from vidrefine.errors import is_disk_full
from vidrefine.io.atomic import output_disk_full, temp_bytes
from vidrefine.io.probe import MediaInfo
from vidrefine.io.reader import read_chunks
from vidrefine.io.writer import JOB_TAG, VideoWriter
from vidrefine.pipeline.jobs import JobResult, RefineJob, file_job_key, finished_output
from vidrefine.pipeline.loading import StageTwoModels
from vidrefine.pipeline.resume import JobStore, resume_key
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
from vidrefine.quality.colorfix import apply_color_fix
from vidrefine.quality.marks import plan_tags
from vidrefine.runtime.device import peak_memory_bytes
from vidrefine.runtime.prefetch import BackgroundWriter, prefetch
from vidrefine.sampling.samplers import sample_euler
from vidrefine.sampling.timesteps import shifted_grid

__all__ = [
    "ClipRefiner",
    "JobResult",
    "RefineJob",
    "WindowCarry",
    "file_job_key",
    "finished_output",
]

READ_CHUNK_FRAMES = 16
Chunks = Iterable[tuple[np.ndarray, np.ndarray]]  # (frames (T, H, W, 3), pts (T,)) pieces


@dataclass
class WindowCarry:
    """What one window hands to the next: the overlap trajectory and the decoded tail frames."""

    trajectory: torch.Tensor | None = None  # (steps + 1, B, O, C, h, w) latent states
    tail: np.ndarray | None = None  # (overlap_frames, H, W, 3) uint8


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
            key = self.job_key(job.identity(plan), plan)
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
        if self.config.background_io:  # decode ahead (the writer encodes behind)
            chunks = prefetch(chunks, depth=1)
        pieces = self.stream(chunks, plan, job.shot_captions(plan), store=store, result=result)
        self.write_pieces(
            pieces, job, plan, result, key=key, audio_from=audio_from, overwrite=overwrite
        )
        store.clear()
        result.peak_memory_bytes = peak_memory_bytes(self.models.device)
        return result

    def write_pieces(
        self,
        pieces: Iterable[tuple[np.ndarray, np.ndarray]],
        job: RefineJob,
        plan: ClipPlan,
        result: JobResult,
        *,
        key: str,
        audio_from: Path | None,
        overwrite: bool,
    ) -> None:
        """Write refined (frames, pts) `pieces` into `job.output`, tagged `key`, atomically.

        A full disk raises DiskFull with the size written so far; nothing is left behind.
        """
        writer = self._writer(job.output, plan, audio_from, overwrite, key)
        if self.config.background_io:  # encode behind
            writer = BackgroundWriter(writer)
        written = 0  # bytes of the temporary output so far, for a full disk's message
        try:
            with writer:
                for frames, pts in pieces:
                    with _timed(result, "write"):
                        writer.write(frames, pts)
                    written = max(written, temp_bytes(job.output))
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise output_disk_full(job.output, written, exc) from exc

    def stream(
        self,
        chunks: Chunks,
        plan: ClipPlan,
        caption: str | Sequence[str],
        *,
        store: JobStore | None = None,
        result: JobResult | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the refined clip as (uint8 frames (T, H, W, 3), pts) pieces, in order.

        `caption`: one for the whole clip, or one per shot of `plan` (window segment). Windows
        fuse and cross-fade only within a shot: the carry starts afresh at each shot.
        """
        captions = [caption] if isinstance(caption, str) else list(caption)
        result = result or JobResult(RefineJob(Path(), Path(), captions[0]), plan)
        carry = WindowCarry()
        total, seen = len(plan.windows), 0
        with self.progress.task("windows", total=total, unit="window") as bar:
            for window in slice_windows(chunks, plan.windowing, plan.windows):
                context = self.window_context(window, captions)
                frames = self.refine_window(window, plan, context, store, carry, result)
                yield self.emit(window, frames, plan, carry, result)
                if window.is_last:  # the shot ends: the next one fuses with nothing before it
                    carry = WindowCarry()
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

    def window_context(self, window: WindowFrames, captions: Sequence[str]) -> torch.Tensor:
        """The T5 states of `window`'s caption: its shot's (the last caption past the end)."""
        text = captions[min(window.segment, len(captions) - 1)]
        return self.embeddings(stage2_caption(self.config, text))

    def refine_window(
        self,
        window: WindowFrames,
        plan: ClipPlan,
        context: torch.Tensor,
        store: JobStore | None,
        carry: WindowCarry,
        result: JobResult,
        share: Callable[[int, torch.Tensor], None] | None = None,
    ) -> np.ndarray:
        """Latents for `window` (reused or sampled), decoded to uint8 output frames.

        `carry.trajectory` is what the overlap fuses with (indexed by state); `share` receives
        each overlap state this window hands on as it is made (`pipeline.lockstep`).
        """
        saved = store.load_window(window.index) if store is not None else None
        if saved is not None:
            latents, trajectory = saved["latents"], saved["trajectory"]
            result.reused_windows += 1
            self.progress.info(f"window {window.index + 1}: reused from an earlier run")
        else:
            with _timed(result, "encode"):
                start = self._start_state(window, plan)
            with _timed(result, "sample"):
                latents, trajectory = self._sample(start, context, plan, carry.trajectory, share)
            if store is not None:
                store.save_window(window.index, {"latents": latents, "trajectory": trajectory})
        carry.trajectory = trajectory.to(self.models.device)
        with _timed(result, "decode"):
            latents = latents.to(self.models.device)
            frames = decode_to_frames(self.models, latents, plan.geometry, plan.vae)
        if self.config.color_fix == "none":
            return frames
        with _timed(result, "color_fix"):  # the window's input is the colour reference
            return apply_color_fix(self.config.color_fix, frames, window.frames)

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
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        plan: ClipPlan,
        previous: Sequence[torch.Tensor] | None,
        share: Callable[[int, torch.Tensor], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Integrate the flow from the degraded latent, fusing the overlap with the last window.

        `previous[i]` is the last window's overlap at state i; `share(i, tail)` gets this one's.
        """
        cfg, overlap = self.config, plan.windowing.overlap_latent
        t_grid = shifted_grid(cfg.steps, cfg.shift, rounding=cfg.timestep_rounding)
        velocity = guided_velocity(
            self.models, cfg, context, num_latent=x.shape[1], cfg_batched=plan.memory.cfg_batched
        )
        fuse = overlap_fuser(plan.windowing, previous)
        states: list[torch.Tensor] = []

        def keep(state: torch.Tensor) -> None:
            states.append(state[:, -overlap:].detach().cpu())
            if share is not None:
                share(len(states) - 1, states[-1])

        def on_step(index: int, t_next: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
            state = fuse(index + 1, state)
            keep(state)
            bar.advance()
            return state

        x = fuse(0, x)
        keep(x)
        with torch.no_grad(), self.progress.task("steps", total=cfg.steps, unit="step") as bar:
            x = sample_euler(velocity, x, t_grid.to(x.device), callback=on_step)
        return x.detach().cpu(), torch.stack(states)

    def emit(
        self, window: WindowFrames, frames: np.ndarray, plan: ClipPlan, carry: WindowCarry, result
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
            metadata={JOB_TAG: key, **plan_tags(plan)},  # marks for `vidrefine compare`
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
