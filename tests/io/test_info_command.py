"""`vidrefine info` through click's CliRunner: JSON for scripts, a table for people."""

from __future__ import annotations

import json
from fractions import Fraction

from click.testing import CliRunner

from tests.media import make_clip
from vidrefine.cli.info import command
from vidrefine.errors import BadInput


def test_json_carries_exact_rates_and_streams_when_asked(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=6, fps=Fraction(30000, 1001), audio=True)
    result = CliRunner().invoke(command, [str(clip.path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert Fraction(data["avg_frame_rate"]) == Fraction(30000, 1001)
    assert data["nb_frames"] == "6" and len(data["audio"]) == 1


def test_table_names_size_fps_and_audio_when_printed(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=6, size_hw=(32, 64), audio=True, rotation=90)
    result = CliRunner().invoke(command, [str(clip.path)])
    assert result.exit_code == 0, result.output
    assert "64x32 stored, 32x64 shown" in result.output
    assert "25.000 (25/1)" in result.output
    assert "aac, 48000 Hz, stereo" in result.output


def test_bad_file_raises_bad_input_when_inspected(tmp_path):
    (tmp_path / "x.mp4").write_text("not a video")
    result = CliRunner().invoke(command, [str(tmp_path / "x.mp4")])
    assert isinstance(result.exception, BadInput)
