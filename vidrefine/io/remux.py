"""Carry audio and subtitle streams of a source file into an output, interleaved with the video.

Streams the output container accepts are copied packet for packet; other audio is re-encoded to
AAC at the same rate and layout; other subtitles are dropped with a warning (docs/io.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from vidrefine.io.ffprobe import codec_name
from vidrefine.io.probe import open_input


@dataclass
class _Route:
    """Where one source stream goes: `encoder` is None for a packet copy."""

    source: av.stream.Stream
    target: av.stream.Stream
    encoder: av.AudioStream | None = None


class Remuxer:
    """Adds the source's audio and subtitle streams to `out` and feeds them as video advances.

    Call `pump(t)` after each video frame at time t (seconds) and `finish()` after the last one;
    audio longer than the video is copied in full, never cut. Each warning (audio re-encoded,
    subtitles dropped) goes to `warn` as the stream is routed; a list gets it appended.
    """

    def __init__(
        self,
        source: str | Path,
        out: av.container.OutputContainer,
        warn: Callable[[str], None] | list[str],
    ):
        _, self._in = open_input(source)
        self._out = out
        self._warn = warn.append if isinstance(warn, list) else warn
        self._routes: dict[int, _Route] = {}
        for stream in (*self._in.streams.audio, *self._in.streams.subtitles):
            route = self._route(stream)
            if route is not None:
                self._routes[stream.index] = route
        self._packets: Iterator[av.Packet] | None = None
        self._ahead: av.Packet | None = None
        if self._routes:
            self._packets = self._in.demux([r.source for r in self._routes.values()])

    def _route(self, stream: av.stream.Stream) -> _Route | None:
        """Copy if the muxer takes the codec, else re-encode audio or drop subtitles."""
        codec = stream.codec_context.name
        if codec in self._out.supported_codecs:
            target = self._out.add_stream_from_template(stream)
            return _Route(stream, target)
        if stream.type == "subtitle":
            self._warn(
                f"subtitle stream #{stream.index} ({codec_name(codec)}) dropped: "
                f"{self._out.format.name} cannot hold it"
            )
            return None
        ctx = stream.codec_context
        layout = ctx.layout.name
        if layout.endswith("channels"):  # an unnamed order ("2 channels"): the usual one
            layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}.get(ctx.channels, layout)
        target = self._out.add_stream("aac", rate=ctx.sample_rate, layout=layout)
        self._warn(
            f"audio stream #{stream.index} ({codec}) re-encoded to AAC: "
            f"{self._out.format.name} cannot hold {codec}"
        )
        return _Route(stream, target, encoder=target)

    def pump(self, until_s: float) -> None:
        """Mux source packets whose time is at or before `until_s`."""
        while True:
            packet = self._next_packet()
            if packet is None:
                return
            if packet.pts is not None and float(packet.pts * packet.time_base) > until_s:
                self._ahead = packet
                return
            self._send(packet)

    def finish(self) -> None:
        """Mux everything left, flush re-encoders and release the source."""
        self.pump(float("inf"))
        for route in self._routes.values():
            if route.encoder is not None:
                for packet in route.encoder.encode(None):
                    self._out.mux(packet)
        self.close()

    def close(self) -> None:
        """Release the source file."""
        self._in.close()

    def _next_packet(self) -> av.Packet | None:
        if self._ahead is not None:
            packet, self._ahead = self._ahead, None
            return packet
        if self._packets is None:
            return None
        for packet in self._packets:
            if packet.size:  # size-0 packets only flush the demuxer
                return packet
        self._packets = None
        return None

    def _send(self, packet: av.Packet) -> None:
        route = self._routes[packet.stream.index]
        if route.encoder is None:
            if packet.dts is None:
                packet.dts = packet.pts
            packet.stream = route.target
            self._out.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # the encoder counts samples from the first one
            for out_packet in route.encoder.encode(frame):
                self._out.mux(out_packet)
