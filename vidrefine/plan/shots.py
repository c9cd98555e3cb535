"""Shots: the stretches of a clip between hard cuts, each refined as its own run of windows.

Detection (`vidrefine/io/shots.py`) gives the frames where cuts are; the plan turns them into
shots here. A shot shorter than `MIN_SHOT_FRAMES` (a flash, a few frames of a dissolve the
detector split) does not get windows of its own: it joins the shot after it (the clip's last
shot joins the one before), so its frames are refined with a neighbour's, as one stretch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

# The shortest shot with windows of its own: half a second at 24 fps. Any shot is padded to a
# whole window (49 frames), so a shorter one would cost a window for a few frames.
MIN_SHOT_FRAMES = 12


@dataclass(frozen=True)
class Shot:
    """Frames [start_frame, end_frame) of a clip and their times in seconds (end exclusive)."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float

    @property
    def frames(self) -> int:
        """Frames in the shot."""
        return self.end_frame - self.start_frame


def shot_starts(
    cuts: Iterable[int], frame_count: int, min_frames: int = MIN_SHOT_FRAMES
) -> list[int]:
    """The first frame of each shot: 0, then each cut that leaves both sides `min_frames` long.

    A cut closer than `min_frames` after the previous kept one is dropped (the short shot joins
    the next); so is a last cut closer than `min_frames` to the end (the last shot joins the one
    before). Cuts outside (0, frame_count) are ignored.
    """
    starts = [0]
    for cut in sorted(set(cuts)):
        if 0 < cut < frame_count and cut - starts[-1] >= min_frames:
            starts.append(cut)
    if len(starts) > 1 and frame_count - starts[-1] < min_frames:
        starts.pop()
    return starts


def plan_shots(
    cuts: Iterable[int], frame_count: int, fps: Fraction, min_frames: int = MIN_SHOT_FRAMES
) -> tuple[Shot, ...]:
    """The shots of a clip of `frame_count` frames at `fps` with hard cuts at `cuts`.

    One shot covers the whole clip when there are no cuts; times are frame index / fps.
    """
    starts = shot_starts(cuts, frame_count, min_frames)
    ends = [*starts[1:], frame_count]
    rate = float(fps) if fps else 1.0
    return tuple(Shot(a, b, a / rate, b / rate) for a, b in zip(starts, ends, strict=True))
