"""Whole-clip media work with PyAV: make a clip, or re-render one with a look and a
new sound track. Synchronous and CPU-bound: run it with ``extra.run_media_work``.

Every function here needs the ``media`` extra and raises ``extra.MediaUnavailable``
without it. The output is an MP4 a browser plays: H.264 (yuv420p) and AAC, with the
``moov`` box first (``faststart``) so a player can start before the file has arrived.
Filters are FFmpeg's (``hue``, ``colorbalance``, ``curves``...), named as in its
documentation; they run in C, outside the GIL.
"""

from __future__ import annotations

import io
import itertools
import os
import tempfile
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .extra import require_media

if TYPE_CHECKING:
    import av.container
    import av.filter

__all__ = ["Filter", "make_clip", "restyle_clip"]

# (FFmpeg filter name, its arguments), applied in order.
Filter = tuple[str, str]

_SAMPLE_RATE = 48000
_DEFAULT_FPS = 24
# Enough for a watchable result of a small clip, cheap to encode.
_X264_OPTIONS = {"preset": "superfast", "crf": "30"}


def make_clip(
    seconds: float,
    *,
    width: int = 320,
    height: int = 180,
    fps: int = _DEFAULT_FPS,
    tone_hz: float | None = 440.0,
    look: Sequence[Filter] = (),
    keyframe_every: int | None = None,
) -> bytes:
    """An MP4 of FFmpeg's moving test pattern lasting ``seconds``, with a sine tone of
    ``tone_hz`` as its sound track (none if ``None``) and ``look`` applied to it; a
    keyframe every ``keyframe_every`` frames if given (else the encoder's choice)."""
    require_media("making a clip")
    import av.filter

    graph = av.filter.Graph()
    source = graph.add("testsrc2", f"size={width}x{height}:rate={fps}:duration={seconds:.6f}")
    sink = _chain(graph, source, look)
    graph.configure()
    with _Writer(
        width, height, Fraction(fps), Fraction(1, fps), tone_hz, keyframe_every=keyframe_every
    ) as writer:
        for frame in _drain(sink):
            writer.video(frame)
    return writer.data


def restyle_clip(data: bytes, *, look: Sequence[Filter], tone_hz: float) -> bytes:
    """``data`` (a clip FFmpeg can read) re-rendered: its video with ``look`` applied,
    same frame size and timing, and a generated sound track of ``tone_hz`` in place of
    its own. Raises ``ValueError`` when ``data`` holds no decodable video."""
    require_media("re-rendering a clip")
    import av
    import av.filter

    try:
        source = av.open(io.BytesIO(data), "r")
    except av.FFmpegError as exc:
        raise ValueError(f"not a readable clip: {exc}") from None
    with source:
        if not source.streams.video:
            raise ValueError("the clip has no video track")
        stream = source.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(_DEFAULT_FPS)
        time_base = stream.time_base or Fraction(1, _DEFAULT_FPS)
        width, height = stream.codec_context.width, stream.codec_context.height
        graph = av.filter.Graph()
        buffer = graph.add_buffer(template=stream)
        sink = _chain(graph, buffer, look)
        graph.configure()
        with _Writer(width, height, Fraction(rate), time_base, tone_hz) as writer:
            try:
                for frame in source.decode(stream):
                    buffer.push(frame)
                    for filtered in _drain(sink):
                        writer.video(filtered)
            except av.FFmpegError as exc:
                raise ValueError(f"the clip cannot be decoded: {exc}") from None
            buffer.push(None)
            for filtered in _drain(sink):
                writer.video(filtered)
            if not writer.frames:
                raise ValueError("the clip has no video frame")
    return writer.data


def _chain(graph: av.filter.Graph, first: Any, look: Sequence[Filter]) -> Any:
    """Link ``first`` through ``look`` to a sink of even-sized yuv420p frames (what
    H.264 in a browser needs); return the sink."""
    node = first
    steps = [*look, ("scale", "trunc(iw/2)*2:trunc(ih/2)*2"), ("format", "yuv420p")]
    for name, args in steps:
        nxt = graph.add(name, args)
        node.link_to(nxt)
        node = nxt
    sink = graph.add("buffersink")
    node.link_to(sink)
    return sink


def _drain(sink: Any) -> Iterator[Any]:
    import av

    while True:
        try:
            yield sink.pull()
        except (av.BlockingIOError, av.EOFError):
            return


class _Writer:
    """An MP4 being written: H.264 video as frames come, then a generated AAC track as
    long as the video; packets are interleaved by time when it closes, and ``data`` is
    the file then. It is written in a temporary folder: moving the ``moov`` box to the
    front (``faststart``) makes FFmpeg reopen the file by name, which an in-memory
    buffer has not got."""

    def __init__(
        self,
        width: int,
        height: int,
        rate: Fraction,
        time_base: Fraction,
        tone_hz: float | None,
        *,
        keyframe_every: int | None = None,
    ) -> None:
        import av

        self.frames = 0
        self._end = Fraction(0)
        self._rate = rate
        self._tone_hz = tone_hz
        self._packets: list[Any] = []
        self.data = b""
        self._folder = tempfile.TemporaryDirectory(prefix="omni_edit-media-")
        self._path = os.path.join(self._folder.name, "out.mp4")
        self._out: av.container.OutputContainer = av.open(
            self._path, "w", format="mp4", options={"movflags": "+faststart"}
        )
        options = dict(_X264_OPTIONS)
        if keyframe_every is not None:
            options["g"] = str(keyframe_every)
        video = self._out.add_stream("libx264", rate=rate, options=options)
        video.width, video.height = width + width % 2, height + height % 2
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = time_base
        video.time_base = time_base
        self._video = video
        self._audio = None
        if tone_hz is not None:
            self._audio = self._out.add_stream("aac", rate=_SAMPLE_RATE, layout="mono")

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            try:
                if exc_type is None:
                    self._finish()
            finally:
                self._out.close()
            if exc_type is None:
                with open(self._path, "rb") as file:
                    self.data = file.read()
        finally:
            self._folder.cleanup()

    def video(self, frame: Any) -> None:
        self.frames += 1
        if frame.pts is not None and frame.time_base is not None:
            # Plus one frame's length: the last frame shows as long as the others.
            self._end = max(self._end, frame.pts * frame.time_base + 1 / self._rate)
        self._packets.extend(self._video.encode(frame))

    def _finish(self) -> None:
        self._packets.extend(self._video.encode(None))
        if self._audio is not None and self._end > 0:
            self._packets.extend(self._tone_packets(float(self._end)))
        self._packets.sort(key=_packet_time)
        for packet in self._packets:
            self._out.mux(packet)

    def _tone_packets(self, seconds: float) -> list[Any]:
        import av.filter

        assert self._audio is not None
        graph = av.filter.Graph()
        # A tone under a slow swell: audible, not harsh, and it differs per look.
        source = graph.add(
            "sine", f"frequency={self._tone_hz}:sample_rate={_SAMPLE_RATE}:duration={seconds:.6f}"
        )
        steps = [
            source,
            graph.add("volume", "0.3"),
            graph.add("tremolo", "f=1.5:d=0.4"),
            graph.add("aformat", "sample_fmts=fltp:channel_layouts=mono"),
            graph.add("abuffersink"),
        ]
        for a, b in itertools.pairwise(steps):
            a.link_to(b)
        graph.configure()
        packets: list[Any] = []
        for frame in _drain(steps[-1]):
            packets.extend(self._audio.encode(frame))
        packets.extend(self._audio.encode(None))
        return packets


def _packet_time(packet: Any) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float((stamp or 0) * packet.time_base) if packet.time_base else 0.0
