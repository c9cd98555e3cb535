"""Which frames a preview refines: the window starting at the chosen time, kept in the clip."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import pytest

from vidrefine.errors import BadInput
from vidrefine.pipeline.preview import window_span


def clip(frames: int, fps: int = 25) -> SimpleNamespace:
    return SimpleNamespace(frame_count=frames, fps=Fraction(fps))


@pytest.mark.parametrize(
    ("at_s", "frames", "span"),
    [
        (0.0, 75, (0, 13)),
        (1.0, 75, (25, 13)),
        (2.99, 75, (62, 13)),
        (9.0, 75, (62, 13)),
        (1.0, 9, (0, 9)),
    ],
    ids=["start", "inside", "near-the-end", "past-the-end", "clip-shorter-than-a-window"],
)
def test_preview_window_starts_at_the_time_and_stays_inside_the_clip_when_placed(
    at_s, frames, span
):
    assert window_span(clip(frames), 13, at_s) == span


def test_preview_at_a_negative_time_is_one_line_when_asked():
    with pytest.raises(BadInput, match="negative"):
        window_span(clip(75), 13, -1.0)
