"""probe(): exact rates, VFR, rotation, colour, streams, JSON shape (clips from tests/media.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction

import av
import pytest

from tests.media import _MATRICES, make_clip
from vidrefine.io.color import PRIMARIES, SPACES, TRANSFERS
from vidrefine.io.probe import probe

FFPROBE = shutil.which("ffprobe")


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


def _dumped(info) -> dict:
    """to_dict() after a JSON round trip, as `vidrefine info --json` prints it."""
    return json.loads(json.dumps(info.to_dict()))


def _ffprobe_json(path) -> dict:
    """Real `ffprobe -show_streams -show_format -of json` output for `path`."""
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def _with_language(src, dst, language: str) -> None:
    """Remux `src` to `dst`, tagging every audio and subtitle stream with `language`."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {}
        for stream in inp.streams:
            streams[stream.index] = out.add_stream_from_template(stream)
            if stream.type in ("audio", "subtitle"):
                streams[stream.index].metadata["language"] = language
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


def test_to_dict_is_json_safe_and_exact_when_dumped(tmp_path):
    clip = make_clip(tmp_path / "j.mp4", frames=3, fps=Fraction(24000, 1001), audio=True)
    info = probe(clip.path)
    data = _dumped(info)
    assert Fraction(data["avg_frame_rate"]) == info.fps
    assert data["avg_frame_rate_float"] == pytest.approx(24000 / 1001)
    assert Fraction(data["time_base"]) == info.time_base
    assert (data["height"], data["width"]) == (48, 64)
    assert data["audio"][0]["sample_rate"] == "48000"
    assert data["frame_count_declared"] == info.frame_count_declared == 3
    assert data["measured_frame_rate"] is None  # an indexed MP4 is trusted, not scanned


def test_each_fact_has_one_name_when_dumped(tmp_path):
    clip = make_clip(tmp_path / "k.mkv", frames=4, audio=True, subtitle_codec="subrip")
    data = _dumped(probe(clip.path, count_frames=True))
    # vidrefine's old names for facts that now carry ffprobe's name.
    renamed = {"fps", "fps_float", "size_hw", "display_hw", "codec", "color_trc", "duration_s"}
    renamed |= {"frame_count", "sar", "dar", "sar_float", "dar_float", "time_base_float"}
    assert not renamed & data.keys()
    assert not {"codec", "sample_rate_hz", "layout", "duration_s", "language"} & (
        data["audio"][0].keys() | data["subtitles"][0].keys()
    )
    for key in data:  # a float companion only beside its exact ffprobe-named value
        if key.endswith("_float"):
            assert key.removesuffix("_float") in data


@pytest.mark.parametrize("space", ["bt709", "bt470bg"])
def test_ffprobe_named_fields_hold_what_the_clip_was_made_with(tmp_path, space):
    clip = make_clip(
        tmp_path / "f.mp4",
        frames=7,
        size_hw=(32, 80),
        fps=Fraction(30000, 1001),
        pix_fmt="yuv420p10le",
        audio=True,
        audio_rate=44100,
        audio_layout="mono",
        color_space=space,
    )
    data = _dumped(probe(clip.path))
    assert (data["width"], data["height"]) == (clip.size_hw[1], clip.size_hw[0])
    assert data["codec_name"] == "h264"  # make_clip's default encoder is libx264
    assert data["pix_fmt"] == "yuv420p10le"
    assert data["r_frame_rate"] == data["avg_frame_rate"] == "30000/1001"
    assert data["nb_frames"] == str(clip.frames)
    assert data["duration"] == f"{clip.duration_s:.6f}"
    # The muxer may pick its own time base; it must still hold the clip's ticks exactly.
    assert (clip.time_base / Fraction(data["time_base"])).denominator == 1
    _, primaries, transfer, matrix = _MATRICES[space]
    assert data["color_primaries"] == PRIMARIES[primaries]
    assert data["color_transfer"] == TRANSFERS[transfer]
    assert data["color_space"] == SPACES[matrix]
    assert data["color_range"] == "tv"  # make_clip writes limited range
    assert data["sample_aspect_ratio"] == "1:1"
    assert data["display_aspect_ratio"] == "5:2"  # 80:32
    (audio,) = data["audio"]
    with av.open(str(clip.path)) as container:
        assert audio["index"] == container.streams.audio[0].index
    assert audio["codec_name"] == "aac"
    assert audio["sample_rate"] == str(clip.audio_rate)
    assert audio["channels"] == clip.audio_channels == 1
    assert audio["channel_layout"] == "mono"
    assert float(audio["duration"]) == pytest.approx(clip.audio_duration_s, abs=0.03)
    assert "tags" not in audio  # make_clip writes no language


