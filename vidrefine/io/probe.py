"""What a media file holds: size, timing (fps, time base, VFR), rotation, colour, streams.

Header facts are checked against the packets where headers are known to lie (AVI frame counts,
variable frame rate); see docs/io.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vidrefine.errors import BadInput
from vidrefine.io.color import PRIMARIES, RANGES, SPACES, TRANSFERS, name_of
from vidrefine.io.streams import (
    AudioStreamInfo,
    SubtitleStreamInfo,
    VideoStreamInfo,
    audio_info,
    bit_depth,
    has_alpha,
    language,
    video_info,
)

# Demuxers whose declared frame count comes from a per-sample index (exact), so no count is needed.
_INDEXED_FORMATS = ("mov", "mp4")
# FFmpeg's AVFieldOrder codes as ffprobe names them (0, unknown, is left out).
_FIELD_ORDERS = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
# The field shown first: tb/bt are coded in one order and shown in the other.
_FIELD_ORDER_TEXT = {
    "progressive": "progressive",
    "tt": "top field first",
    "bt": "top field first",
    "bb": "bottom field first",
    "tb": "bottom field first",
}


@dataclass(frozen=True)
class MediaInfo:
    """Facts about the first video stream of a file and the streams that travel with it.

    size_hw is the coded (stored) picture; display_hw is what a player shows after the sample
    aspect ratio and the rotation. rotation is counter-clockwise degrees (0/90/180/270) that turn
    the stored picture upright, PyAV's `VideoFrame.rotation` convention. fps is the nominal rate
    from the header; fps_measured comes from packet timestamps when they were scanned. frame_count
    is the counted number when frame_count_counted, else the declared (or estimated) one.
    index is the refined stream's index in the file; video_streams lists every video stream, the
    refined one first. has_alpha: the decoded pictures carry an alpha channel (which vidrefine
    drops). field_order is FFmpeg's name ("progressive", "tt", "bb", "tb", "bt"; None when the
    file does not say); interlaced is True when the first frame or the field order says so.
    """

    path: Path
    container: str
    duration_s: float | None
    size_hw: tuple[int, int]
    display_hw: tuple[int, int]
    sar: Fraction
    dar: Fraction
    rotation: int
    fps: Fraction
    fps_measured: Fraction | None
    time_base: Fraction
    frame_count: int
    frame_count_declared: int | None
    frame_count_counted: bool
    codec: str
    pix_fmt: str | None
    bit_depth: int | None
    color_primaries: str | None
    color_trc: str | None
    color_space: str | None
    color_range: str | None
    audio: tuple[AudioStreamInfo, ...]
    subtitles: tuple[SubtitleStreamInfo, ...]
    is_vfr: bool
    index: int = 0
    video_streams: tuple[VideoStreamInfo, ...] = ()
    has_alpha: bool = False
    field_order: str | None = None
    interlaced: bool = False

    @property
    def other_video(self) -> tuple[VideoStreamInfo, ...]:
        """The video streams that are not refined (and not written)."""
        return tuple(v for v in self.video_streams if v.index != self.index)

    @property
    def field_order_text(self) -> str:
        """People's words for the field order: "top field first", "progressive", ..."""
        return _FIELD_ORDER_TEXT.get(self.field_order or "", "field order unknown")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (`vidrefine info --json`) that speaks ffprobe's field names.

        Facts ffprobe also reports use `ffprobe -show_streams` names, spelling and types (rates
        and time base as "num/den" strings, durations as "%f" strings, counts and sample rates
        as strings) and, as in ffprobe, are left out when unknown. vidrefine's own facts use
        their own names and are always present (null when unknown). See docs/io.md.
        """
        from vidrefine.io.ffprobe import ffprobe_fields

        return ffprobe_fields(self)


@dataclass
class _PacketScan:
    """What one demux pass (no decoding) found."""

    video_pts: np.ndarray  # int64 (N,), sorted, one per non-empty video packet with a timestamp
    video_packets: int  # non-empty video packets, with or without a timestamp
    audio_end_s: dict[int, float]  # stream index -> end of its last packet


def open_input(path: str | Path) -> tuple[Path, av.container.InputContainer]:
    """Open a file for reading, turning every way it can fail into a one-line BadInput."""
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{p}: no such file")
    if p.is_dir():
        raise BadInput(f"{p}: is a folder, not a video file")
    try:
        container = av.open(str(p), mode="r")
    except av.error.PermissionError as err:
        raise BadInput(f"{p}: cannot be read (permission denied)") from err
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise BadInput(
            f"{p}: not a media file FFmpeg can read, or it is empty or cut short ({reason})"
        ) from err
    return p, container


def video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    """The first video stream, or BadInput saying why there is none."""
    if container.streams.video:
        return container.streams.video[0]
    container.close()
    if container.streams.audio:
        raise BadInput(f"{path}: has audio but no video stream; vidrefine needs a video")
    raise BadInput(
        f"{path}: has no video stream (not a video, or an MP4/MOV cut short before its index)"
    )


def probe(path: str | Path, *, count_frames: bool | None = None) -> MediaInfo:
    """Read what `path` holds. Raises BadInput for anything that is not a readable video.

    Args:
        path: the media file.
        count_frames: demux every packet (no decoding) to count frames and measure fps. None
            counts unless the header can be trusted (an MP4/MOV index on a constant-rate stream).
    """
    p, container = open_input(path)
    with container:
        stream = video_stream(container, p)
        declared = stream.frames or None
        cut_short = _index_past_end(stream, p)
        if count_frames is None:
            count_frames = cut_short or _header_is_doubtful(container, stream, declared)
        first = _first_frame(container, stream, p, declared, cut_short=cut_short)
        scan = _scan_packets(p) if count_frames else None
        return _assemble(p, container, stream, first, declared, scan)


def _header_is_doubtful(
    container: av.container.InputContainer, stream: av.VideoStream, declared: int | None
) -> bool:
    """Whether the frame count or rate in the header may be wrong (so packets must be counted)."""
    if declared is None or not any(f in container.format.name for f in _INDEXED_FORMATS):
        return True
    # A mismatch between the mean rate and FFmpeg's guessed base rate signals VFR.
    average, base = stream.average_rate, stream.base_rate
    return bool(average and base and abs(float(average) / float(base) - 1) > 0.01)


def _index_past_end(stream: av.VideoStream, path: Path) -> bool:
    """Whether the stream's index points past the end of the file: an MP4/MOV whose index is at
    the front (faststart) that was cut short. Its header then promises frames it does not hold.
    """
    entries = getattr(stream, "index_entries", None)  # PyAV 15+
    if not entries:
        return False
    try:
        size = path.stat().st_size
    except OSError:
        return False
    last = entries[len(entries) - 1]  # decode order, which is file order in an MP4
    return last.pos is not None and last.pos >= 0 and last.pos + last.size > size


def _first_frame(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    path: Path,
    declared: int | None,
    *,
    cut_short: bool,
) -> av.VideoFrame:
    """Decode one frame: rotation and colour tags live on frames, and it proves there is one.

    Damaged packets are skipped, as the reader skips them; a file of which no frame decodes is
    one plain BadInput line (never FFmpeg's function names).
    """
    damaged = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                damaged += 1
                continue
            if frames:
                return frames[0]
    except av.FFmpegError:
        damaged += 1  # the file ends or breaks while demuxing: the same for the user
    if cut_short or damaged:
        what = "is cut short" if cut_short else "is damaged"
        of = f"0 of {declared} frames" if declared else "no frame"
        raise BadInput(f"{path}: {what}: {of} could be read")
    raise BadInput(f"{path}: the video stream has no frames")


def _scan_packets(path: Path) -> _PacketScan:
    """Demux video and audio packets of the whole file (cheap: nothing is decoded)."""
    pts: list[int] = []
    packets = 0
    tail_cut = False  # the last video packet was cut off by the end of the file
    tail_stamped = False
    audio_end: dict[int, float] = {}
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        wanted = [video, *container.streams.audio]
        try:
            for packet in container.demux(wanted):
                if not packet.size:
                    continue
                stamp = packet.pts if packet.pts is not None else packet.dts
                if packet.stream.index == video.index:
                    packets += 1
                    tail_cut = bool(getattr(packet, "is_corrupt", False))
                    tail_stamped = stamp is not None
                    if stamp is not None:
                        pts.append(stamp)
                elif stamp is not None:
                    end = float((stamp + (packet.duration or 0)) * packet.time_base)
                    index = packet.stream.index
                    audio_end[index] = max(audio_end.get(index, end), end)
        except av.FFmpegError:
            pass  # a damaged tail: what was read so far is the answer
    if tail_cut:  # a frame whose data the file lost cannot be decoded: do not count it
        packets -= 1
        if tail_stamped:
            pts.pop()
    return _PacketScan(np.sort(np.asarray(pts, dtype=np.int64)), packets, audio_end)


def _timing(
    stream: av.VideoStream, scan: _PacketScan | None
) -> tuple[Fraction, Fraction | None, bool]:
    """Nominal fps, measured fps and whether the rate varies."""
    time_base = stream.time_base or Fraction(1, 90000)
    nominal = stream.average_rate or stream.guessed_rate or stream.base_rate
    if scan is not None and len(scan.video_pts) < 2:
        return Fraction(nominal or 25), None, False  # no timestamps: frames get a constant rate
    if scan is None:
        is_vfr = bool(
            stream.average_rate
            and stream.base_rate
            and abs(float(stream.average_rate) / float(stream.base_rate) - 1) > 0.01
        )
        return Fraction(nominal or 25), None, is_vfr
    deltas = np.diff(scan.video_pts)
    span = int(scan.video_pts[-1] - scan.video_pts[0])
    measured = Fraction(len(deltas)) / (span * time_base) if span > 0 else None
    # Rounded timestamps jitter by one tick on constant-rate files (e.g. 33/34 ms at 1/1000).
    spread = int(deltas.max() - deltas.min()) if len(deltas) else 0
    is_vfr = spread > max(1, int(0.02 * float(np.median(deltas))))
    return Fraction(nominal or measured or 25), measured, is_vfr


def _duration_s(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """The video stream's declared duration; the container's when the stream has none."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION")  # Matroska writes one per stream
    if tag:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None if container.duration is None else container.duration / 1_000_000


