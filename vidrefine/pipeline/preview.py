"""A before/after preview: one window of a clip refined on its own (`Refiner.preview`).

The page (`vidrefine serve`) shows it before a whole clip is committed: the window that starts
nearest to a chosen time is read, refined through `Refiner.stream`, and both the source frames
and the refined ones are written as short silent clips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vidrefine.errors import BadInput
from vidrefine.io.probe import MediaInfo, probe
from vidrefine.io.reader import read_chunks
from vidrefine.io.writer import VideoWriter

PREVIEW_CRF = 18  # previews are looked at, not kept


@dataclass(frozen=True)
class Preview:
    """The two clips of a preview and where in the source they come from."""

    source: Path  # the window's frames as they are in the input
    refined: Path  # the same frames after stage II
    start_s: float
    frames: int


def window_span(info: MediaInfo, window_frames: int, at_s: float) -> tuple[int, int]:
    """(first frame, frame count) of the window starting at `at_s`, kept inside the clip."""
    if at_s < 0:
        raise BadInput(f"preview time {at_s} s is negative; choose a time inside the clip")
    count = min(window_frames, info.frame_count)
    start = round(at_s * float(info.fps))
    return max(0, min(start, info.frame_count - count)), count


def read_span(path: Path, info: MediaInfo, start: int, count: int) -> np.ndarray:
    """Frames [start, start + count) of `path` as (T, H, W, 3) uint8."""
    pieces: list[np.ndarray] = []
    with read_chunks(path, count, start_frame=start, info=info) as reader:
        for chunk in reader:
            pieces.append(chunk.frames)
            if sum(len(p) for p in pieces) >= count:
                break
    if not pieces:
        raise BadInput(f"{path}: no frames to preview at frame {start}")
    return np.concatenate(pieces)[:count]


def write_clip(path: Path, frames: np.ndarray, fps: Fraction) -> Path:
    """Write (T, H, W, 3) uint8 frames at `fps` (cropped to even sizes for 4:2:0)."""
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    frames = np.ascontiguousarray(frames[:, :height, :width])
    writer = VideoWriter(
        path,
        size_hw=(height, width),
        time_base=1 / fps,
        fps=fps,
        crf=PREVIEW_CRF,
        preset="veryfast",
        overwrite=True,
    )
    with writer:
        writer.write(frames, np.arange(len(frames), dtype=np.int64))
    return path


def preview_clip(
    refine: Callable[[np.ndarray, MediaInfo], Iterable[np.ndarray]],
    input: Path,
    window_frames: int,
    at_s: float,
    folder: Path,
) -> Preview:
    """Refine the window of `input` at `at_s` with `refine(frames, info)` and write both clips.

    `folder` receives `<stem>_at<ms>_source.mp4` and `<stem>_at<ms>_refined.mp4` (replaced
    when they exist: previews are scratch files).
    """
    info = probe(input)
    start, count = window_span(info, window_frames, at_s)
    frames = read_span(input, info, start, count)
    refined = np.stack(list(refine(frames, info)))
    start_s = start / float(info.fps)
    name = f"{input.stem}_at{round(start_s * 1000)}"
    folder.mkdir(parents=True, exist_ok=True)
    return Preview(
        source=write_clip(folder / f"{name}_source.mp4", frames, info.fps),
        refined=write_clip(folder / f"{name}_refined.mp4", refined, info.fps),
        start_s=start_s,
        frames=len(frames),
    )


__all__ = ["Preview", "preview_clip", "read_span", "window_span", "write_clip"]
