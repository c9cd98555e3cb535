"""Nothing dropped without a word: extra video streams, alpha, interlacing, subtitles (issue 12)."""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
from click.testing import CliRunner

from tests.media import make_clip
from vidrefine.cli import warnings_as_lines
from vidrefine.cli.environment import Environment
from vidrefine.cli.info import command as info_command
from vidrefine.io.probe import probe
from vidrefine.io.reader import read_chunks
from vidrefine.io.writer import VideoWriter


def _read_warning_lines(path) -> list[str]:
    """The `vidrefine: warning: ...` lines the CLI prints while a file is read through."""
    env = Environment(io.StringIO(), io.StringIO())
    with warnings_as_lines(lambda: env):
        warnings.simplefilter("always")
        for _chunk in read_chunks(path, 4):
            pass
    return [line for line in env.stderr.getvalue().splitlines() if line]


def _info(path, *args) -> str:
    result = CliRunner().invoke(info_command, [str(path), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_read_warns_once_when_file_has_a_second_video_stream(tmp_path):
    clip = make_clip(tmp_path / "in.mov", frames=9, extra_video=True)
    assert _read_warning_lines(clip.path) == [
        f"vidrefine: warning: {clip.path}: 2 video streams; refining #0, the others are not written"
    ]


def test_read_warns_once_when_picture_has_alpha(tmp_path):
    clip = make_clip(tmp_path / "in.mov", frames=9, codec="png", pix_fmt="rgba")
    assert _read_warning_lines(clip.path) == [
        f"vidrefine: warning: {clip.path}: alpha channel dropped (the output has no transparency)"
    ]


def test_read_warns_once_when_input_is_interlaced(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=9, field_order="tt")
    assert _read_warning_lines(clip.path) == [
        f"vidrefine: warning: {clip.path}: interlaced (top field first); "
        "frames are refined as progressive pictures"
    ]


def test_read_names_bottom_field_first_when_input_is_bff(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=4, field_order="bb")
    (line,) = _read_warning_lines(clip.path)
    assert "interlaced (bottom field first)" in line


def test_read_warns_nothing_when_clip_is_clean(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=9, audio=True)
    assert _read_warning_lines(clip.path) == []


def _write_from(src, out, on_warning=None) -> VideoWriter:
    info = probe(src)
    frames = np.zeros((2, *info.size_hw, 3), np.uint8)
    with VideoWriter(
        out,
        size_hw=info.size_hw,
        time_base=info.time_base,
        fps=info.fps,
        audio_from=src,
        on_warning=on_warning,
    ) as writer:
        writer.write(frames, np.array([0, 4]))
    return writer


def test_writer_passes_one_warning_line_on_when_subtitles_cannot_go_into_mp4(tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=4, subtitle_codec="subrip")
    env = Environment(io.StringIO(), io.StringIO())
    writer = _write_from(src.path, tmp_path / "out.mp4", on_warning=env.warn)
    index = probe(src.path).subtitles[0].index
    expected = f"subtitle stream #{index} (subrip) dropped: mp4 cannot hold it"
    assert env.stderr.getvalue().splitlines() == [f"vidrefine: warning: {expected}"]
    assert writer.warnings == [expected]


def test_writer_passes_nothing_on_when_subtitles_fit_the_container(tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=4, subtitle_codec="subrip")
    seen: list[str] = []
    _write_from(src.path, tmp_path / "out.mkv", on_warning=seen.append)
    assert seen == [] and len(probe(tmp_path / "out.mkv").subtitles) == 1


def test_info_lists_every_video_stream_when_file_has_two(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=4, extra_video=True)
    assert "video #1" in _info(clip.path) and "h264, 32x24" in _info(clip.path)
    data = json.loads(_info(clip.path, "--json"))
    assert data["index"] == 0
    assert data["other_video"] == [
        {"index": 1, "codec_name": "h264", "width": 32, "height": 24, "pix_fmt": "yuv420p"}
    ]


def test_info_shows_alpha_when_picture_has_alpha(tmp_path):
    clip = make_clip(tmp_path / "in.mov", frames=4, codec="png", pix_fmt="rgba")
    assert probe(clip.path).has_alpha
    data = json.loads(_info(clip.path, "--json"))
    assert data["has_alpha"] is True and data["other_video"] == []
    assert "yes (dropped when refined)" in _info(clip.path)


def test_info_shows_field_order_when_input_is_interlaced(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=4, field_order="tt")
    info = probe(clip.path)
    assert info.interlaced and info.field_order == "tt"
    data = json.loads(_info(clip.path, "--json"))
    assert data["field_order"] == "tt" and data["interlaced"] is True
    assert "interlaced, top field first" in _info(clip.path)


def test_info_shows_progressive_without_alpha_when_clip_is_clean(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=4)
    data = json.loads(_info(clip.path, "--json"))
    assert data["field_order"] == "progressive"
    assert (data["has_alpha"], data["interlaced"], data["other_video"]) == (False, False, [])
    table = _info(clip.path)
    assert "progressive" in table and "interlaced" not in table and "video #" not in table
