"""Real clips from ../shared/footage (OpenCV samples): B-frames + AC-3, a damaged copy, VFR.

Facts asserted here were checked with PyAV 18 (see docs/io.md): Megamind.avi runs at 2997/125
(23.976) fps, not the 29.97 its README row says.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from tests.media import FOOTAGE, read_all
from vidrefine.io.probe import probe
from vidrefine.io.reader import read_chunks
from vidrefine.io.writer import VideoWriter

pytestmark = [
    pytest.mark.footage,
    pytest.mark.skipif(not FOOTAGE.is_dir(), reason="../shared/footage is absent"),
]
MEGAMIND, BUGGY, TREE = (FOOTAGE / n for n in ("Megamind.avi", "Megamind_bugy.avi", "tree.avi"))


def _small(frames):
    return frames[:, ::8, ::8].astype(np.float32).mean(axis=-1)


def _motion(frames):
    """Mean absolute change between consecutive frames: lower when the order is right."""
    return float(np.abs(np.diff(_small(frames), axis=0)).mean())


def test_megamind_facts_when_probed():
    info = probe(MEGAMIND)
    assert info.fps == Fraction(2997, 125)
    assert (info.frame_count, info.size_hw, info.codec) == (270, (528, 720), "mpeg4")
    (audio,) = info.audio
    assert (audio.codec, audio.sample_rate, audio.channels) == ("ac3", 48000, 2)
    assert audio.duration_s == pytest.approx(11.26, abs=0.01)


def test_megamind_frames_keep_decoder_order_with_repaired_pts_when_read():
    frames, times, reader = read_all(MEGAMIND)
    assert len(frames) == 270 and reader.lost_frames == 0
    assert np.all(np.diff(times) > 0)
    with av.open(str(MEGAMIND)) as c:
        naive = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    labels = [p for p, _ in naive]
    assert labels != sorted(labels)  # the file really mislabels its frames
    np.testing.assert_array_equal(frames, np.stack([a for _, a in naive]))
    by_label = np.stack([a for _, a in sorted(naive, key=lambda x: x[0])])
    assert _motion(frames) < 0.9 * _motion(by_label)  # sorting frames by label would jerk
    assert times[:3] == pytest.approx([float(p * Fraction(125, 2997)) for p in (1, 2, 3)])


def test_buggy_copy_shows_the_same_pictures_when_read():
    info = probe(BUGGY)
    assert (info.frame_count, info.fps, info.audio) == (270, Fraction(30), ())
    good, _, _ = read_all(MEGAMIND)
    bad, times, reader = read_all(BUGGY)
    assert len(bad) == 270 and reader.lost_frames == 0 and np.all(np.diff(times) > 0)
    same = np.abs(_small(good) - _small(bad)).mean()
    neighbour = np.abs(_small(good[1:]) - _small(bad[:-1])).mean()
    assert same < 0.5 * neighbour


def test_tree_vfr_facts_when_probed_and_read():
    info = probe(TREE)
    assert (info.frame_count, info.frame_count_declared, info.is_vfr) == (68, 444, True)
    assert info.frame_count_counted
    chunks = list(read_chunks(TREE, 16))
    pts = np.concatenate([c.pts for c in chunks])
    assert len(pts) == 68 and pts[:5].tolist() == [0, 11, 17, 24, 31]
    assert float(info.fps_measured) == pytest.approx(67 / (443 * 0.066667), rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("src", [MEGAMIND, TREE], ids=["megamind", "tree"])
def test_real_clip_survives_a_round_trip_when_rewritten(tmp_path, src):
    reader = read_chunks(src, 32)
    info = reader.info
    out = tmp_path / "out.mp4"
    with VideoWriter(
        out,
        size_hw=info.display_hw,
        time_base=info.time_base,
        fps=info.fps,
        preset="ultrafast",
        crf=23,
        audio_from=src,
    ) as writer:
        for c in reader:
            writer.write(c.frames, c.pts)
    after = probe(out, count_frames=True)
    assert after.frame_count == info.frame_count
    assert after.is_vfr == info.is_vfr
    frame_s = float(1 / info.fps)
    assert after.duration_s == pytest.approx(info.duration_s, abs=frame_s)
    assert [a.codec for a in after.audio] == [a.codec for a in info.audio]  # AC-3 copied
    for a, b in zip(info.audio, after.audio, strict=True):
        assert b.duration_s == pytest.approx(a.duration_s, abs=frame_s)
    _, before_t, _ = read_all(src)
    _, after_t, _ = read_all(out)
    # MP4 stores a start offset (Megamind starts at pts 1) in milliseconds: allow 1 ms.
    assert after_t == pytest.approx(before_t, abs=max(float(after.time_base), 1e-3))
