"""Streaming decode into RGB chunks with exact timestamps; memory is bounded by one chunk.

Frames come out in the decoder's output order, which is presentation order. Their timestamps are
repaired where files mislabel them (packed B-frames in AVI, missing pts); see docs/io.md.
"""

from __future__ import annotations

import heapq
import sys
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidrefine.io.color import RANGES, SPACES, name_of, swscale_range, yuv_matrix
from vidrefine.io.probe import MediaInfo, open_input, probe, video_stream

# How many decoded frames are held back to repair timestamps that arrive out of order.
# Packed B-frames displace a timestamp by one frame; B-pyramids by a few.
REORDER_WINDOW = 8


class TruncatedInputWarning(UserWarning):
    """The file ended (or broke) before the frames its header promised."""


class DroppedStreamWarning(UserWarning):
    """Part of the input will not reach the output: another video stream, alpha, interlacing."""


@dataclass
class FrameChunk:
    """Consecutive frames of a video.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB, upright when rotation was applied.
        pts: (T,) int64 presentation timestamps in time_base, strictly increasing.
        time_base: seconds per pts tick.
        start_index: index of frames[0] in the whole video (0-based, presentation order).
    """

    frames: np.ndarray
    pts: np.ndarray
    time_base: Fraction
    start_index: int


class _Retimer:
    """Gives frames, in the order decoded, the smallest pending timestamp (bounded window).

    Decoders emit frames in presentation order; when the timestamps attached to them are not
    increasing, they belong to neighbouring frames (packed B-frames), so the timestamps are sorted
    and the frames are not. Missing timestamps continue the last one by the nominal frame step.
    """

    def __init__(self, step: int) -> None:
        self.step = max(1, step)
        self.pending: list[int] = []
        self.last_in: int | None = None
        self.last_out: int | None = None

    def push(self, frame: av.VideoFrame) -> None:
        stamp = frame.pts if frame.pts is not None else frame.dts
        if stamp is None:
            stamp = 0 if self.last_in is None else self.last_in + self.step
        self.last_in = stamp
        heapq.heappush(self.pending, stamp)

    def pop(self) -> int:
        stamp = heapq.heappop(self.pending)
        if self.last_out is not None and stamp <= self.last_out:
            stamp = self.last_out + 1  # displaced further than the window, or a duplicate
        self.last_out = stamp
        return stamp


