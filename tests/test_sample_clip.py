"""The committed example clip exists, is small, and probes as its generator script says."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

CLIP = Path(__file__).resolve().parents[1] / "examples" / "sample.mp4"


def test_sample_clip_is_committed_and_small_when_checked_out():
    assert CLIP.is_file()
    assert CLIP.stat().st_size < 500_000


def test_sample_clip_has_video_and_stereo_audio_of_three_seconds_when_probed():
    with av.open(str(CLIP)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert (video.codec_context.width, video.codec_context.height) == (320, 240)
        assert video.average_rate == Fraction(25)
        assert audio.codec_context.name == "aac"
        assert audio.codec_context.channels == 2
        assert abs(float(audio.duration * audio.time_base) - 3.0) < 0.1
        frames = [frame.pts for frame in container.decode(video=0)]
    assert len(frames) == 75
    assert frames == sorted(frames)


def test_sample_clip_has_a_sidecar_caption_when_used_by_the_readme():
    caption = CLIP.with_suffix(".txt").read_text()
    assert len(caption.split()) > 40  # the model was trained on long descriptions