def _rotation(stream: av.VideoStream, first: av.VideoFrame | None) -> int:
    """Counter-clockwise degrees, from the display matrix, else a legacy clockwise `rotate` tag."""
    degrees = int(round(first.rotation)) if first is not None and first.rotation else 0
    if not degrees and "rotate" in stream.metadata:
        degrees = -int(float(stream.metadata["rotate"]))
    return (round(degrees / 90) * 90) % 360


def _assemble(
    path: Path,
    container: av.container.InputContainer,
    stream: av.VideoStream,
    first: av.VideoFrame | None,
    declared: int | None,
    scan: _PacketScan | None,
) -> MediaInfo:
    """Collect the facts into a MediaInfo."""
    ctx = stream.codec_context
    size_hw = (ctx.height, ctx.width)
    sar = Fraction(ctx.sample_aspect_ratio or stream.sample_aspect_ratio or 1)
    if sar <= 0:
        sar = Fraction(1)
    rotation = _rotation(stream, first)
    shown_hw = (size_hw[0], max(1, round(size_hw[1] * sar)))
    display_hw = shown_hw[::-1] if rotation in (90, 270) else shown_hw
    fps, fps_measured, is_vfr = _timing(stream, scan)
    duration_s = _duration_s(container, stream)
    if scan is not None:
        frame_count = scan.video_packets
    elif declared is not None:
        frame_count = declared
    else:
        frame_count = round((duration_s or 0) * fps)
    fmt = (first.format.name if first is not None else None) or ctx.pix_fmt
    field_order = _FIELD_ORDERS.get(getattr(ctx, "field_order", 0) or 0)
    return MediaInfo(
        path=path,
        container=container.format.name,
        duration_s=duration_s,
        size_hw=size_hw,
        display_hw=(int(display_hw[0]), int(display_hw[1])),
        sar=sar,
        dar=Fraction(display_hw[1], display_hw[0]),
        rotation=rotation,
        fps=fps,
        fps_measured=fps_measured,
        time_base=Fraction(stream.time_base or Fraction(1, 90000)),
        frame_count=frame_count,
        frame_count_declared=declared,
        frame_count_counted=scan is not None,
        codec=ctx.name,
        pix_fmt=fmt,
        bit_depth=bit_depth(fmt),
        color_primaries=name_of(PRIMARIES, first.color_primaries if first else None),
        color_trc=name_of(TRANSFERS, first.color_trc if first else None),
        color_space=name_of(SPACES, first.colorspace if first else None),
        color_range=name_of(RANGES, first.color_range if first else None),
        audio=tuple(audio_info(s, container, scan) for s in container.streams.audio),
        subtitles=tuple(
            SubtitleStreamInfo(s.index, s.codec_context.name, language(s))
            for s in container.streams.subtitles
        ),
        is_vfr=is_vfr,
        index=stream.index,
        video_streams=tuple(video_info(s) for s in _refined_first(container, stream)),
        has_alpha=has_alpha(fmt),
        field_order=field_order,
        interlaced=bool(first is not None and first.interlaced_frame)
        or field_order not in (None, "progressive"),
    )


def _refined_first(
    container: av.container.InputContainer, stream: av.VideoStream
) -> list[av.VideoStream]:
    return [stream, *(s for s in container.streams.video if s.index != stream.index)]
