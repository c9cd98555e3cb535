"""Stage II on in-memory float frames (a generator's decode), not on a video file.

The original hands stage I's unquantised float decode straight to stage II (spec §5.1,
pitfall 18). `refine_frames` runs the `Refiner`'s window steps over such an array, with the same
windows, fusion, resume store and writer as `Refiner.refine` uses for files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from vidrefine.config import RunConfig
from vidrefine.geometry import plan_geometry
from vidrefine.io.writer import VideoWriter
from vidrefine.jobs import JobStore, job_key
from vidrefine.progress import NullProgress, Progress
from vidrefine.refine import JobResult, RefineJob, Refiner, StageTwoModels, _Carry
from vidrefine.windows import WindowPlan, slice_windows

CHUNK_FRAMES = 16


def iter_frame_chunks(
    frames: np.ndarray, chunk: int = CHUNK_FRAMES
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frames, pts) chunks of an array; pts are frame indices (a memory map reads per chunk)."""
    for start in range(0, len(frames), chunk):
        part = np.asarray(frames[start : start + chunk])
        yield part, np.arange(start, start + len(part), dtype=np.int64)


def frames_key(job: RefineJob, config: RunConfig, frames: np.ndarray, extra: Any) -> str:
    """Resume key of a frames job: output, caption, settings, weights and a frame checksum."""
    sample = np.asarray(frames[:: max(1, len(frames) // 4)], dtype=np.float64)
    return job_key(
        {
            "frames": [list(frames.shape), float(sample.sum()), float((sample**2).sum())],
            "output": str(job.output),
            "caption": job.caption,
            "config": repr(config),
            "extra": extra,
        }
    )


def refine_frames(
    models: StageTwoModels,
    config: RunConfig,
    frames: np.ndarray,
    job: RefineJob,
    *,
    fps: Fraction,
    embeddings: Callable[[str], torch.Tensor],
    weights_identity: dict | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> JobResult:
    """Refine float frames (T, H, W, 3) in [0, 255] into `job.output`, written at `fps`.

    `job.input` only names the source in results; `job.caption` goes through `embeddings`
    (with the config's caption prefix), as for files. No audio: the frames have none.
    """
    progress = progress or NullProgress()
    refiner = Refiner(
        models, config, embeddings, progress=progress, weights_identity=weights_identity
    )
    geometry = plan_geometry(tuple(frames.shape[1:3]), config.size, aspect=config.aspect)
    plan = WindowPlan(config.window_latent, config.window_overlap_latent)
    store = JobStore(frames_key(job, config, frames, [weights_identity, str(models.dtype)]))
    result = JobResult(job, output_hw=geometry.output_hw, windows=plan.count(len(frames)))
    context = refiner._context(job.caption)
    vae_plan = refiner._vae_plan(geometry, plan)
    carry = _Carry()
    writer = VideoWriter(
        job.output,
        size_hw=geometry.output_hw,
        time_base=1 / Fraction(fps),
        fps=Fraction(fps),
        codec=config.codec,
        crf=config.crf,
        preset=config.encoder_preset,
        pix_fmt=config.pix_fmt,
        overwrite=overwrite,
    )
    with writer, progress.task("windows", total=result.windows, unit="window") as bar:
        for window in slice_windows(iter_frame_chunks(frames), plan):
            refiner._window(window, plan, geometry, vae_plan, context, store, carry, result)
            refiner._emit(window, plan, carry, writer, result)
            bar.advance()
    store.clear()
    return result
