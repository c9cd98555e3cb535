"""`MediaInfo` as JSON with ffprobe's field names (`vidrefine info --json`, docs/io.md)."""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

import av

if TYPE_CHECKING:
    from vidrefine.io.probe import (
        AudioStreamInfo,
        MediaInfo,
        SubtitleStreamInfo,
        VideoStreamInfo,
    )


def ffprobe_fields(info: MediaInfo) -> dict[str, Any]:
    """The JSON-safe dict `MediaInfo.to_dict` returns (see its docstring)."""
    height, width = info.size_hw
    shown_h, shown_w = info.display_hw
    out: dict[str, Any] = {
        "index": info.index,
        "codec_name": codec_name(info.codec),
        "width": width,
        "height": height,
        "pix_fmt": info.pix_fmt,
        "sample_aspect_ratio": _ratio(info.sar, ":"),
        "display_aspect_ratio": _ratio(Fraction(width) * info.sar / height, ":"),
        "color_range": info.color_range,
        "color_space": info.color_space,
        "color_transfer": info.color_trc,
        "color_primaries": info.color_primaries,
        "field_order": info.field_order,
        # FFmpeg's r_frame_rate is its guess of the timestamp grid; probe keeps only the
        # average, which is the same number when the rate is constant.
        "r_frame_rate": None if info.is_vfr else _ratio(info.fps),
        "avg_frame_rate": _ratio(info.fps),
        "time_base": _ratio(info.time_base),
        "duration": _seconds(info.duration_s),
        "nb_frames": str(info.frame_count),
    }
    out = {key: value for key, value in out.items() if value is not None}
    out.update(
        {
            "avg_frame_rate_float": float(info.fps),
            "measured_frame_rate": _ratio(info.fps_measured),
            "measured_frame_rate_float": _float(info.fps_measured),
            "is_vfr": info.is_vfr,
            "frame_count_counted": info.frame_count_counted,
            "frame_count_declared": info.frame_count_declared,
            "display_width": shown_w,
            "display_height": shown_h,
            "rotation": info.rotation,
            "bit_depth": info.bit_depth,
            "has_alpha": info.has_alpha,
            "interlaced": info.interlaced,
            "container": info.container,
            "path": str(info.path),
            "other_video": [_video_dict(v) for v in info.other_video],
            "audio": [_audio_dict(a) for a in info.audio],
            "subtitles": [_subtitle_dict(s) for s in info.subtitles],
        }
    )
    return out


def _ratio(value: Fraction | None, sep: str = "/") -> str | None:
    """A Fraction as ffprobe writes it: "30000/1001" (rates, time bases) or "16:9" (aspect)."""
    return None if value is None else f"{value.numerator}{sep}{value.denominator}"


def _float(value: Fraction | None) -> float | None:
    return None if value is None else float(value)


def _seconds(value: float | None) -> str | None:
    """Seconds as ffprobe writes a duration: "2.000000"."""
    return None if value is None else f"{value:.6f}"


def codec_name(decoder: str) -> str:
    """FFmpeg's codec name (ffprobe's codec_name) of a decoder: "libdav1d" -> "av1".

    Also "srt" -> "subrip": messages name codecs as ffprobe does.
    """
    try:
        return av.Codec(decoder, "r").canonical_name
    except (av.codec.codec.UnknownCodecError, ValueError):
        return decoder


def _tags(language: str | None) -> dict[str, Any]:
    """The `tags` object of a stream; absent when there is no tag to show, as in ffprobe."""
    return {"tags": {"language": language}} if language else {}


def _video_dict(stream: VideoStreamInfo) -> dict[str, Any]:
    """One video stream that is not refined, in ffprobe's names."""
    out: dict[str, Any] = {
        "index": stream.index,
        "codec_name": codec_name(stream.codec),
        "width": stream.width,
        "height": stream.height,
        "pix_fmt": stream.pix_fmt,
    }
    return {key: value for key, value in out.items() if value is not None}


def _audio_dict(stream: AudioStreamInfo) -> dict[str, Any]:
    """One audio stream in ffprobe's names; unknown fields are left out, as ffprobe does."""
    out: dict[str, Any] = {"index": stream.index, "codec_name": codec_name(stream.codec)}
    if stream.sample_rate:
        out["sample_rate"] = str(stream.sample_rate)
    if stream.channels:
        out["channels"] = stream.channels
    if stream.layout:
        out["channel_layout"] = stream.layout
    if stream.duration_s is not None:
        out["duration"] = _seconds(stream.duration_s)
    if stream.bit_rate:
        out["bit_rate"] = str(stream.bit_rate)
    return out | _tags(stream.language)


def _subtitle_dict(stream: SubtitleStreamInfo) -> dict[str, Any]:
    """One subtitle stream in ffprobe's names."""
    return {"index": stream.index, "codec_name": codec_name(stream.codec)} | _tags(stream.language)
