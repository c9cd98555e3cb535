"""Encode RGB frames at the timestamps given, carry the source's audio, publish atomically.

Behaviour (timing, audio policy, colour tags, rotation) is described in docs/io.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from vidrefine.config import PIX_FMTS
from vidrefine.errors import BadInput
from vidrefine.io.atomic import atomic_output, check_name_length, check_output
from vidrefine.io.color import (
    PRIMARIES,
    RANGES,
    SPACES,
    TRANSFERS,
    ColorTags,
    code_of,
    swscale_range,
    yuv_matrix,
)
from vidrefine.io.remux import Remuxer

ENCODERS = {"h264": "libx264", "hevc": "libx265"}
# 4:2:0 needs even sizes; odd ones are kept exact by switching to 4:4:4.
_FULL_CHROMA = {"yuv420p": "yuv444p", "yuv420p10le": "yuv444p10le"}
# Containers whose index can be moved to the front so playback starts before the download ends.
_FASTSTART = {".mp4", ".mov", ".m4v"}
# The container tag holding the resume key of the run that made an output (pipeline/refine.py).
JOB_TAG = "vidrefine_job"


class VideoWriter:
    """Context manager writing one video file; audio and subtitles come from `audio_from`.

    Frames are encoded at exactly the pts given (in `time_base`), so variable frame rates survive.
    Nothing appears under `path` until `close()` succeeds; on an exception (KeyboardInterrupt
    included) the partial file is removed and an existing `path` is left untouched. The caller
    checks `path` once when it plans the job (`vidrefine.io.atomic.check_output`). `metadata`
    becomes container tags (MP4 and MOV keep any key; Matroska stores keys in upper case).
    Every warning (odd size, audio re-encoded, subtitles the container cannot hold) is kept in
    `warnings` and passed to `on_warning` as it happens (the CLI passes its progress's `warn`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        size_hw: tuple[int, int],
        time_base: Fraction,
        fps: Fraction,
        codec: str = "h264",
        crf: int = 18,
        preset: str = "medium",
        pix_fmt: str = "yuv420p",
        audio_from: str | Path | None = None,
        color: ColorTags | None = None,
        rotation: int = 0,
        overwrite: bool = False,
        metadata: dict[str, str] | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        _check_settings(codec, pix_fmt, size_hw, rotation)
        self.path = Path(path)
        self.size_hw = size_hw
        self.time_base = Fraction(time_base)
        self.fps = Fraction(fps)
        self.color = color or ColorTags()
        self.warnings: list[str] = []
        self._on_warning = on_warning
        self.frames_written = 0
        self._pending: av.VideoFrame | None = None
        self._held: av.Packet | None = None
        self._first_pts: int | None = None
        self._first_dts: int | None = None
        self._last_pts: int | None = None
        self._remux: Remuxer | None = None
        self._stack = contextlib.ExitStack()
        try:
            temp = self._stack.enter_context(atomic_output(self.path, overwrite=overwrite))
            options = {}
            if self.path.suffix.lower() in _FASTSTART:  # other keys than title etc. need a flag
                options["movflags"] = "+faststart" + ("+use_metadata_tags" if metadata else "")
            self._out = av.open(str(temp), mode="w", options=options)
            self._out.metadata.update(metadata or {})  # written with the header, at the first mux
            self._stream = self._add_video(codec, crf, preset, pix_fmt, rotation)
            if audio_from is not None:
                self._remux = Remuxer(audio_from, self._out, self._warn)
        except BaseException as err:
            self._abort(err)
            raise

    def _add_video(
        self, codec: str, crf: int, preset: str, pix_fmt: str, rotation: int
    ) -> av.VideoStream:
        """The encoder stream, tagged with colour and rotation."""
        height, width = self.size_hw
        if height % 2 or width % 2:
            self._warn(
                f"odd size {width}x{height}: encoded as {_FULL_CHROMA[pix_fmt]} (4:4:4), "
                f"which {pix_fmt} cannot hold; some players need even sizes"
            )
            pix_fmt = _FULL_CHROMA[pix_fmt]
        options = {"crf": str(crf), "preset": preset}
        if codec == "hevc":
            options["x265-params"] = "log-level=error"
        stream = self._out.add_stream(ENCODERS[codec], rate=self.fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = self.time_base
        ctx = stream.codec_context
        ctx.color_primaries = code_of(PRIMARIES, self.color.primaries, "primaries")
        ctx.color_trc = code_of(TRANSFERS, self.color.trc, "transfer")
        ctx.colorspace = code_of(SPACES, self.color.space, "space")
        ctx.color_range = code_of(RANGES, self.color.range, "range")
        if codec == "hevc" and self.path.suffix.lower() in _FASTSTART:
            ctx.codec_tag = "hvc1"  # the tag Apple players require
        if rotation:
            stream.set_display_rotation(rotation)
        return stream

    def _warn(self, message: str) -> None:
        """Keep a warning and pass it on at once."""
        self.warnings.append(message)
        if self._on_warning is not None:
            self._on_warning(message)

    def write(self, frames: np.ndarray, pts: np.ndarray) -> None:
        """Encode (T, H, W, 3) uint8 RGB frames at int64 `pts` (time_base ticks, increasing)."""
        frames = np.asarray(frames)
        pts = np.asarray(pts, dtype=np.int64)
        if frames.ndim != 4 or frames.shape[1:] != (*self.size_hw, 3) or frames.dtype != np.uint8:
            raise ValueError(
                f"frames must be (T, {self.size_hw[0]}, {self.size_hw[1]}, 3) uint8, "
                f"got {frames.shape} {frames.dtype}"
            )
        if pts.shape != (len(frames),):
            raise ValueError(f"pts must be ({len(frames)},), got {pts.shape}")
        for array, stamp in zip(frames, pts.tolist(), strict=True):
            self._push(array, stamp)

    def _push(self, array: np.ndarray, stamp: int) -> None:
        """Convert one frame and encode the one before it, whose duration is now known."""
        if self._last_pts is not None and stamp <= self._last_pts:
            raise ValueError(f"pts must increase: {stamp} after {self._last_pts}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
        frame = frame.reformat(
            format=self._stream.pix_fmt,
            dst_colorspace=yuv_matrix(self.color.space, self.size_hw[0]),
            dst_color_range=swscale_range(self.color.range),
        )
        frame.pts, frame.time_base = stamp, self.time_base
        if self._first_pts is None:
            self._first_pts = stamp
        if self._pending is not None:
            self._encode(self._pending, stamp - self._pending.pts)
        self._pending, self._last_pts = frame, stamp

    def _encode(self, frame: av.VideoFrame | None, duration: int | None = None) -> None:
        """Encode one frame (None flushes) and let the audio catch up to it."""
        if frame is not None:
            frame.duration = duration
            self.frames_written += 1
        for packet in self._stream.encode(frame):
            if self._held is not None:
                self._out.mux(self._held)
            elif self._first_dts is None:
                self._first_dts = packet.dts
            self._held = packet
        if self._remux is not None and frame is not None:
            self._remux.pump(float(frame.pts * self.time_base))

    def close(self) -> None:
        """Flush the encoder, copy the remaining audio, close the file and rename it into place."""
        if self._stack is None:
            return
        try:
            if self._pending is not None:  # the last frame lasts one nominal frame
                self._encode(self._pending, self._nominal_step())
                self._pending = None
            self._encode(None)
            self._mux_last_packet()
            if self._remux is not None:
                self._remux.finish()
            if self.frames_written == 0:
                raise BadInput(f"{self.path}: no frames were written; nothing to save")
            self._out.close()
        except BaseException as err:
            self._abort(err)
            raise
        stack, self._stack = self._stack, None
        stack.close()

    def _mux_last_packet(self) -> None:
        """Mux the last packet with a duration that makes the track end where the last frame does.

        With B-frames the last packet in decode order is not the last frame shown, and muxers
        end a track at the last packet: MP4 at dts + duration (counted from the first dts),
        Matroska at pts + duration. Without this a VFR clip can come out short.
        """
        if self._held is None:
            return
        packet, self._held = self._held, None
        end = self._last_pts + self._nominal_step()
        if packet.time_base == self.time_base and packet.pts is not None:
            if "mp4" in self._out.format.name or "mov" in self._out.format.name:
                duration = end - self._first_pts + self._first_dts - packet.dts
            else:
                duration = end - packet.pts
            if duration > 0:
                packet.duration = duration
        self._out.mux(packet)

    def _nominal_step(self) -> int:
        """One frame at the nominal rate, in time_base ticks."""
        return max(1, round(1 / (self.fps * self.time_base)))

    def _abort(self, err: BaseException) -> None:
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        if self._remux is not None:
            self._remux.close()
        with contextlib.suppress(Exception):
            if hasattr(self, "_stream"):
                for _packet in self._stream.encode(None):  # drain the encoder's frame threads
                    pass
        with contextlib.suppress(Exception):
            if hasattr(self, "_out"):
                self._out.close()
        # Drop the encoder now: one left for the garbage collector changes the output of the
        # next encoder this process opens (seen with libx264: a resumed run differed).
        self._pending = self._held = None
        for name in ("_stream", "_out"):
            self.__dict__.pop(name, None)
        stack.__exit__(type(err), err, err.__traceback__)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self._abort(exc)


def container_tags(path: str | Path) -> dict[str, str]:
    """The container-level tags of a media file, keys in lower case ({} if it is unreadable)."""
    try:
        with av.open(str(path)) as container:
            return {key.lower(): value for key, value in container.metadata.items()}
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return {}


def job_tag(path: str | Path) -> str | None:
    """The `JOB_TAG` of an existing media file, or None (no tag, or not a readable media file)."""
    return container_tags(path).get(JOB_TAG)


def check_output_or_tagged(
    input_path: str | Path | None, output_path: str | Path, *, overwrite: bool
) -> Path:
    """`check_output`, except that an existing output carrying a `JOB_TAG` passes.

    Whether such an output is finished (made by the same job) or is refused (made by another)
    is decided once the job's resume key is known; any other existing file is refused here.
    """
    out = Path(output_path)
    check_name_length(out)
    tagged = not overwrite and out.is_file() and job_tag(out) is not None
    return check_output(input_path, out, overwrite=overwrite or tagged)


def _check_settings(codec: str, pix_fmt: str, size_hw: tuple[int, int], rotation: int) -> None:
    """BadInput for settings a user can get wrong, naming the choices."""
    if codec not in ENCODERS:
        raise BadInput(f"unknown codec {codec!r}; choose one of {', '.join(ENCODERS)}")
    if ENCODERS[codec] not in av.codecs_available:
        raise BadInput(f"codec {codec!r} needs FFmpeg's {ENCODERS[codec]}, which this PyAV lacks")
    if pix_fmt not in PIX_FMTS:
        raise BadInput(f"unknown pixel format {pix_fmt!r}; choose one of {', '.join(PIX_FMTS)}")
    if min(size_hw) < 1:
        raise BadInput(f"output size {size_hw[1]}x{size_hw[0]} is empty")
    if rotation % 90:
        raise BadInput(f"rotation must be a multiple of 90 degrees, got {rotation}")