class ChunkReader(Iterator[FrameChunk]):
    """Iterator of FrameChunks; after it is exhausted, `lost_frames` says what could not be read.

    Truncated or damaged input is decoded as far as it goes: undecodable packets are skipped and a
    TruncatedInputWarning is issued (and kept in `warnings`) when frames fall short of the header.
    What the refined output will not keep (other video streams, alpha, interlacing) is said once,
    when reading starts, as a DroppedStreamWarning (also kept in `warnings`).
    """

    def __init__(
        self,
        path: str | Path,
        chunk_frames: int,
        *,
        start_frame: int,
        apply_rotation: bool,
        info: MediaInfo | None = None,
    ) -> None:
        if chunk_frames < 1 or start_frame < 0:
            raise ValueError("chunk_frames must be >= 1 and start_frame >= 0")
        self.info: MediaInfo = info if info is not None else probe(path)
        self.chunk_frames = chunk_frames
        self.start_frame = start_frame
        self.rotation = self.info.rotation if apply_rotation else 0
        self.corrupt_packets = 0
        self.lost_frames = 0
        self.warnings: list[str] = []
        self._pool: list[np.ndarray] = []
        self._chunks = self._generate()

    def __next__(self) -> FrameChunk:
        return next(self._chunks)

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop early and release the file."""
        self._chunks.close()

    def _generate(self) -> Iterator[FrameChunk]:
        for message in dropped_at_read(self.info):
            self._warn(message, DroppedStreamWarning)
        path, container = open_input(self.info.path)
        with container:
            stream = video_stream(container, path)
            stream.thread_type = "AUTO"
            time_base = Fraction(stream.time_base or self.info.time_base)
            step = round(1 / (self.info.fps * time_base)) if self.info.fps else 1
            index, filled, last_stamp = 0, 0, None
            buffer: np.ndarray | None = None
            pts = np.zeros(self.chunk_frames, dtype=np.int64)
            for array, stamp in self._timed_frames(container, stream, _Retimer(step)):
                last_stamp = stamp
                index += 1
                if index <= self.start_frame:
                    continue
                if buffer is None:
                    buffer = self._chunk_buffer(array.shape)
                buffer[filled], pts[filled] = array, stamp
                filled += 1
                if filled == self.chunk_frames:
                    yield FrameChunk(buffer, pts.copy(), time_base, index - filled)
                    buffer, filled = None, 0
            if buffer is not None:
                yield FrameChunk(buffer[:filled], pts[:filled].copy(), time_base, index - filled)
            self._check_losses(index, last_stamp, step, time_base)

    def _chunk_buffer(self, frame_shape: tuple[int, ...]) -> np.ndarray:
        """A (chunk_frames, H, W, 3) array nobody else holds: recycled when consumers dropped it.

        Fresh large arrays cost page faults on every chunk; an array is reused only when its sole
        reference is this pool (no chunk, frame or view of it is alive), so kept chunks stay valid.
        """
        shape = (self.chunk_frames, *frame_shape)
        for old in self._pool:
            if old.shape == shape and sys.getrefcount(old) == 3:  # pool, `old`, the argument
                return old
        buffer = np.empty(shape, dtype=np.uint8)
        self._pool = [*self._pool[-1:], buffer]  # the chunk being read and the one before
        return buffer

    def _timed_frames(
        self, container: av.container.InputContainer, stream: av.VideoStream, retimer: _Retimer
    ) -> Iterator[tuple[np.ndarray, int]]:
        """(H, W, 3) RGB arrays with repaired timestamps, in presentation order."""
        held: deque[av.VideoFrame] = deque()
        for frame in self._decoded(container, stream):
            retimer.push(frame)
            held.append(frame)
            if len(held) > REORDER_WINDOW:
                yield self._to_rgb(held.popleft()), retimer.pop()
        while held:
            yield self._to_rgb(held.popleft()), retimer.pop()

    def _decoded(
        self, container: av.container.InputContainer, stream: av.VideoStream
    ) -> Iterator[av.VideoFrame]:
        """Every decodable frame; damaged packets are skipped and counted, a broken tail ends it."""
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError as err:
                self._warn(f"{self.info.path}: reading stopped early: {err}")
                return
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                self.corrupt_packets += 1
                continue
            yield from decoded

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """(H, W, 3) uint8 RGB view using the frame's own matrix and range, upright if asked.

        The view points into a converted frame; the caller copies it into its chunk, so each
        picture is copied once.
        """
        height, width = self.info.size_hw
        space = name_of(SPACES, frame.colorspace)
        rgb = frame.reformat(
            format="rgb24",
            width=width,  # a mid-stream size change is scaled back to the first size
            height=height,
            src_colorspace=yuv_matrix(space, height),
            src_color_range=swscale_range(name_of(RANGES, frame.color_range)),
        )
        plane = rgb.planes[0]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(height, plane.line_size)
        array = rows[:, : width * 3].reshape(height, width, 3)  # drop the row padding
        if self.rotation:
            array = np.rot90(array, k=self.rotation // 90)
        return array

    def _check_losses(
        self, frames_read: int, last_pts: int | None, step: int, time_base: Fraction
    ) -> None:
        """Compare what was decoded with what the header promised; warn when short."""
        by_count = self.info.frame_count - frames_read
        by_time = 0
        if self.info.duration_s is not None and last_pts is not None:
            end_s = float((last_pts + step) * time_base)
            by_time = round((self.info.duration_s - end_s) * float(self.info.fps))
        self.lost_frames = max(0, by_count, by_time if by_time > 1 else 0)
        if self.lost_frames:
            self._warn(
                f"{self.info.path}: {self.lost_frames} frame(s) could not be read "
                f"(file damaged or cut short); {frames_read} frame(s) were decoded"
            )

    def _warn(self, message: str, category: type[Warning] = TruncatedInputWarning) -> None:
        self.warnings.append(message)
        warnings.warn(message, category, stacklevel=3)


def dropped_at_read(info: MediaInfo) -> list[str]:
    """One line for each thing of `info` that the refined output will not keep (docs/io.md)."""
    lines = []
    if info.other_video:
        lines.append(
            f"{info.path}: {len(info.video_streams)} video streams; refining #{info.index}, "
            "the others are not written"
        )
    if info.has_alpha:
        lines.append(f"{info.path}: alpha channel dropped (the output has no transparency)")
    if info.interlaced:
        lines.append(
            f"{info.path}: interlaced ({info.field_order_text}); "
            "frames are refined as progressive pictures"
        )
    return lines


def read_chunks(
    path: str | Path,
    chunk_frames: int,
    *,
    start_frame: int = 0,
    apply_rotation: bool = True,
    info: MediaInfo | None = None,
) -> ChunkReader:
    """Decode `path` into FrameChunks of up to `chunk_frames` frames, in presentation order.

    Frames before `start_frame` are decoded and dropped (exact for any timing, unlike seeking).
    `info` is the file's probe when the caller has it (else the file is probed here). Raises
    BadInput (from probe) for files that cannot be read at all.
    """
    return ChunkReader(
        path, chunk_frames, start_frame=start_frame, apply_rotation=apply_rotation, info=info
    )
