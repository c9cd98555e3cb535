"""read -> VideoWriter -> reopen: frames, pts, fps, audio and subtitles survive."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from tests.media import decode_index, make_clip, read_all
from vidrefine.io.color import ColorTags
from vidrefine.io.probe import probe
from vidrefine.io.reader import read_chunks
from vidrefine.io.writer import VideoWriter


def copy_video(src, dst, *, chunk=5, audio=True, **writer_kwargs):
    """Stream src through read_chunks and VideoWriter, as the refiner will."""
    reader = read_chunks(src, chunk)
    info = reader.info
    writer = VideoWriter(
        dst,
        size_hw=info.display_hw,
        time_base=info.time_base,
        fps=info.fps,
        preset="ultrafast",
        audio_from=src if audio else None,
        **writer_kwargs,
    )
    with writer:
        for c in reader:
            writer.write(c.frames, c.pts)
    return writer


CASES = {
    "odd_size": dict(size_hw=(33, 47), pix_fmt="yuv444p"),
    "one_frame": dict(frames=1),
    "ten_bit": dict(pix_fmt="yuv420p10le"),
    "audio": dict(audio=True),
    "vfr": dict(vfr=True, frames=20),
    "vfr_bframes_audio": dict(vfr=True, bframes=True, frames=20, audio=True),
    "avi_bframes_ac3": dict(ext="avi", bframes=True, audio=True, audio_codec="ac3"),
    "ntsc": dict(fps=Fraction(30000, 1001), frames=15, audio=True),
}


@pytest.mark.parametrize("case", CASES)
def test_frames_timing_and_audio_survive_when_round_tripped(tmp_path, case):
    kwargs = dict(CASES[case])
    ext = kwargs.pop("ext", "mp4")
    kwargs.setdefault("frames", 10)
    src = make_clip(tmp_path / f"src.{ext}", **kwargs)
    src_frames, src_times, _ = read_all(src.path)
    writer = copy_video(src.path, tmp_path / "out.mp4")
    out_frames, out_times, _ = read_all(tmp_path / "out.mp4")
    assert [decode_index(f) for f in out_frames] == [decode_index(f) for f in src_frames]
    assert out_frames.shape == src_frames.shape
    tick = float(probe(tmp_path / "out.mp4").time_base)
    assert out_times == pytest.approx(src_times, abs=tick)
    a, b = probe(src.path, count_frames=True), probe(tmp_path / "out.mp4", count_frames=True)
    assert b.frame_count == a.frame_count == src.frames
    assert b.is_vfr == a.is_vfr
    if not a.is_vfr and src.frames > 1:
        assert b.fps == a.fps
    frame_s = float(1 / src.fps)
    assert b.duration_s == pytest.approx(a.duration_s, abs=frame_s)
    assert len(b.audio) == len(a.audio)
    for sa, sb in zip(a.audio, b.audio, strict=True):
        assert (sb.sample_rate, sb.channels) == (sa.sample_rate, sa.channels)
        assert sb.duration_s == pytest.approx(sa.duration_s, abs=frame_s)
    assert not [w for w in writer.warnings if "audio" in w]


def _audio_payloads(path):
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def test_audio_packets_are_byte_identical_when_copied(tmp_path):
    src = make_clip(tmp_path / "a.mp4", frames=25, audio=True)
    copy_video(src.path, tmp_path / "b.mkv")
    assert _audio_payloads(tmp_path / "b.mkv") == _audio_payloads(src.path)


def test_ac3_is_copied_not_reencoded_when_mp4_accepts_it(tmp_path):
    src = make_clip(tmp_path / "a.avi", frames=10, audio=True, audio_codec="ac3")
    copy_video(src.path, tmp_path / "b.mp4")
    assert probe(tmp_path / "b.mp4").audio[0].codec == "ac3"
    assert _audio_payloads(tmp_path / "b.mp4") == _audio_payloads(src.path)


def test_audio_is_reencoded_to_aac_when_container_rejects_its_codec(tmp_path):
    src = make_clip(tmp_path / "a.mkv", frames=10, audio=True, audio_codec="pcm_u8")
    writer = copy_video(src.path, tmp_path / "b.mp4")
    (before,), (after,) = probe(src.path).audio, probe(tmp_path / "b.mp4", count_frames=True).audio
    assert after.codec == "aac"
    assert (after.sample_rate, after.channels) == (before.sample_rate, before.channels)
    assert after.duration_s == pytest.approx(src.audio_duration_s, abs=0.03)
    assert any("re-encoded to AAC" in w for w in writer.warnings)


def test_audio_longer_than_video_is_kept_whole_when_copied(tmp_path):
    src = make_clip(tmp_path / "a.mp4", frames=10, audio=True, audio_seconds=1.5)
    copy_video(src.path, tmp_path / "b.mp4")
    (audio,) = probe(tmp_path / "b.mp4", count_frames=True).audio
    assert audio.duration_s == pytest.approx(1.5, abs=0.03)


def test_audio_is_interleaved_with_video_when_written(tmp_path):
    src = make_clip(tmp_path / "a.mp4", frames=100, audio=True, size_hw=(32, 32))
    copy_video(src.path, tmp_path / "b.mkv")
    with av.open(str(tmp_path / "b.mkv")) as c:
        kinds = [p.stream.type for p in c.demux() if p.size]
    first_half = kinds[: len(kinds) // 2]
    assert first_half.count("audio") > 10 and first_half.count("video") > 10


@pytest.mark.parametrize(
    ("src_ext", "codec", "dst_ext", "kept"),
    [
        ("mp4", "mov_text", "mp4", True),
        ("mkv", "subrip", "mkv", True),
        ("mkv", "subrip", "mp4", False),
    ],
)
def test_subtitles_are_copied_when_compatible_and_dropped_with_warning_otherwise(
    tmp_path, src_ext, codec, dst_ext, kept
):
    src = make_clip(tmp_path / f"s.{src_ext}", frames=5, subtitle_codec=codec)
    writer = copy_video(src.path, tmp_path / f"o.{dst_ext}")
    subtitles = probe(tmp_path / f"o.{dst_ext}").subtitles
    assert len(subtitles) == (1 if kept else 0)
    assert any("subtitle" in w for w in writer.warnings) is not kept


@pytest.mark.parametrize("tags", [None, ColorTags("bt470bg", "smpte170m", "bt470bg", "tv")])
def test_colour_tags_are_written_and_colours_kept_when_given(tmp_path, tags):
    colour = np.array([200, 40, 70], np.uint8)
    frames = np.tile(colour, (3, 64, 64, 1))
    path = tmp_path / "c.mp4"
    with VideoWriter(
        path, size_hw=(64, 64), time_base=Fraction(1, 25), fps=Fraction(25), crf=1, color=tags
    ) as w:
        w.write(frames, np.arange(3))
    info = probe(path)
    expected = tags or ColorTags()
    got = (info.color_primaries, info.color_trc, info.color_space, info.color_range)
    assert got == (expected.primaries, expected.trc, expected.space, expected.range)
    out, _, _ = read_all(path)
    assert np.abs(out.astype(int) - colour).max() <= 4


def test_rotation_tag_is_written_when_given(tmp_path):
    src = make_clip(tmp_path / "r.mp4", frames=3, size_hw=(32, 64), rotation=90)
    reader = read_chunks(src.path, 8, apply_rotation=False)
    with VideoWriter(
        tmp_path / "o.mp4",
        size_hw=(32, 64),
        time_base=reader.info.time_base,
        fps=reader.info.fps,
        rotation=reader.info.rotation,
    ) as w:
        for c in reader:
            w.write(c.frames, c.pts)
    assert probe(tmp_path / "o.mp4").rotation == 90
    np.testing.assert_array_equal(read_all(tmp_path / "o.mp4")[0].shape, (3, 64, 32, 3))


def test_hevc_10_bit_is_written_when_asked(tmp_path):
    src = make_clip(tmp_path / "s.mp4", frames=4)
    copy_video(src.path, tmp_path / "o.mp4", codec="hevc", pix_fmt="yuv420p10le")
    info = probe(tmp_path / "o.mp4")
    assert (info.codec, info.bit_depth, info.frame_count) == ("hevc", 10, 4)
    assert [decode_index(f) for f in read_all(tmp_path / "o.mp4")[0]] == [0, 1, 2, 3]


def test_odd_size_falls_back_to_full_chroma_with_warning_when_420_asked(tmp_path):
    src = make_clip(tmp_path / "s.mkv", frames=3, size_hw=(33, 47), pix_fmt="yuv444p")
    writer = copy_video(src.path, tmp_path / "o.mp4", pix_fmt="yuv420p")
    assert probe(tmp_path / "o.mp4").pix_fmt == "yuv444p"
    assert any("odd size" in w for w in writer.warnings)


def test_non_increasing_pts_are_refused_and_nothing_is_left_when_written(tmp_path):
    path = tmp_path / "o.mp4"
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with (
        pytest.raises(ValueError, match="increase"),
        VideoWriter(path, size_hw=(16, 16), time_base=Fraction(1, 25), fps=Fraction(25)) as w,
    ):
        w.write(frames, np.array([3, 3]))
    assert list(tmp_path.iterdir()) == []
