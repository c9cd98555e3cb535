"""One plan per clip: validated knobs, windows as the slicer cuts them, shared placement."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner

from vidrefine.cli import cli
from vidrefine.config import RunConfig
from vidrefine.errors import BadInput, DoesNotFit, ExitCode
from vidrefine.plan.clip import SourceFacts, plan_batch, plan_clip
from vidrefine.plan.hardware import CPU, DeviceFacts
from vidrefine.plan.windows import WindowPlan, slice_windows


def source(frames: int = 49, hw: tuple[int, int] = (270, 480)) -> SourceFacts:
    return SourceFacts(hw, frames, Fraction(24), Fraction(1, 24))


@pytest.mark.parametrize("key, value", [("window_overlap_latent", 0), ("window_latent", 1)])
def test_window_knobs_are_refused_when_a_config_is_built_in_python(key, value) -> None:
    with pytest.raises(BadInput, match=rf"{key} = {value}: must be between"):
        RunConfig(**{key: value})


def test_overlap_as_large_as_the_window_is_refused_naming_both_when_built() -> None:
    with pytest.raises(BadInput, match=r"window_overlap_latent \(4\) must be smaller"):
        RunConfig(window_latent=4, window_overlap_latent=4)


def test_preset_with_zero_overlap_fails_before_any_weight_is_looked_for_when_upscaling(
    tmp_path,
) -> None:
    preset = tmp_path / "bad.toml"
    preset.write_text("window_overlap_latent = 0\n")
    clip = tmp_path / "in.mp4"
    clip.write_bytes(b"not even a video: the preset must fail first")
    missing = tmp_path / "no-weights-here"
    args = ["upscale", str(clip), "-c", "x", "--preset", str(preset), "--weights", str(missing)]
    result = CliRunner().invoke(cli, [*args, "--offline"])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "window_overlap_latent = 0: must be between 1 and 63" in result.output
    assert str(preset) in result.output and "weights" not in result.output.lower()
    assert len(result.output.strip().splitlines()) == 1
    assert not missing.exists()


@pytest.mark.parametrize("frames", [1, 12, 13, 14, 20, 21, 22, 45, 100])
def test_planned_windows_are_the_ones_the_slicer_cuts_when_frames_stream(frames) -> None:
    windowing = WindowPlan(4, 2)
    stamps = np.arange(frames, dtype=np.int64)
    pictures = np.zeros((frames, 2, 2, 3), np.uint8)
    chunks = [(pictures[i : i + 5], stamps[i : i + 5]) for i in range(0, frames, 5)]
    cut = [
        (w.index, w.start_frame, w.start_frame + w.real)
        for w in slice_windows(chunks, windowing, windowing.windows(frames))
    ]
    planned = [(w.index, w.start_frame, w.stop_frame) for w in windowing.windows(frames)]
    assert planned == cut
    assert all(w.first_latent * 4 == w.start_frame for w in windowing.windows(frames))


def test_every_clip_of_a_batch_shares_the_placement_its_largest_clip_needs_when_tight() -> None:
    gpu = DeviceFacts("cuda", "test", 12.0, 64.0)
    small, wide = source(hw=(90, 160)), source(hw=(90, 480))  # 1920x1080 and 5760x1080
    config = RunConfig(size="1080p")
    alone = plan_clip(small, config, gpu)
    plans = plan_batch([small, wide], config, gpu)
    assert plans[1].models.offload == "layer"
    assert {p.models for p in plans} == {plans[1].models}
    assert alone.models.offload == "none"  # on its own the small clip would stay resident


def test_plan_is_plain_data_that_survives_json_when_printed() -> None:
    plan = plan_clip(source(frames=100), RunConfig(), CPU)
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["geometry"]["model_hw"] == list(plan.geometry.model_hw)
    assert [w["start_frame"] for w in data["windows"]] == [w.start_frame for w in plan.windows]
    assert data["models"] == {
        "dtype": "fp32",
        "vae_dtype": "fp32",
        "offload": "none",
        "compile": False,
    }
    assert data["timing"]["fps"] == "24/1" and data["memory"]["offload"] == "none"


def test_faithful_timing_writes_eight_fps_without_audio_when_fixed8() -> None:
    plan = plan_clip(source(), RunConfig(fps_mode="fixed8"), CPU)
    assert (plan.timing.fps, plan.timing.source_pts, plan.timing.copy_audio) == (8, False, False)
    kept = plan_clip(source(), RunConfig(), CPU).timing
    assert (kept.time_base, kept.source_pts, kept.copy_audio) == (Fraction(1, 24), True, True)


def test_a_budget_nothing_fits_is_refused_before_loading_when_planned() -> None:
    with pytest.raises(DoesNotFit, match="nothing fits in 4.0 GB"):
        plan_clip(source(), RunConfig(size="1080p", vram_gb=4.0), CPU)
