"""Degradations: seeded, within their ranges, real codec compression, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidrefine.pipeline.steps import frames_to_model_input
from vidrefine.plan.geometry import plan_geometry
from vidrefine.runtime.live_memory import LiveTensorMemory
from vidrefine.train.degrade import (
    CODECS,
    DegradationSettings,
    choose_kind,
    compress,
    degrade,
    resize,
    scaled_hw,
    to_float,
    to_uint8,
)

STRONG = DegradationSettings(strong_prob=1.0)
WEAK = DegradationSettings(strong_prob=0.0)


def _window(frames: int = 5, size_hw: tuple[int, int] = (64, 64), seed: int = 0) -> np.ndarray:
    """A moving gradient with texture: something blur, noise and codecs visibly change."""
    y, x = np.mgrid[0 : size_hw[0], 0 : size_hw[1]]
    texture = np.random.default_rng(seed).integers(0, 40, size=(*size_hw, 3))
    pictures = [
        np.stack([(x * 4 + i * 8) % 200, (y * 4) % 200, (x + y + i) % 200], axis=-1) + texture
        for i in range(frames)
    ]
    return np.stack(pictures).astype(np.uint8)


@pytest.mark.parametrize("settings", [WEAK, STRONG], ids=["weak", "strong"])
def test_degradation_repeats_exactly_when_given_the_same_seed(settings) -> None:
    window = _window()
    first, record = degrade(window, 11, settings)
    again, record_again = degrade(window, 11, settings)
    other, other_record = degrade(window, 12, settings)
    assert np.array_equal(first, again) and record == record_again
    assert not np.array_equal(first, other) and record != other_record
    assert first.shape == window.shape and first.dtype == np.uint8
    assert record["seed"] == 11


def test_weak_path_is_the_papers_down_and_up_resize_when_recorded() -> None:
    window = _window()
    out, record = degrade(window, 3, WEAK)
    assert record["kind"] == "weak" and 4.0 <= record["scale"] <= 8.0
    video = to_float(window)
    low = resize(video, scaled_hw((64, 64), record["scale"]))
    expected = to_uint8(resize(low, (64, 64)))
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1  # recorded scale rounded


def test_every_draw_stays_in_its_range_when_many_seeds_are_drawn() -> None:
    window = _window(frames=1, size_hw=(64, 96))
    for seed in range(12):
        _, record = degrade(window, seed, STRONG)
        assert record["kind"] == "strong" and 4.0 <= record["scale"] <= 8.0
        assert record["codec"] in CODECS
        h, w = record["lr_hw"]
        assert h % 2 == w % 2 == 0 and min(h, w) >= 16
        bpp = record["bit_rate"] / (h * w * 8)
        assert 0.02 <= bpp <= 0.3 or record["bit_rate"] == 1000
        for step in record["steps"]:
            if step["op"] == "blur":
                assert 7 <= step["kernel"] <= 21 and all(0.2 <= s <= 3.0 for s in step["sigma"])
            if step["op"] == "resize":
                assert 0.15 <= step["factor"] <= 1.5
            if step["op"] == "noise" and step["noise"] == "gaussian":
                assert 1.0 <= step["sigma"] <= 30.0
    rng = np.random.default_rng(0)
    kinds = [choose_kind(rng, False, DegradationSettings()) for _ in range(2000)]
    assert kinds.count("strong") / len(kinds) == pytest.approx(0.5, abs=0.04)
    assert {choose_kind(rng, True, STRONG) for _ in range(20)} == {"pair"}


@pytest.mark.parametrize("codec", CODECS)
def test_codec_really_reencodes_when_the_bitrate_is_lowered(codec) -> None:
    frames = (np.random.default_rng(1).random((5, 48, 64, 3)) * 255).astype(np.uint8)
    low, low_bytes = compress(frames, codec, 20_000)
    high, high_bytes = compress(frames, codec, 1_000_000)
    assert low.shape == frames.shape
    assert low_bytes < high_bytes < frames.nbytes  # a lower bitrate writes fewer bytes
    error = [np.abs(x.astype(int) - frames.astype(int)).mean() for x in (low, high)]
    assert error[0] > error[1] > 1.0  # and the frames it gives back changed more


def test_strong_path_compresses_when_it_runs() -> None:
    window = _window()
    _, record = degrade(window, 5, STRONG)
    h, w = record["lr_hw"]
    assert 0 < record["bytes"] < len(window) * h * w * 3  # far below the raw LR frames


def test_pair_is_resized_as_upscale_resizes_its_input_when_given() -> None:
    window, lr = _window(), _window(size_hw=(16, 16), seed=4)
    out, record = degrade(window, 0, STRONG, lr_frames=lr)
    assert record["kind"] == "pair"
    geometry = plan_geometry((16, 16), "64x64")
    model_input = frames_to_model_input(lr, geometry, torch.device("cpu"))[0]  # (3, T, H, W)
    ours = torch.from_numpy(out).permute(3, 0, 1, 2).float() / 127.5 - 1
    assert (ours - model_input).abs().max().item() <= 1.01 / 127.5  # uint8 rounding only


def test_degrading_a_window_holds_a_few_copies_of_it_when_measured() -> None:
    window = _window(frames=3, size_hw=(48, 64))
    copy_bytes = window.size * 4  # one float32 copy of the window
    with LiveTensorMemory() as meter:
        degrade(window, 3, STRONG)
    assert meter.peak < 12 * copy_bytes
