"""Temporal windows for clips of any length: a plan, blend weights, and a streaming slicer.

The DiT was trained on 13 latent frames (49 pixel frames). Longer clips are cut into windows of
`window_latent` latent frames that overlap by `overlap_latent`; shorter clips are padded with their
last frame. Window starts are multiples of 4 frames so that latent j >= 1 of one window covers the
same 4 pixel frames as latent j + (window_latent - overlap_latent) of the one before; latent 0 of a
window stands for a single frame and is never fused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from vidrefine.config import check_knobs
from vidrefine.plan.chunking import TIME_FACTOR

FRAMES_PER_LATENT = TIME_FACTOR  # the VAE's temporal compression


@dataclass(frozen=True)
class Window:
    """One planned window: pixel frames [start_frame, stop_frame) of the clip are real.

    `first_latent` is the global latent index of its latent 0 (noise is drawn per global latent,
    so overlapping windows and resumed runs agree). `segment` numbers the stretch of the clip it
    belongs to (windows fuse only with the previous window of the same segment) and `rank` the
    process that refines it; both are 0 in a single-process run of one segment.
    """

    index: int
    start_frame: int
    stop_frame: int
    first_latent: int
    segment: int = 0
    rank: int = 0

    @property
    def real(self) -> int:
        """Frames of the clip in this window (the rest is padding)."""
        return self.stop_frame - self.start_frame


@dataclass(frozen=True)
class WindowPlan:
    """Window geometry in pixel frames: `frames` per window, consecutive starts `stride` apart."""

    window_latent: int
    overlap_latent: int

    def __post_init__(self) -> None:
        knobs = {"window_latent": self.window_latent, "window_overlap_latent": self.overlap_latent}
        check_knobs(knobs, source="window plan")  # the limits RunConfig declares

    @property
    def frames(self) -> int:
        """Pixel frames per window: 1 + 4 (L - 1), e.g. 49 for 13 latent frames."""
        return 1 + FRAMES_PER_LATENT * (self.window_latent - 1)

    @property
    def stride(self) -> int:
        """Pixel frames between consecutive window starts."""
        return FRAMES_PER_LATENT * (self.window_latent - self.overlap_latent)

    @property
    def overlap_frames(self) -> int:
        """Pixel frames shared by consecutive windows: 1 + 4 (O - 1)."""
        return self.frames - self.stride

    def count(self, num_frames: int) -> int:
        """Number of windows that cover `num_frames` frames."""
        if num_frames <= self.frames:
            return 1
        return 1 + -(-(num_frames - self.frames) // self.stride)

    def windows(self, num_frames: int, shot_starts: Sequence[int] = (0,)) -> tuple[Window, ...]:
        """The windows covering `num_frames` frames, as `slice_windows` cuts them.

        `shot_starts` are the first frames of the shots (`plan/shots.py`): each shot gets its
        own windows, numbered by its `segment`, and no window spans a cut.
        """
        windows: list[Window] = []
        ends = [*shot_starts[1:], num_frames]
        for segment, (first, end) in enumerate(zip(shot_starts, ends, strict=True)):
            for offset in range(self.count(end - first)):
                start = first + offset * self.stride
                stop = min(start + self.frames, end)
                latent = start // FRAMES_PER_LATENT
                windows.append(Window(len(windows), start, stop, latent, segment=segment))
        return tuple(windows)

    def latent_fusion_weights(self) -> np.ndarray:
        """Weight of the previous window's state for each overlapping latent j in [0, O).

        Linear ramp 1 - j/O; latent 0 (a single frame, not a 4-frame group) keeps weight 0.
        """
        j = np.arange(self.overlap_latent, dtype=np.float64)
        weights = 1.0 - j / self.overlap_latent
        weights[0] = 0.0
        return weights

    def crossfade_weights(self) -> np.ndarray:
        """Weight of the NEW window for each overlapping pixel frame; the old one gets 1 - w."""
        n = self.overlap_frames
        return np.arange(1, n + 1, dtype=np.float64) / (n + 1)


@dataclass
class WindowFrames:
    """One window's pixel frames (padded to the window length) and the real frames' timestamps.

    `is_last`: the last window of its segment (shot); nothing after it fuses with it.
    """

    index: int
    start_frame: int
    frames: np.ndarray  # (F, H, W, 3) uint8; frames past `real` repeat the last real frame
    pts: np.ndarray  # (real,) int64
    real: int
    is_last: bool
    segment: int = 0


def _frames_of(chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[np.ndarray, int]]:
    for frames, pts in chunks:
        for frame, stamp in zip(frames, pts, strict=True):
            yield frame, int(stamp)


def segment_starts(windows: Sequence[Window]) -> dict[int, int]:
    """First frame of each segment of planned `windows` -> that segment's number."""
    starts: dict[int, int] = {}
    for window in windows:
        if window.segment not in starts.values():
            starts[window.start_frame] = window.segment
    return starts or {0: 0}


def slice_windows(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], plan: WindowPlan, windows: Sequence[Window]
) -> Iterator[WindowFrames]:
    """Stream `(frames, pts)` chunks into the planned `windows`; memory is one window of frames.

    Each segment (shot) is cut as `plan` cuts a clip: windows `plan.stride` apart, the last one
    ending at the segment's end. Frames past the planned count (a probe that undercounted) extend
    the last segment; a clip that ends early ends its windows there.
    """
    starts = segment_starts(windows)
    frames_iter = _frames_of(chunks)
    buffer: list[tuple[np.ndarray, int]] = []
    start, index, segment = 0, 0, 0
    lookahead = next(frames_iter, None)
    while lookahead is not None:
        buffer.append(lookahead)
        lookahead = next(frames_iter, None)
        ends_segment = lookahead is None or start + len(buffer) in starts
        if len(buffer) < plan.frames and not ends_segment:
            continue
        yield _make_window(buffer, plan, index, start, ends_segment, segment)
        index += 1
        if ends_segment:
            start, buffer = start + len(buffer), []
            segment = starts.get(start, segment)
        else:
            buffer = buffer[plan.stride :]
            start += plan.stride


def _make_window(
    buffer: list[tuple[np.ndarray, int]],
    plan: WindowPlan,
    index: int,
    start: int,
    is_last: bool,
    segment: int,
) -> WindowFrames:
    real = len(buffer)
    stacked = np.stack([frame for frame, _ in buffer])
    if real < plan.frames:
        pad = np.repeat(stacked[-1:], plan.frames - real, axis=0)
        stacked = np.concatenate([stacked, pad])
    pts = np.array([stamp for _, stamp in buffer], dtype=np.int64)
    return WindowFrames(index, start, stacked, pts, real, is_last, segment)
