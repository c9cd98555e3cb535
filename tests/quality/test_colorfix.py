"""Colour fixes remove a global colour shift, keep the detail, and keep every frame."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from tests.quality.clips import bicubic, panning_frames
from vidrefine.errors import BadInput
from vidrefine.quality.colorfix import apply_color_fix
from vidrefine.quality.metrics import high_frequency_energy


def drift(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(deltaE_ciede2000(rgb2lab(a), rgb2lab(b))))


def detail(frames: np.ndarray) -> float:
    return float(np.mean([high_frequency_energy(f) for f in frames]))


@pytest.mark.parametrize("mode", ["adain", "wavelet"])
def test_color_fix_removes_a_global_shift_and_keeps_the_detail_when_applied(mode):
    source = panning_frames(frames=6)  # the reference, at the input size
    refined = bicubic(source)  # stands in for the model's output, at the output size
    shifted = np.clip(refined.astype(int) + (14, -8, 6), 0, 255).astype(np.uint8)
    assert drift(shifted, refined) > 4
    fixed = apply_color_fix(mode, shifted, source)
    assert fixed.shape == shifted.shape and fixed.dtype == np.uint8
    assert drift(fixed, refined) < 1.0
    assert abs(detail(fixed) / detail(shifted) - 1) < 0.05


def test_color_fix_none_returns_the_frames_untouched_and_unknown_modes_are_refused():
    frames = panning_frames(frames=2)
    assert apply_color_fix("none", frames, frames[:1]) is frames
    with pytest.raises(BadInput, match="must be one of"):
        apply_color_fix("lut", frames, frames)
    with pytest.raises(ValueError, match="reference frames"):
        apply_color_fix("adain", frames, frames[:1])
