"""probe(): exact rates, VFR, rotation, colour, streams, JSON shape (clips from tests/media.py)."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from tests.media import make_clip
from vidrefine.io.probe import probe


def test_fps_is_an_exact_fraction_when_rate_is_ntsc(tmp_path):
    clip = make_clip(tmp_path / "ntsc.mp4", frames=12, fps=Fraction(30000, 1001))
    info = probe(clip.path)
    assert info.fps == Fraction(30000, 1001)
    assert isinstance(info.fps, Fraction)
    assert info.frame_count == 12
    assert not info.is_vfr


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_vfr_is_detected_and_frames_counted_when_steps_vary(tmp_path, ext):
    clip = make_clip(tmp_path / f"vfr.{ext}", frames=20, vfr=True)
    info = probe(clip.path)
    assert info.is_vfr
    assert info.frame_count == 20
    assert info.frame_count_counted
    span_s = clip.times_s()[-1] - clip.times_s()[0]
    assert float(info.fps_measured) == pytest.approx(19 / span_s, rel=1e-3)


@pytest.mark.parametrize("count", [True, False])
def test_frame_count_is_the_same_when_counting_is_forced_or_skipped(tmp_path, count):
    clip = make_clip(tmp_path / "c.mp4", frames=9)
    info = probe(clip.path, count_frames=count)
    assert info.frame_count == 9
    assert info.frame_count_counted is count
    assert info.duration_s == pytest.approx(clip.duration_s, abs=1e-6)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_and_display_size_are_read_when_display_matrix_is_set(tmp_path, rotation):
    clip = make_clip(tmp_path / "r.mp4", frames=2, size_hw=(32, 64), rotation=rotation)
    info = probe(clip.path)
    assert info.rotation == rotation
    assert info.size_hw == (32, 64)
    assert info.display_hw == ((64, 32) if rotation in (90, 270) else (32, 64))


@pytest.mark.parametrize("space", ["bt709", "bt470bg"])
def test_colour_tags_are_read_when_stream_is_tagged(tmp_path, space):
    clip = make_clip(tmp_path / "c.mp4", frames=2, color_space=space)
    info = probe(clip.path)
    assert info.color_space == space
    assert info.color_range == "tv"
    assert info.color_primaries == space


def test_colour_tags_are_none_when_stream_is_untagged(tmp_path):
    info = probe(make_clip(tmp_path / "u.mp4", frames=2).path)
    assert (info.color_space, info.color_primaries, info.color_trc) == (None, None, None)


def test_bit_depth_is_ten_when_source_is_10_bit(tmp_path):
    info = probe(make_clip(tmp_path / "t.mp4", frames=2, pix_fmt="yuv420p10le").path)
    assert info.bit_depth == 10
    assert info.pix_fmt == "yuv420p10le"


def test_audio_and_subtitle_streams_are_listed_when_present(tmp_path):
    clip = make_clip(
        tmp_path / "a.mkv",
        frames=10,
        audio=True,
        audio_codec="libopus",
        audio_seconds=1.0,
        subtitle_codec="subrip",
    )
    info = probe(clip.path)
    (audio,) = info.audio
    assert (audio.codec, audio.sample_rate, audio.channels) == ("opus", 48000, 2)
    assert audio.duration_s == pytest.approx(1.0, abs=0.03)
    assert len(info.subtitles) == 1


def test_to_dict_is_json_safe_and_exact_when_dumped(tmp_path):
    clip = make_clip(tmp_path / "j.mp4", frames=3, fps=Fraction(24000, 1001), audio=True)
    info = probe(clip.path)
    data = json.loads(json.dumps(info.to_dict()))
    assert Fraction(data["fps"]) == info.fps
    assert data["fps_float"] == pytest.approx(24000 / 1001)
    assert Fraction(data["time_base"]) == info.time_base
    assert data["size_hw"] == [48, 64]
    assert data["audio"][0]["sample_rate"] == 48000
