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
from vidrefine.progress import Progress
from vidrefine.refine import ClipSource, JobResult, RefineJob, Refiner, StageTwoModels

CHUNK_FRAMES = 16


def iter_frame_chunks(
    frames: np.ndarray, chunk: int = CHUNK_FRAMES
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frames, pts) chunks of an array; pts are frame indices (a memory map reads per chunk)."""
    for start in range(0, len(frames), chunk):
        part = np.asarray(frames[start : start + chunk])
        yield part, np.arange(start, start + len(part), dtype=np.int64)


def frames_identity(job: RefineJob, frames: np.ndarray) -> dict[str, Any]:
    """What identifies a frames job for resuming: a checksum of the frames, output and caption."""
    sample = np.asarray(frames[:: max(1, len(frames) // 4)], dtype=np.float64)
    return {
        "frames": [list(frames.shape), float(sample.sum()), float((sample**2).sum())],
        "output": str(job.output),
        "caption": job.caption,
    }


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
    refiner = Refiner(
        models, config, embeddings, progress=progress, weights_identity=weights_identity
    )
    source = ClipSource(
        display_hw=(int(frames.shape[1]), int(frames.shape[2])),
        frame_count=len(frames),
        time_base=1 / Fraction(fps),
        fps=Fraction(fps),
    )
    key = refiner.job_key(frames_identity(job, frames))
    return refiner.refine_stream(
        iter_frame_chunks(frames), source, job, key=key, overwrite=overwrite
    )
