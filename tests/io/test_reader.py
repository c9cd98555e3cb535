"""read_chunks(): order, timestamps, rotation, colour, truncation, bounded memory."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction

import av
import numpy as np
import pytest

from tests.media import decode_index, make_clip, read_all
from vidrefine.io.reader import REORDER_WINDOW, TruncatedInputWarning, read_chunks


@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_frames_keep_order_and_source_pts_when_read_in_chunks(tmp_path, chunk):
    clip = make_clip(tmp_path / "c.mp4", frames=11)
    indices, times, starts = [], [], []
    for c in read_chunks(clip.path, chunk):
        assert c.frames.dtype == np.uint8 and c.frames.shape[1:] == (48, 64, 3)
        assert c.pts.dtype == np.int64 and len(c.pts) == len(c.frames) <= chunk
        starts.append(c.start_index)
        indices += [decode_index(f) for f in c.frames]
        times += [float(p * c.time_base) for p in c.pts]
    assert indices == list(range(11))
    assert times == pytest.approx(clip.times_s(), abs=1e-9)
    assert starts == list(range(0, 11, chunk))


def test_start_frame_skips_exactly_when_given(tmp_path):
    clip = make_clip(tmp_path / "s.mp4", frames=12, vfr=True)
    chunks = list(read_chunks(clip.path, 4, start_frame=5))
    assert chunks[0].start_index == 5
    frames = np.concatenate([c.frames for c in chunks])
    assert [decode_index(f) for f in frames] == list(range(5, 12))
    pts = np.concatenate([c.pts for c in chunks])
    assert [float(p * chunks[0].time_base) for p in pts] == pytest.approx(clip.times_s()[5:])


@pytest.mark.parametrize("ext", ["mp4", "avi"])
def test_frames_come_in_presentation_order_when_clip_has_b_frames(tmp_path, ext):
    clip = make_clip(tmp_path / f"b.{ext}", frames=24, bframes=True)
    frames, times, _ = read_all(clip.path)
    assert [decode_index(f) for f in frames] == list(range(24))
    assert np.all(np.diff(times) > 0)
    steps = np.diff(times)
    assert steps == pytest.approx(np.full(23, 0.04), abs=1e-9)


def _write_mislabelled(path, order):
    """Intra-only clip whose packet i shows picture i but carries timestamp order[i]."""
    out = av.open(str(path), "w")
    stream = out.add_stream("mpeg4", rate=25)
    stream.width = stream.height = 32
    stream.codec_context.gop_size = 1
    packets = []
    for i in range(len(order)):
        image = np.full((32, 32, 3), (12 * i) % 256, np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i
        packets += stream.encode(frame)
    packets += stream.encode(None)
    lag = max(i - stamp for i, stamp in enumerate(order))  # dts may not pass pts
    for i, (packet, stamp) in enumerate(zip(packets, order, strict=True)):
        packet.pts, packet.dts = stamp, max(0, i - lag)
        out.mux(packet)
    out.close()


def test_timestamps_are_sorted_but_frames_are_not_when_pts_are_mislabelled(tmp_path):
    # Decoders emit frames in presentation order; swapped labels (packed B-frames) are repaired.
    order = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9]
    _write_mislabelled(tmp_path / "swap.mkv", order)
    frames, times, _ = read_all(tmp_path / "swap.mkv")
    levels = frames.reshape(len(frames), -1).mean(axis=1) / 12
    assert np.round(levels).tolist() == list(range(10))
    assert times == pytest.approx([0.04 * i for i in range(10)], abs=1e-9)


def test_timestamps_stay_increasing_when_displaced_beyond_the_window(tmp_path):
    order = list(range(20))
    order[2], order[2 + REORDER_WINDOW + 3] = order[2 + REORDER_WINDOW + 3], order[2]
    _write_mislabelled(tmp_path / "far.mkv", order)
    _, times, _ = read_all(tmp_path / "far.mkv")
    assert len(times) == 20
    assert np.all(np.diff(times) > 0)


def test_missing_timestamps_get_constant_steps_when_stream_is_raw_h264(tmp_path):
    clip = make_clip(tmp_path / "raw.mkv", frames=8)
    raw = tmp_path / "raw.h264"
    with av.open(str(clip.path)) as src, av.open(str(raw), "w", format="h264") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.size:
                packet.stream = out
                dst.mux(packet)
    frames, times, reader = read_all(raw)
    assert [decode_index(f) for f in frames] == list(range(8))
    assert np.diff(times) == pytest.approx(np.full(7, 1 / float(reader.info.fps)))


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_is_applied_when_asked_and_not_otherwise(tmp_path, rotation):
    clip = make_clip(tmp_path / "r.mp4", frames=3, size_hw=(32, 64), rotation=rotation)
    upright, _, _ = read_all(clip.path)
    stored, _, _ = read_all(clip.path, apply_rotation=False)
    assert stored.shape[1:3] == (32, 64)
    assert [decode_index(f) for f in stored] == [0, 1, 2]
    k = rotation // 90
    np.testing.assert_array_equal(upright, np.rot90(stored, k=k, axes=(1, 2)))


ODD_AND_DEEP = [((33, 47), "yuv444p"), ((48, 64), "yuv420p10le"), ((31, 17), "yuv444p")]


@pytest.mark.parametrize(("size_hw", "pix_fmt"), ODD_AND_DEEP)
def test_odd_sizes_and_10_bit_decode_to_rgb24_when_read(tmp_path, size_hw, pix_fmt):
    clip = make_clip(tmp_path / "o.mp4", frames=5, size_hw=size_hw, pix_fmt=pix_fmt)
    frames, _, _ = read_all(clip.path)
    assert frames.shape == (5, *size_hw, 3) and frames.dtype == np.uint8
    assert [decode_index(f) for f in frames] == list(range(5))


@pytest.mark.parametrize("space", ["bt709", "bt470bg"])
def test_colours_come_back_when_tagged_matrix_is_used(tmp_path, space):
    from av.video.reformatter import Colorspace

    colour = np.array([200, 40, 70], np.uint8)  # saturated: 601 and 709 differ by ~20 levels
    path = tmp_path / "c.mp4"
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=25, options={"crf": "1"})
    stream.width = stream.height = 64
    ctx = stream.codec_context
    ctx.colorspace, ctx.color_range = (1, 1) if space == "bt709" else (5, 1)
    matrix = Colorspace.ITU709 if space == "bt709" else Colorspace.ITU601
    for i in range(2):
        rgb = av.VideoFrame.from_ndarray(np.tile(colour, (64, 64, 1)), format="rgb24")
        frame = rgb.reformat(format="yuv420p", dst_colorspace=matrix, dst_color_range=1)
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()
    frames, _, _ = read_all(path)
    error = np.abs(frames.astype(int) - colour).max()
    assert error <= 4


def _cut(path, fraction, dest):
    data = path.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def test_truncated_file_yields_what_decodes_and_warns_when_cut(tmp_path):
    clip = make_clip(tmp_path / "full.mkv", frames=40, size_hw=(64, 96))
    cut = _cut(clip.path, 0.5, tmp_path / "cut.mkv")
    with pytest.warns(TruncatedInputWarning, match="could not be read"):
        frames, _, reader = read_all(cut)
    assert 0 < len(frames) < 40
    assert [decode_index(f) for f in frames] == list(range(len(frames)))
    assert reader.lost_frames == 40 - len(frames)
    assert reader.warnings


def test_no_loss_is_reported_when_file_is_whole(tmp_path, recwarn):
    clip = make_clip(tmp_path / "whole.mkv", frames=12, vfr=True)
    _, _, reader = read_all(clip.path)
    assert reader.lost_frames == 0 and not reader.warnings
    assert not [w for w in recwarn if issubclass(w.category, TruncatedInputWarning)]


def _peak_bytes(path, chunk):
    tracemalloc.start()
    tracemalloc.reset_peak()
    for c in read_chunks(path, chunk):
        del c
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_peak_memory_stays_flat_when_clip_is_ten_times_longer(tmp_path):
    short = make_clip(tmp_path / "short.mp4", frames=100, size_hw=(64, 96), fps=Fraction(50))
    long = make_clip(tmp_path / "long.mp4", frames=1000, size_hw=(64, 96), fps=Fraction(50))
    ratio = _peak_bytes(long.path, 16) / _peak_bytes(short.path, 16)
    assert ratio <= 1.2


def test_kept_chunks_and_views_stay_intact_when_reader_recycles_buffers(tmp_path):
    clip = make_clip(tmp_path / "k.mp4", frames=24)
    kept = list(read_chunks(clip.path, 4))
    views = [c.frames[1:3] for c in read_chunks(clip.path, 4)]
    assert [decode_index(f) for c in kept for f in c.frames] == list(range(24))
    assert [decode_index(f) for v in views for f in v] == [
        4 * i + j for i in range(6) for j in (1, 2)
    ]
