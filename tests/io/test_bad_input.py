"""Everything a user can get wrong ends in one typed, one-line error (vidrefine.errors)."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import pytest

from tests.media import make_clip
from vidrefine.errors import BadInput, OutputExists, OutputNotWritable
from vidrefine.io.atomic import check_output
from vidrefine.io.probe import probe
from vidrefine.io.reader import read_chunks
from vidrefine.io.writer import VideoWriter


def _audio_only(path):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000, layout="stereo")
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def _no_frames(path):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 16
        out.start_encoding()
    return path


def _cut_before_index(tmp_path):
    clip = make_clip(tmp_path / "whole.mp4", frames=10)
    data = clip.path.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index sits at the end
    return tmp_path / "cut.mp4"


BAD = {
    "missing": (lambda d: d / "nope.mp4", "no such file"),
    "folder": (lambda d: d, "is a folder"),
    "text_renamed": (lambda d: _write(d / "notes.mp4", b"hello\n" * 100), "not a media file"),
    "empty_file": (lambda d: _write(d / "empty.mp4", b""), "not a media file"),
    "audio_only": (lambda d: _audio_only(d / "song.m4a"), "no video stream"),
    "no_frames": (lambda d: _no_frames(d / "empty.avi"), "no frames"),
    "cut_before_index": (_cut_before_index, "no video stream|cut short"),
}


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", BAD)
def test_unusable_input_raises_one_line_bad_input_when_probed_or_read(tmp_path, case):
    make, phrase = BAD[case]
    path = make(tmp_path)
    for call in (lambda: probe(path), lambda: read_chunks(path, 4)):
        with pytest.raises(BadInput, match=phrase) as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message and str(path) in message


def test_output_equal_to_input_is_refused_when_named_directly_or_by_link(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=2).path
    link = tmp_path / "link.mp4"
    link.symlink_to(src)
    for out in (src, link, tmp_path / "." / "in.mp4"):
        with pytest.raises(BadInput, match="overwrite the input"):
            check_output(src, out, overwrite=True)


def test_existing_output_is_refused_without_overwrite_when_checked(tmp_path):
    (tmp_path / "o.mp4").write_bytes(b"x")
    with pytest.raises(OutputExists):
        check_output(None, tmp_path / "o.mp4", overwrite=False)
    assert check_output(None, tmp_path / "o.mp4", overwrite=True) == tmp_path / "o.mp4"


def test_missing_or_non_folder_parent_is_refused_when_checked(tmp_path):
    with pytest.raises(OutputNotWritable, match="does not exist"):
        check_output(None, tmp_path / "no" / "o.mp4", overwrite=False)
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(OutputNotWritable, match="not a folder"):
        check_output(None, tmp_path / "file" / "o.mp4", overwrite=False)
    with pytest.raises(OutputNotWritable, match="is a folder"):
        check_output(None, tmp_path, overwrite=True)


def test_read_only_folder_is_refused_when_checked(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user (root) can write into read-only folders")
        with pytest.raises(OutputNotWritable, match="cannot write"):
            check_output(None, folder / "o.mp4", overwrite=False)
    finally:
        folder.chmod(0o700)


def test_writer_refuses_bad_settings_before_creating_anything_when_constructed(tmp_path):
    common = dict(size_hw=(16, 16), time_base=Fraction(1, 25), fps=Fraction(25))
    for kwargs, phrase in (
        (dict(codec="vp9"), "unknown codec"),
        (dict(pix_fmt="rgb24"), "unknown pixel format"),
        (dict(rotation=45), "rotation"),
    ):
        with pytest.raises(BadInput, match=phrase):
            VideoWriter(tmp_path / "o.mp4", **common, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_to_save_an_empty_video_when_no_frame_was_written(tmp_path):
    with (
        pytest.raises(BadInput, match="no frames"),
        VideoWriter(
            tmp_path / "o.mp4", size_hw=(16, 16), time_base=Fraction(1, 25), fps=Fraction(25)
        ),
    ):
        pass
    assert list(tmp_path.iterdir()) == []
