"""Generate small seeded clips with PyAV for tests (any helper may import this).

Each frame shows its own index as a 4x4 grid of bright/dark blocks (16 bits), coarse enough to
survive lossy coding, so `decode_index(frame)` tells which source frame a decoded frame is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GRID = 4  # GRID x GRID blocks -> 16 bits of frame index
DARK, BRIGHT = 40, 215
FOOTAGE = Path(__file__).resolve().parents[1].parent / "shared" / "footage"


@dataclass
class Clip:
    """What make_clip wrote. pts are in time_base; durations in seconds."""

    path: Path
    pts: list[int]
    time_base: Fraction
    fps: Fraction
    size_hw: tuple[int, int]
    rotation: int
    duration_s: float
    audio_duration_s: float | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None
    subtitles: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.pts)

    def times_s(self) -> list[float]:
        return [float(p * self.time_base) for p in self.pts]


def pattern_frame(index: int, size_hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: bit b of `index` lights block b (row-major); a seeded tint per clip."""
    height, width = size_hw
    rows = (np.arange(height) * GRID) // height  # block row of each pixel row
    cols = (np.arange(width) * GRID) // width
    on = (index >> np.arange(GRID * GRID).reshape(GRID, GRID)) & 1  # block b lit: bit b
    tint = np.random.default_rng(seed).integers(-15, 16, size=3)
    blocks = np.where(on[..., None] == 1, BRIGHT + tint, DARK + tint).astype(np.uint8)
    return blocks.take(rows, axis=0).take(cols, axis=1)  # each pixel takes its block's colour


