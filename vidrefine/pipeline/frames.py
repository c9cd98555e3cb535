"""Stage II on in-memory float frames (a generator's decode), not on a video file.

The original hands stage I's unquantised float decode straight to stage II (spec §5.1,
pitfall 18). `refine_frames` runs the `ClipRefiner`'s window steps over such an array, with the
same windows, fusion, resume store and writer as `refine_file` uses for files.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from vidrefine.pipeline.refine import ClipRefiner, JobResult, RefineJob
from vidrefine.plan.clip import ClipPlan, SourceFacts

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


def frames_source(frames: np.ndarray, fps: Fraction) -> SourceFacts:
    """Planning facts of a (T, H, W, 3) array played at `fps` (pts = frame index)."""
    height, width = int(frames.shape[1]), int(frames.shape[2])
    return SourceFacts((height, width), len(frames), Fraction(fps), 1 / Fraction(fps))


def refine_frames(
    refiner: ClipRefiner, plan: ClipPlan, frames: np.ndarray, job: RefineJob, overwrite: bool
) -> JobResult:
    """Refine float frames (T, H, W, 3) in [0, 255] into `job.output`, timed by the plan.

    `job.input` only names the source in results; `job.caption` goes through the refiner's
    embeddings (with the config's caption prefix), as for files. No audio: the frames have none.
    """
    key = refiner.job_key(frames_identity(job, frames), plan)
    chunks = iter_frame_chunks(frames)
    return refiner.refine_stream(chunks, plan, job, key=key, overwrite=overwrite)
