"""`compare_clips` against known answers: itself upscaled, a colour shift, a flash, a stutter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.quality.clips import FPS, UP_HW, bicubic, decoded, panning_frames, write_clip
from vidrefine.errors import BadInput
from vidrefine.io.writer import VideoWriter
from vidrefine.quality import compare_clips
from vidrefine.quality.compare import DRIFT_NOTICEABLE, FLICKER_RATIO


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    source = write_clip(folder / "in.mp4", panning_frames())
    up = bicubic(decoded(source))
    bright, repeat = up.copy(), up.copy()
    bright[5] = np.clip(bright[5].astype(int) + 40, 0, 255)
    repeat[6] = repeat[5]
    paths = {"in": source}
    for name, frames in (("up", up), ("bright", bright), ("repeat", repeat)):
        paths[name] = write_clip(folder / f"{name}.mp4", frames)
    return paths


def test_bicubic_upscale_of_itself_has_no_drift_and_a_warping_ratio_of_one_when_compared(clips):
    result = compare_clips(clips["in"], clips["up"])
    summary = result.summary()
    assert result.frames == 12 and result.output_hw == UP_HW and result.marks is None
    assert summary["delta_e"] < 1.0 and summary["psnr"] > 35 and summary["ssim"] > 0.99
    assert np.isnan(result.per_frame["warp_ratio"][0])
    np.testing.assert_allclose(result.per_frame["warp_ratio"][1:], 1.0, atol=0.1)
    assert abs(summary["hf_ratio"] - 1.0) < 0.1
    assert result.flagged("delta_e", DRIFT_NOTICEABLE) == []
    assert result.flagged("warp_ratio", FLICKER_RATIO) == []


def test_one_brightened_frame_spikes_at_exactly_that_frame_when_compared(clips):
    result = compare_clips(clips["in"], clips["bright"])
    assert result.flagged("delta_e", DRIFT_NOTICEABLE) == [5]
    assert result.worst("delta_e") == 5 and int(np.argmin(result.per_frame["psnr"])) == 5
    assert result.per_frame["delta_l"][5] > 5 > abs(result.per_frame["delta_l"][4])


def test_a_repeated_frame_shows_in_the_temporal_metric_when_compared(clips):
    result = compare_clips(clips["in"], clips["repeat"])
    assert result.flagged("warp_ratio", FLICKER_RATIO) == [6, 7]  # the stop, then the jump
    steady = np.delete(result.per_frame["warp_ratio"], [0, 6, 7])
    assert np.all(steady < 1.2)


def lightness(value: int) -> float:
    """CIE L* of the sRGB grey (value, value, value): the CIE formulas, by hand."""
    c = value / 255
    y = ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92
    f = y ** (1 / 3) if y > (6 / 29) ** 3 else y / (3 * (6 / 29) ** 2) + 4 / 29
    return 116 * f - 16


def test_a_known_lightness_shift_reports_the_analytic_ciede2000_when_grey(tmp_path):
    # For greys a* = b* = 0, so CIEDE2000 = |dL| / S_L with S_L = 1 + 0.015 (L - 50)^2 /
    # sqrt(20 + (L - 50)^2), L the mean lightness of the pair.
    dark, light = 112, 126
    source = write_clip(tmp_path / "in.mp4", np.full((4, 48, 64, 3), dark, np.uint8))
    output = write_clip(tmp_path / "out.mp4", np.full((4, 96, 128, 3), light, np.uint8))
    l1, l2 = lightness(dark), lightness(light)
    mean = (l1 + l2) / 2
    expected = (l2 - l1) / (1 + 0.015 * (mean - 50) ** 2 / np.sqrt(20 + (mean - 50) ** 2))
    result = compare_clips(source, output)
    np.testing.assert_allclose(result.per_frame["delta_e"], expected, atol=0.15)
    np.testing.assert_allclose(result.per_frame["delta_l"], l2 - l1, atol=0.15)
    np.testing.assert_allclose(result.per_frame["delta_a"], 0, atol=0.1)


def test_different_frame_counts_are_refused_unless_aligned_by_timestamp(clips, tmp_path):
    every_other = decoded(clips["up"])[::2]
    path = tmp_path / "half.mp4"
    with VideoWriter(path, size_hw=UP_HW, time_base=1 / FPS, fps=FPS / 2, crf=0) as writer:
        writer.write(every_other, np.arange(0, 12, 2))
    with pytest.raises(BadInput, match="--align"):
        compare_clips(clips["in"], path)
    result = compare_clips(clips["in"], path, align=True)
    assert result.frames == 6 and result.summary()["delta_e"] < 1.0


def test_json_holds_every_frame_and_no_nan_when_serialised(clips):
    data = json.loads(json.dumps(compare_clips(clips["in"], clips["repeat"]).to_dict()))
    assert len(data["per_frame"]["psnr"]) == 12 and data["per_frame"]["warp_ratio"][0] is None
    assert data["flicker_frames"] == [6, 7] and data["summary"]["worst_flicker_frame"] in (6, 7)


@pytest.mark.filterwarnings("error")  # numpy's "Mean of empty slice" fails the test
def test_one_frame_clips_report_temporal_measures_as_not_applicable_without_warnings(tmp_path):
    from click.testing import CliRunner

    from vidrefine.cli import cli

    one = write_clip(tmp_path / "one.mp4", panning_frames(frames=1))
    result = CliRunner().invoke(cli, ["compare", str(one), str(one), "--json"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr.lower()
    summary = json.loads(result.stdout)["summary"]
    assert summary["warp_ratio"] is None and summary["warp_ratio_max"] is None
    assert summary["psnr"] == 100.0  # the per-frame measures are there
    table = CliRunner().invoke(cli, ["compare", str(one), str(one)])
    assert table.exit_code == 0 and "warning" not in table.output.lower(), table.output
