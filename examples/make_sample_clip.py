"""Generate examples/sample.mp4: 3 s of moving shapes at 320x240, 25 fps, with a stereo tone.

The clip is made entirely by this script (PyAV + numpy), so it carries no licence of anyone
else's. Run it again to recreate the committed file:

    python3 examples/make_sample_clip.py [OUTPUT]
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT = 320, 240
FPS = Fraction(25)
SECONDS = 3
SAMPLE_RATE = 48_000
AUDIO_FRAME = 1024  # samples per AAC frame
TONES_HZ = (440.0, 660.0)  # left, right


def draw_frame(index: int) -> np.ndarray:
    """Frame `index` as (H, W, 3) uint8: a drifting gradient, a ball and a turning bar."""
    t = index / float(FPS)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    frame = np.empty((HEIGHT, WIDTH, 3), np.float32)
    frame[..., 0] = 40 + 60 * (xs / WIDTH)
    frame[..., 1] = 60 + 80 * (ys / HEIGHT)
    frame[..., 2] = 120 + 60 * np.sin(2 * np.pi * (xs / WIDTH + 0.3 * t))
    # A ball bouncing left to right.
    cx = WIDTH * (0.15 + 0.7 * abs(((t / 1.5) % 2) - 1))
    cy = HEIGHT * (0.5 + 0.25 * np.sin(2 * np.pi * t / 1.2))
    ball = (xs - cx) ** 2 + (ys - cy) ** 2 < 28**2
    frame[ball] = (235, 200, 40)
    # A bar turning about the centre.
    angle = 0.8 * t
    u = (xs - WIDTH / 2) * np.cos(angle) + (ys - HEIGHT / 2) * np.sin(angle)
    v = -(xs - WIDTH / 2) * np.sin(angle) + (ys - HEIGHT / 2) * np.cos(angle)
    bar = (np.abs(u) < 70) & (np.abs(v) < 8)
    frame[bar] = (230, 60, 70)
    return np.clip(frame, 0, 255).astype(np.uint8)


def tone(start: int, count: int) -> np.ndarray:
    """`count` stereo samples from sample index `start` as (2, count) float32 (planar)."""
    n = np.arange(start, start + count, dtype=np.float64) / SAMPLE_RATE
    return np.stack([0.2 * np.sin(2 * np.pi * f * n) for f in TONES_HZ]).astype(np.float32)


def write_clip(path: Path) -> None:
    """Write the clip: H.264 yuv420p video and AAC stereo audio, interleaved as they go."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"crf": "23", "preset": "slow"}
        audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        audio.bit_rate = 64_000
        total_audio = SECONDS * SAMPLE_RATE
        written_audio = 0
        for index in range(int(SECONDS * FPS)):
            frame = av.VideoFrame.from_ndarray(draw_frame(index), format="rgb24")
            frame.pts = index
            frame.time_base = 1 / FPS
            container.mux(video.encode(frame))
            # Keep audio up to the end of this video frame.
            until = min(total_audio, int((index + 1) / FPS * SAMPLE_RATE))
            while written_audio < until:
                count = min(AUDIO_FRAME, total_audio - written_audio)
                samples = av.AudioFrame.from_ndarray(
                    tone(written_audio, count), format="fltp", layout="stereo"
                )
                samples.sample_rate = SAMPLE_RATE
                samples.pts = written_audio
                samples.time_base = Fraction(1, SAMPLE_RATE)
                container.mux(audio.encode(samples))
                written_audio += count
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("sample.mp4")
    write_clip(out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
