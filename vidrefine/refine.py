"""Stage-II orchestration: probe, windows, resize, encode, degrade, sample, decode, write.

Behaviour per flashvideo-spec §5; the window fusion and aspect handling are vidrefine's own (see
docs/pipeline.md). Every step is a named function; `Refiner.refine` only wires them together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from vidrefine.attention import attention_kernels
from vidrefine.config import STAGE2_LATENT_SCALE, RunConfig
from vidrefine.device import autocast_for, peak_memory_bytes
from vidrefine.geometry import OutputGeometry, plan_geometry
from vidrefine.io.atomic import check_output
from vidrefine.io.reader import read_chunks
from vidrefine.io.writer import VideoWriter
from vidrefine.jobs import JobStore, file_identity, job_key
from vidrefine.prefetch import BackgroundWriter, prefetch
from vidrefine.progress import NullProgress, Progress
from vidrefine.sampling.guidance import cfg_velocity
from vidrefine.sampling.samplers import sample_euler
from vidrefine.sampling.timesteps import (
    degradation_coefficient,
    ref_step_embedding_value,
    shifted_grid,
    timestep_indices,
)
from vidrefine.vae_runner import VAEPlan, decode_latents, encode_video, plan_vae
from vidrefine.windows import WindowFrames, WindowPlan, slice_windows

READ_CHUNK_FRAMES = 16
FAITHFUL_FPS = Fraction(8)  # the original writes every clip at 8 fps (spec §9.2)


@dataclass(frozen=True)
class RefineJob:
    """One clip to refine: where from, where to, and its caption."""

    input: Path
    output: Path
    caption: str


@dataclass(frozen=True)
class ClipSource:
    """What the refiner needs to know about the frames it streams."""

    display_hw: tuple[int, int]
    frame_count: int
    time_base: Fraction
    fps: Fraction
    audio_from: Path | None = None  # file whose audio streams are copied to the output


@dataclass
class JobResult:
    """What happened to one job (for the summary table)."""

    job: RefineJob
    frames: int = 0
    windows: int = 0
    reused_windows: int = 0
    output_hw: tuple[int, int] = (0, 0)
    seconds: dict[str, float] = field(default_factory=dict)
    peak_memory_bytes: int = 0


@dataclass
class StageTwoModels:
    """The loaded stage-II models and where they run."""

    vae: torch.nn.Module
    dit: torch.nn.Module
    device: torch.device
    dtype: torch.dtype  # DiT weights and ODE state
    vae_dtype: torch.dtype


@dataclass
class _Carry:
    """What one window hands to the next: the overlap trajectory and the decoded tail frames."""

    trajectory: torch.Tensor | None = None  # (steps + 1, B, O, C, h, w) latent states
    tail: np.ndarray | None = None  # (overlap_frames, H, W, 3) uint8


class Refiner:
    """Stage-II refiner over loaded models; `refine(job)` streams one clip to its output."""

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

    # -- one clip -------------------------------------------------------------------------
    def refine(self, job: RefineJob, *, overwrite: bool = False, resume: bool = True) -> JobResult:
        """Refine `job.input` into `job.output`; finished windows are kept for resuming."""
        check_output(job.input, job.output, overwrite=overwrite)
        reader = read_chunks(job.input, READ_CHUNK_FRAMES)  # probes the file once
        info = reader.info
        source = ClipSource(
            display_hw=info.display_hw,
            frame_count=info.frame_count,
            time_base=info.time_base,
            fps=info.fps,
            audio_from=job.input if self.config.audio else None,
        )
        chunks = ((c.frames, c.pts) for c in reader)
        key = self.job_key({"input": file_identity(job.input), "caption": job.caption})
        return self.refine_stream(chunks, source, job, key=key, overwrite=overwrite, resume=resume)

    def refine_stream(
        self,
        chunks: Iterable[tuple[np.ndarray, np.ndarray]],
        source: ClipSource,
        job: RefineJob,
        *,
        key: str,
        overwrite: bool = False,
        resume: bool = True,
    ) -> JobResult:
        """Refine streamed `(frames, pts)` chunks into `job.output`.

        Frames are (T, H, W, 3) uint8, or float in [0, 255] when they come straight from a
        generator's decode (spec §5.1). `key` names the resume folder (see `job_key`).
        """
        geometry = plan_geometry(source.display_hw, self.config.size, aspect=self.config.aspect)
        plan = WindowPlan(self.config.window_latent, self.config.window_overlap_latent)
        store = JobStore(key)
        if not resume:
            store.clear()
        result = JobResult(
            job, output_hw=geometry.output_hw, windows=plan.count(source.frame_count)
        )
        context = self._context(job.caption)
        vae_plan = self._vae_plan(geometry, plan)
        carry = _Carry()
        writer = self._writer(job, source, geometry, overwrite)
        if self.config.background_io:  # decode ahead, encode behind (issue 7)
            chunks, writer = prefetch(chunks, depth=1), BackgroundWriter(writer)
        with writer, self.progress.task("windows", total=result.windows, unit="window") as bar:
            for window in slice_windows(chunks, plan):
                frames = self._window(
                    window, plan, geometry, vae_plan, context, store, carry, result
                )
                self._emit(window, frames, plan, carry, writer, result)
                bar.advance()
        store.clear()
        result.peak_memory_bytes = peak_memory_bytes(self.models.device)
        return result

    def job_key(self, identity: dict) -> str:
        """Resume key: `identity` (input and caption) plus everything that changes the numbers."""
        numbers = {k: v for k, v in asdict(self.config).items() if k not in _NON_NUMERIC_KNOBS}
        return job_key(
            {
                **identity,
                "config": numbers,
                "weights": self.weights_identity,
                "dtype": str(self.models.dtype),
                "vae_dtype": str(self.models.vae_dtype),
            }
        )

    def _window(
        self,
        window: WindowFrames,
        plan: WindowPlan,
        geometry: OutputGeometry,
        vae_plan: VAEPlan,
        context: torch.Tensor,
        store: JobStore,
        carry: _Carry,
        result: JobResult,
    ) -> np.ndarray:
        """Latents for `window` (reused or sampled), decoded to uint8 output frames."""
        saved = store.load_window(window.index)
        if saved is not None:
            latents, trajectory = saved["latents"], saved["trajectory"]
            result.reused_windows += 1
            self.progress.info(f"window {window.index + 1}: reused from an earlier run")
        else:
            with _timed(result, "encode"):
                start = self._start_state(window, plan, geometry, vae_plan)
            with _timed(result, "sample"):
                latents, trajectory = self._sample(start, context, plan, carry.trajectory)
            store.save_window(window.index, {"latents": latents, "trajectory": trajectory})
        carry.trajectory = trajectory.to(self.models.device)
        with _timed(result, "decode"):
            return self._decode(latents.to(self.models.device), geometry, vae_plan)

    # -- steps ----------------------------------------------------------------------------
    def _start_state(
        self, window: WindowFrames, plan: WindowPlan, geometry: OutputGeometry, vae_plan: VAEPlan
    ) -> torch.Tensor:
        """Pixels -> model-size video -> scaled latent z -> degraded start x_0 (B, T, C, h, w)."""
        video = frames_to_model_input(window.frames, geometry, self.models.device)
        generator = torch.Generator(device="cpu").manual_seed(
            self.config.seed * 1_000_003 + window.index
        )
        z = encode_video(
            self.models.vae,
            video.to(self.models.vae_dtype),
            vae_plan,
            sample=self.config.posterior == "sample",
            generator=generator,
        )
        z = rearrange(z.float() * STAGE2_LATENT_SCALE, "b c t h w -> b t c h w")
        noise = window_noise(z.shape, window.start_frame // 4, self.config.seed)
        a = degradation_coefficient(self.config.strength)
        x0 = a * z + (1.0 - a * a) ** 0.5 * noise.to(z.device)
        return x0.to(self.models.dtype)

    def _sample(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        plan: WindowPlan,
        previous: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Integrate the flow from the degraded latent, fusing the overlap with the last window."""
        cfg = self.config
        t_grid = shifted_grid(cfg.steps, cfg.shift, rounding=cfg.timestep_rounding)
        velocity = self._velocity(context, num_latent=x.shape[1])
        fuse = overlap_fuser(plan, previous)
        states: list[torch.Tensor] = []

        def on_step(index: int, t_next: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
            state = fuse(index + 1, state)
            states.append(state[:, -plan.overlap_latent :].detach().cpu())
            bar.advance()
            return state

        x = fuse(0, x)
        states.append(x[:, -plan.overlap_latent :].detach().cpu())
        with torch.no_grad(), self.progress.task("steps", total=cfg.steps, unit="step") as bar:
            x = sample_euler(velocity, x, t_grid.to(x.device), callback=on_step)
        return x.detach().cpu(), torch.stack(states)

    def _velocity(self, context: torch.Tensor, num_latent: int) -> Callable:
        cfg, models = self.config, self.models
        dtype = models.dtype
        ref = ref_step_embedding_value(cfg.strength, rounding=cfg.timestep_rounding)

        def model_fn(x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
            batch = x.shape[0]
            index = timestep_indices(t, rounding=cfg.timestep_rounding)
            index = index.reshape(1).expand(batch).to(x.device, dtype)
            frames = torch.full((batch,), float(num_latent), device=x.device, dtype=dtype)
            ref_step = torch.full((batch,), float(ref), device=x.device, dtype=dtype)
            with autocast_for(x.device, dtype), attention_kernels(x.device, cfg.attention):
                return models.dit(x, index, ctx, num_frames=frames, ref_step=ref_step)

        cond = context.to(models.device, dtype)
        uncond = torch.zeros_like(cond)  # the original's unconditional branch (spec §7)
        return cfg_velocity(model_fn, cond, uncond, cfg.cfg_scale, batched=cfg.cfg_batched)

    def _decode(
        self, latents: torch.Tensor, geometry: OutputGeometry, vae_plan: VAEPlan
    ) -> np.ndarray:
        """Latents (B, T, C, h, w) -> uint8 frames (F, H, W, 3) at the output size."""
        z = rearrange(latents, "b t c h w -> b c t h w").to(self.models.vae_dtype)
        with torch.no_grad():
            video = decode_latents(self.models.vae, z / STAGE2_LATENT_SCALE, vae_plan)
        out_h, out_w = geometry.output_hw
        video = video[0, :, :, :out_h, :out_w].float().clamp(-1, 1)
        frames = ((video + 1) * 127.5).round().to(torch.uint8)
        return rearrange(frames, "c t h w -> t h w c").cpu().numpy()

    def _emit(
        self,
        window: WindowFrames,
        frames: np.ndarray,
        plan: WindowPlan,
        carry: _Carry,
        writer: VideoWriter,
        result: JobResult,
    ) -> None:
        """Cross-fade the head with the previous tail, write what is final, keep the new tail."""
        if carry.tail is not None:  # `frames` is this window's own decode: blend in place
            n = plan.overlap_frames
            w = plan.crossfade_weights()[:, None, None, None]
            mixed = w * frames[:n].astype(np.float64) + (1 - w) * carry.tail.astype(np.float64)
            frames[:n] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        keep = window.real if window.is_last else plan.stride
        with _timed(result, "write"):
            writer.write(frames[:keep], self._pts(window, keep))
        result.frames += keep
        carry.tail = None if window.is_last else frames[plan.stride : plan.frames].copy()

    # -- set-up helpers ---------------------------------------------------------------------
    def _pts(self, window: WindowFrames, count: int) -> np.ndarray:
        if self.config.fps_mode == "fixed8":
            return np.arange(window.start_frame, window.start_frame + count, dtype=np.int64)
        return window.pts[:count]

    def _writer(
        self, job: RefineJob, source: ClipSource, geometry: OutputGeometry, overwrite: bool
    ) -> VideoWriter:
        cfg = self.config
        fixed = cfg.fps_mode == "fixed8"
        return VideoWriter(
            job.output,
            size_hw=geometry.output_hw,
            time_base=1 / FAITHFUL_FPS if fixed else source.time_base,
            fps=FAITHFUL_FPS if fixed else source.fps,
            codec=cfg.codec,
            crf=cfg.crf,
            preset=cfg.encoder_preset,
            pix_fmt=cfg.pix_fmt,
            audio_from=None if fixed else source.audio_from,
            overwrite=overwrite,
        )

    def _context(self, caption: str) -> torch.Tensor:
        return self.embeddings(stage2_caption(self.config, caption))

    def _vae_plan(self, geometry: OutputGeometry, plan: WindowPlan) -> VAEPlan:
        cfg = self.config
        return plan_vae(
            geometry.model_hw,
            plan.frames,
            budget_gb=cfg.vram_gb,
            mode=cfg.vae_mode,
            tile_latent=cfg.vae_tile_latent,
            overlap_latent=cfg.vae_tile_overlap_latent,
            chunk_latent=cfg.vae_chunk_latent,
        )


# knobs that change the output file but not the sampled latents
_NON_NUMERIC_KNOBS = {
    "codec",
    "pix_fmt",
    "crf",
    "encoder_preset",
    "audio",
    "fps_mode",
    "background_io",
}


class _timed:
    """Add the wall time of a block to `result.seconds[phase]`."""

    def __init__(self, result: JobResult, phase: str) -> None:
        self.result, self.phase = result, phase

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        spent = time.perf_counter() - self.start
        self.result.seconds[self.phase] = self.result.seconds.get(self.phase, 0.0) + spent


def stage2_caption(config: RunConfig, caption: str) -> str:
    """The text stage II is conditioned on: the caption behind the config's prefix.

    The original script prepends "medium motion," (spec §5.6); the default prefix is empty.
    """
    return f"{config.caption_prefix}{caption}"


RESIZE_FRAMES = 4  # frames converted and resized together in `frames_to_model_input`


def frames_to_model_input(
    frames: np.ndarray, geometry: OutputGeometry, device: torch.device
) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (1, 3, T, H', W') in [-1, 1]: resized, then padded to 16.

    Resizing is bilinear with antialiasing, in pixel space, as the original (spec §5.1). Frames
    go through float and the resize a few at a time: a window of big input frames (13 at 720p
    are 144 MB in float32) never exists in float at its input size all at once.
    """
    parts = []
    for start in range(0, len(frames), RESIZE_FRAMES):
        part = torch.from_numpy(np.ascontiguousarray(frames[start : start + RESIZE_FRAMES]))
        part = rearrange(part.to(device), "t h w c -> t c h w").float().div_(127.5).sub_(1.0)
        if tuple(part.shape[-2:]) != geometry.resize_hw:
            part = F.interpolate(
                part, size=geometry.resize_hw, mode="bilinear", align_corners=False, antialias=True
            )
        parts.append(part)
    video = torch.cat(parts)
    pad_h = geometry.model_hw[0] - geometry.resize_hw[0]
    pad_w = geometry.model_hw[1] - geometry.resize_hw[1]
    if pad_h or pad_w:
        video = F.pad(video, (0, pad_w, 0, pad_h), mode="replicate")
    return rearrange(video, "t c h w -> 1 c t h w")


def window_noise(shape: torch.Size, first_latent: int, seed: int) -> torch.Tensor:
    """Degradation noise (B, T, C, h, w) drawn per global latent frame index.

    Latent j of a window starting at pixel frame s has global index s/4 + j, so overlapping
    windows draw identical noise for shared latents and a resumed run draws the same noise.
    """
    batch, frames, *rest = shape
    slices = []
    for j in range(frames):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + first_latent + j)
        slices.append(torch.randn((batch, 1, *rest), generator=generator))
    return torch.cat(slices, dim=1)


def overlap_fuser(
    plan: WindowPlan, previous: torch.Tensor | None
) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """A function (state_index, x) -> x that pulls this window's head toward the previous tail.

    `previous` holds the previous window's last `overlap_latent` latents at every state of its
    trajectory; latent j of this window matches latent j of that tail.
    """
    if previous is None:
        return lambda _index, x: x
    weights = torch.tensor(plan.latent_fusion_weights(), dtype=torch.float32)
    n = plan.overlap_latent

    def fuse(index: int, x: torch.Tensor) -> torch.Tensor:
        w = weights.to(x.device).view(1, n, 1, 1, 1)
        head = x[:, :n].float()
        mixed = w * previous[index].to(x.device).float() + (1 - w) * head
        return torch.cat([mixed.to(x.dtype), x[:, n:]], dim=1)

    return fuse