def decode_index(frame: np.ndarray) -> int:
    """Read back the index drawn by pattern_frame from the centre of each block ((H, W, 3))."""
    height, width = frame.shape[:2]
    gray = frame.astype(np.float32).mean(axis=2)
    value = 0
    for b in range(GRID * GRID):
        r, c = divmod(b, GRID)
        y0, y1 = (r * height) // GRID, ((r + 1) * height) // GRID
        x0, x1 = (c * width) // GRID, ((c + 1) * width) // GRID
        qy, qx = max(1, (y1 - y0) // 4), max(1, (x1 - x0) // 4)
        centre = gray[y0 + qy : y1 - qy or None, x0 + qx : x1 - qx or None]
        if centre.size and centre.mean() > (DARK + BRIGHT) / 2:
            value |= 1 << b
    return value


def clip_pts(
    frames: int, fps: Fraction, vfr: bool, seed: int, ticks: int = 4
) -> tuple[list[int], Fraction]:
    """Timestamps at `ticks` per nominal frame; VFR draws each step from 1..12 ticks."""
    time_base = 1 / (Fraction(fps) * ticks)
    if not vfr:
        return [ticks * i for i in range(frames)], time_base
    steps = np.random.default_rng(seed).choice([1, 2, 4, 6, 12], size=max(0, frames - 1))
    return [0, *np.cumsum(steps).tolist()], time_base


def make_clip(
    path: str | Path,
    *,
    frames: int = 10,
    size_hw: tuple[int, int] = (48, 64),
    fps: Fraction = Fraction(25),
    pix_fmt: str = "yuv420p",
    codec: str | None = None,
    audio: bool = False,
    audio_codec: str = "aac",
    audio_seconds: float | None = None,
    audio_rate: int = 48000,
    audio_layout: str = "stereo",
    vfr: bool = False,
    bframes: bool = False,
    rotation: int = 0,
    color_space: str | None = None,
    subtitle_codec: str | None = None,
    extra_video: bool = False,
    field_order: str | None = None,
    seed: int = 0,
) -> Clip:
    """Write a clip of pattern frames; returns what was written.

    codec defaults to libx264 (mpeg4 for .avi). rotation is counter-clockwise degrees written as a
    display matrix. color_space "bt709" or "bt470bg" converts and tags with that matrix (limited
    range); None leaves the stream untagged (converted with swscale's default, BT.601).
    extra_video adds a second (half-size H.264) video stream after the first; field_order "tt"
    or "bb" encodes interlaced H.264 (top or bottom field first).
    """
    path = Path(path)
    ticks = 1 if path.suffix.lower() == ".avi" else 4  # AVI is constant-rate at 1/fps
    pts, time_base = clip_pts(frames, fps, vfr, seed, ticks)
    duration_s = float((pts[-1] + ticks) * time_base) if pts else 0.0
    out = av.open(str(path), mode="w")
    video = _video_stream(
        out, path, codec, fps, size_hw, pix_fmt, bframes, time_base, field_order=field_order
    )
    extras = []
    if extra_video:
        half_hw = (size_hw[0] // 4 * 2, size_hw[1] // 4 * 2)
        extras.append(_video_stream(out, path, None, fps, half_hw, "yuv420p", False, time_base))
    if rotation:
        video.set_display_rotation(rotation)
    if color_space:
        _tag_colour(video, color_space)
    clip = Clip(path, pts, time_base, Fraction(fps), size_hw, rotation % 360, duration_s)
    audio_packets = iter(())
    if audio:
        seconds = duration_s if audio_seconds is None else audio_seconds
        audio_packets = _audio_packets(out, audio_codec, audio_rate, audio_layout, seconds, seed)
        clip.audio_duration_s, clip.audio_rate = seconds, audio_rate
        clip.audio_channels = av.AudioLayout(audio_layout).nb_channels
    subtitle = _subtitle_packet(out, subtitle_codec, clip) if subtitle_codec else None
    pending = next(audio_packets, None)
    for i, stamp in enumerate(pts):
        frame = av.VideoFrame.from_ndarray(pattern_frame(i, size_hw, seed), format="rgb24")
        if color_space:
            frame = _convert(frame, video.pix_fmt, color_space)
        frame.pts, frame.time_base = stamp, time_base
        for packet in video.encode(frame):
            out.mux(packet)
        for stream in extras:
            small = frame.reformat(width=stream.width, height=stream.height, format="yuv420p")
            small.pts, small.time_base = stamp, time_base
            for packet in stream.encode(small):
                out.mux(packet)
        while pending is not None and pending[0] <= float(stamp * time_base):
            out.mux(pending[1])
            pending = next(audio_packets, None)
    for stream in (video, *extras):
        for packet in stream.encode(None):
            out.mux(packet)
    while pending is not None:
        out.mux(pending[1])
        pending = next(audio_packets, None)
    if subtitle is not None:
        out.mux(subtitle)
    out.close()
    return clip


def _video_stream(out, path, codec, fps, size_hw, pix_fmt, bframes, time_base, field_order=None):
    avi = path.suffix.lower() == ".avi"
    codec = codec or ("mpeg4" if avi else "libx264")
    options = {"bf": "2" if bframes else "0"} if codec == "libx264" else {}
    if codec == "libx264":
        options["preset"] = "veryfast"
        options["crf"] = "20"
        if field_order:  # "tt" or "bb"
            options["x264-params"] = f"interlaced=1:{field_order[0]}ff=1"
    stream = out.add_stream(codec, rate=fps, options=options)
    stream.height, stream.width = size_hw
    stream.pix_fmt = pix_fmt
    stream.codec_context.time_base = time_base
    if codec == "mpeg4":
        stream.codec_context.max_b_frames = 2 if bframes else 0
        stream.codec_context.qscale = 3
        stream.codec_context.flags |= av.codec.context.Flags.qscale
    return stream


_MATRICES = {"bt709": ("ITU709", 1, 1, 1), "bt470bg": ("ITU601", 5, 6, 5)}


def _tag_colour(stream, space: str) -> None:
    _, primaries, trc, colorspace = _MATRICES[space]
    ctx = stream.codec_context
    ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = (
        primaries,
        trc,
        colorspace,
        1,
    )


def _convert(frame, pix_fmt: str, space: str):
    from av.video.reformatter import ColorRange, Colorspace

    return frame.reformat(
        format=pix_fmt,
        dst_colorspace=getattr(Colorspace, _MATRICES[space][0]),
        dst_color_range=ColorRange.MPEG,
    )


def _audio_packets(out, codec, rate, layout, seconds, seed):
    """Yield (time_s, packet) for a seeded sine tone of `seconds`, encoded with `codec`."""
    stream = out.add_stream(codec, rate=rate, layout=layout)
    fmt = stream.codec_context.codec.audio_formats[0]
    channels = av.AudioLayout(layout).nb_channels
    total = round(seconds * rate)
    hz = 220 + 110 * (seed % 4)
    step = stream.codec_context.frame_size or 1024

    def generate():
        for start in range(0, total, step):
            n = min(step, total - start)
            t = (start + np.arange(n)) / rate
            wave = 0.3 * np.sin(2 * np.pi * hz * t)
            frame = av.AudioFrame.from_ndarray(_samples(wave, fmt, channels), fmt.name, layout)
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                yield float(packet.pts * packet.time_base), packet
        for packet in stream.encode(None):
            yield float(packet.pts * packet.time_base), packet

    return generate()


def _samples(wave: np.ndarray, fmt, channels: int) -> np.ndarray:
    kind = {"flt": np.float32, "dbl": np.float64, "s16": np.int16, "s32": np.int32, "u8": np.uint8}
    dtype = kind[fmt.name.rstrip("p")]
    if dtype == np.int16:
        data = (wave * 32767).astype(dtype)
    elif dtype == np.int32:
        data = (wave * 2**31 * 0.99).astype(dtype)
    elif dtype == np.uint8:
        data = (wave * 127 + 128).astype(dtype)
    else:
        data = wave.astype(dtype)
    stacked = np.repeat(data[None, :], channels, axis=0)  # (C, N) planar
    return stacked if fmt.is_planar else stacked.T.reshape(1, -1)  # packed: (1, N*C)


def _subtitle_packet(out, codec: str, clip: Clip) -> av.Packet:
    """One cue at 0..0.2 s; mov_text carries a 2-byte length before the text."""
    stream = out.add_mux_stream(codec)
    stream.time_base = Fraction(1, 1000)
    text = b"vidrefine test cue"
    data = len(text).to_bytes(2, "big") + text if codec == "mov_text" else text
    packet = av.Packet(data)
    packet.stream, packet.time_base = stream, Fraction(1, 1000)
    packet.pts = packet.dts = 0
    packet.duration = 200
    clip.subtitles = [text.decode()]
    return packet


def read_all(path, **kwargs):
    """All frames (T, H, W, 3), pts in seconds, and the reader (for its counters)."""
    from vidrefine.io.reader import read_chunks

    reader = read_chunks(path, 7, **kwargs)
    frames, times = [], []
    for chunk in reader:
        frames.append(chunk.frames)
        times += [float(p * chunk.time_base) for p in chunk.pts]
    stacked = np.concatenate(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)
    return stacked, times, reader


def trim_clip(src: str | Path, dst: str | Path, frames: int) -> Path:
    """The first `frames` frames of `src` (H.264, its size and frame rate) and its audio up to
    the same time (AAC), written to `dst`: a shorter copy of a real clip.
    """
    with av.open(str(src)) as source, av.open(str(dst), mode="w") as out:
        video_in, audio_in = source.streams.video[0], source.streams.audio[0]
        video = out.add_stream("libx264", rate=video_in.average_rate, options={"crf": "18"})
        video.width, video.height, video.pix_fmt = video_in.width, video_in.height, "yuv420p"
        audio = out.add_stream("aac", rate=audio_in.rate, layout=audio_in.layout.name)
        end_s = frames / float(video_in.average_rate)
        for i, frame in enumerate(source.decode(video_in)):
            if i == frames:
                break
            frame.pts, frame.time_base = i, 1 / video_in.average_rate
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        source.seek(0)
        for frame in source.decode(audio_in):
            if frame.time is not None and frame.time >= end_s:
                break
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return Path(dst)