@pytest.mark.skipif("libsvtav1" not in av.codecs_available, reason="no AV1 encoder")
def test_codec_name_is_the_format_not_the_decoder_when_decoded_by_a_library(tmp_path):
    info = probe(make_clip(tmp_path / "a.mkv", frames=3, codec="libsvtav1").path)
    if info.codec == "av1":
        pytest.skip("this FFmpeg decodes AV1 natively, so decoder and format names agree")
    assert _dumped(info)["codec_name"] == "av1"


def test_colour_fields_are_left_out_when_stream_is_untagged(tmp_path):
    data = _dumped(probe(make_clip(tmp_path / "u.mp4", frames=2).path))
    colour = {"color_primaries", "color_transfer", "color_space", "color_range"}
    assert not colour & data.keys()


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_r_frame_rate_is_left_out_and_measured_rate_given_when_rate_varies(tmp_path, ext):
    clip = make_clip(tmp_path / f"v.{ext}", frames=20, vfr=True)
    info = probe(clip.path)
    data = _dumped(info)
    assert data["is_vfr"] is True
    assert "r_frame_rate" not in data
    assert Fraction(data["avg_frame_rate"]) == info.fps
    span_s = clip.times_s()[-1] - clip.times_s()[0]
    assert float(Fraction(data["measured_frame_rate"])) == pytest.approx(19 / span_s, rel=1e-3)
    assert data["measured_frame_rate_float"] == float(Fraction(data["measured_frame_rate"]))
    assert data["nb_frames"] == str(clip.frames)
    assert data["frame_count_counted"] is True


@pytest.mark.parametrize("rotation", [0, 90, 270])
def test_width_height_are_stored_and_display_size_rotated_when_dumped(tmp_path, rotation):
    clip = make_clip(tmp_path / "r.mp4", frames=2, size_hw=(32, 64), rotation=rotation)
    data = _dumped(probe(clip.path))
    assert (data["width"], data["height"]) == (64, 32)
    assert data["display_aspect_ratio"] == "2:1"  # ffprobe's: before rotation
    turned = rotation in (90, 270)
    assert (data["display_width"], data["display_height"]) == ((32, 64) if turned else (64, 32))
    assert data["rotation"] == rotation


def test_language_and_subtitles_use_ffprobe_names_when_tagged(tmp_path):
    clip = make_clip(
        tmp_path / "a.mkv", frames=4, audio=True, audio_codec="libopus", subtitle_codec="subrip"
    )
    _with_language(clip.path, tmp_path / "tagged.mkv", "fra")
    data = _dumped(probe(tmp_path / "tagged.mkv"))
    ((audio,), (subtitle,)) = data["audio"], data["subtitles"]
    with av.open(str(tmp_path / "tagged.mkv")) as container:
        expected = (container.streams.audio[0].index, container.streams.subtitles[0].index)
    assert (audio["index"], subtitle["index"]) == expected
    assert (audio["codec_name"], subtitle["codec_name"]) == ("opus", "subrip")
    assert audio["tags"] == subtitle["tags"] == {"language": "fra"}


@pytest.mark.skipif(FFPROBE is None, reason="ffprobe is not installed")
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_shared_fields_equal_ffprobe_when_both_report_them(tmp_path, ext):
    subtitle = "subrip" if ext == "mkv" else "mov_text"
    clip = make_clip(
        tmp_path / f"p.{ext}",
        frames=6,
        fps=Fraction(24000, 1001),
        audio=True,
        color_space="bt709",
        subtitle_codec=subtitle,
    )
    data = _dumped(probe(clip.path, count_frames=False))
    streams = {s["index"]: s for s in _ffprobe_json(clip.path)["streams"]}
    video = next(s for s in streams.values() if s["codec_type"] == "video")
    shared = data.keys() & video.keys()
    assert {"width", "height", "codec_name", "pix_fmt", "r_frame_rate", "time_base"} <= shared
    assert {"avg_frame_rate", "color_space", "color_transfer", "color_primaries"} <= shared
    for key in shared:
        assert (key, type(data[key]), data[key]) == (key, type(video[key]), video[key])
    for ours in data["audio"] + data["subtitles"]:
        theirs = streams[ours["index"]]
        assert len(ours.keys() & theirs.keys()) >= 2
        for key in ours.keys() & theirs.keys() - {"tags"}:
            assert (key, type(ours[key]), ours[key]) == (key, type(theirs[key]), theirs[key])
