"""The streams of a media file beside the refined video: every video stream, audio and
subtitle streams, and the pixel-format facts (alpha, bit depth) the probe reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import av

if TYPE_CHECKING:
    from vidrefine.io.probe import _PacketScan


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream; duration_s is measured from packets when the file was scanned."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    layout: str
    duration_s: float | None
    bit_rate: int | None
    language: str | None


@dataclass(frozen=True)
class VideoStreamInfo:
    """One video stream of a file (vidrefine refines only the first)."""

    index: int
    codec: str
    width: int
    height: int
    pix_fmt: str | None


@dataclass(frozen=True)
class SubtitleStreamInfo:
    """One subtitle stream."""

    index: int
    codec: str
    language: str | None


def video_info(stream: av.VideoStream) -> VideoStreamInfo:
    """The facts `info` lists for one video stream."""
    ctx = stream.codec_context
    return VideoStreamInfo(stream.index, ctx.name, ctx.width, ctx.height, ctx.pix_fmt)


def has_alpha(pix_fmt: str | None) -> bool:
    """Whether a pixel format has an alpha component (yuva420p, rgba, argb, ...)."""
    if not pix_fmt:
        return False
    try:
        return any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)
    except ValueError:
        return False


def bit_depth(pix_fmt: str | None) -> int | None:
    """Bits per component of a pixel format (8, 10, ...)."""
    if not pix_fmt:
        return None
    try:
        return av.VideoFormat(pix_fmt).components[0].bits
    except (ValueError, IndexError):
        return None


def language(stream: av.stream.Stream) -> str | None:
    """The stream's language tag, None when absent or 'und'."""
    lang = stream.language or stream.metadata.get("language")
    return None if lang in (None, "", "und") else lang


def audio_info(
    stream: av.AudioStream, container: av.container.InputContainer, scan: _PacketScan | None
) -> AudioStreamInfo:
    """An AudioStreamInfo; its duration is measured from packets when they were scanned."""
    ctx = stream.codec_context
    if scan is not None and stream.index in scan.audio_end_s:
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        duration: float | None = scan.audio_end_s[stream.index] - start
    elif stream.duration is not None:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = None if container.duration is None else container.duration / 1_000_000
    return AudioStreamInfo(
        index=stream.index,
        codec=ctx.name,
        sample_rate=ctx.sample_rate,
        channels=ctx.channels,
        layout=ctx.layout.name,
        duration_s=duration,
        bit_rate=ctx.bit_rate or None,
        language=language(stream),
    )
