"""Long clips: split one into segments the API takes, and stitch the edited segments
back into one file (docs/media.md#long-clips). Synchronous and CPU-bound: run it with
``extra.run_media_work``; every function needs the ``media`` extra.

Both directions have two paths. **Stream copy** moves the compressed packets as they
are, without decoding: splitting cuts at keyframes (a segment must start with one), and
stitching needs every segment coded alike (codec, frame size, codec headers). It costs
little more than reading the file. **Re-encoding** decodes and encodes again: it cuts at
any frame and joins any clips, at a cost of one H.264 encode of the whole length.
``mode="auto"`` takes stream copy whenever it does the job.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .extra import require_media

if TYPE_CHECKING:
    import av.container

__all__ = ["SEGMENT_SECONDS", "Mode", "split_clip", "stitch_clips"]

Mode = Literal["auto", "copy", "encode"]

# The longest segment planned: under the API's 10 s, since a stream-copied segment's
# sound may run one audio frame (about 21 ms) past its last picture, and the API
# measures the longer track.
SEGMENT_SECONDS = 9.9
_X264_OPTIONS = {"preset": "veryfast", "crf": "23"}
_OUT_RATE = 48000
# Output pictures are timed in 1/90000 s, so clips of other frame rates join exactly.
_VIDEO_TIME_BASE = Fraction(1, 90000)


def split_clip(
    path: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    *,
    limit: float = SEGMENT_SECONDS,
    mode: Mode = "auto",
) -> list[Path]:
    """Cut the clip at ``path`` into ``ceil(duration / limit)`` segments of near-equal
    length, each at most ``limit`` seconds, written in ``folder`` as
    ``segment-000.mp4``...; returns their paths in order. Stream copy cuts at the
    keyframes nearest the even cuts when that keeps every segment within ``limit``;
    else (or with ``mode="encode"``) the clip is re-encoded, cut at the frames nearest
    the even cuts. Raises ``ValueError`` for a clip with no video or one that a copy
    (``mode="copy"``) cannot split within ``limit``."""
    require_media("splitting a long clip")
    import av

    keyframes, end = _scan(path)
    count = max(1, math.ceil(end / limit - 1e-9))
    even = [end * k / count for k in range(1, count)]
    cuts = _keyframe_cuts(keyframes, even, end, limit) if mode != "encode" else None
    if cuts is None and mode == "copy":
        raise ValueError(f"the clip's keyframes cannot split it into segments of {limit:g} s")
    paths = [Path(folder) / f"segment-{i:03d}.mp4" for i in range(count)]
    try:
        if cuts is not None:
            _split_copy(path, paths, cuts)
        else:
            _split_encode(path, paths, even)
    except av.FFmpegError as exc:
        raise ValueError(f"the clip cannot be split: {exc}") from None
    return paths


def stitch_clips(
    paths: Sequence[str | os.PathLike[str]], dest: str | os.PathLike[str], *, mode: Mode = "auto"
) -> Path:
    """Join the clips at ``paths``, in order, into one MP4 at ``dest`` (written beside
    it and renamed into place: ``dest`` never holds a partial file). Each clip starts
    where the previous one's pictures end, and the sound follows the pictures: a clip
    without sound is silent for its length. Stream copy when every clip is coded alike
    and has sound (``mode="copy"`` raises ``ValueError`` when not), else re-encoded."""
    require_media("stitching edited segments")
    import av

    dest = Path(dest)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        try:
            same = _coded_alike(paths)
            if mode == "copy" and not same:
                raise ValueError("the clips are not coded alike: they cannot be joined by copy")
            if same and mode != "encode":
                try:
                    _stitch_copy(paths, name)
                except av.FFmpegError:
                    if mode == "copy":
                        raise
                    _stitch_encode(paths, name)
            else:
                _stitch_encode(paths, name)
        except av.FFmpegError as exc:
            raise ValueError(f"the edited segments cannot be joined: {exc}") from None
        os.replace(name, dest)
    finally:
        if os.path.exists(name):
            os.unlink(name)
    return dest


# --- Reading ----------------------------------------------------------------------------


def _scan(path: str | os.PathLike[str]) -> tuple[list[float], float]:
    """The video's keyframe times and the end of its last picture, in seconds, read
    from its packets alone (nothing is decoded)."""
    import av

    with av.open(os.fspath(path)) as source:
        if not source.streams.video:
            raise ValueError("the clip has no video track")
        stream = source.streams.video[0]
        keyframes: list[float] = []
        end = 0.0
        for packet in source.demux(stream):
            if packet.pts is None or packet.time_base is None:
                continue
            start = float(packet.pts * packet.time_base)
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            if packet.is_keyframe:
                keyframes.append(start)
    keyframes.sort()
    return keyframes, end


def _keyframe_cuts(
    keyframes: list[float], even: list[float], end: float, limit: float
) -> list[float] | None:
    """For each even cut the nearest keyframe that keeps the segment before it within
    ``limit``; ``None`` unless every segment then is within ``limit``."""
    if not keyframes or keyframes[0] > 1e-3:
        return None
    cuts: list[float] = []
    last = 0.0
    for want in even:
        choices = [k for k in keyframes if last < k <= last + limit]
        if not choices:
            return None
        cut = min(choices, key=lambda k: abs(k - want))
        cuts.append(cut)
        last = cut
    if end - last > limit:
        return None
    return cuts


def _segment_of(time: float, cuts: Sequence[float]) -> int:
    index = 0
    while index < len(cuts) and time >= cuts[index] - 1e-6:
        index += 1
    return index


# --- Splitting --------------------------------------------------------------------------


def _split_copy(path: str | os.PathLike[str], paths: Sequence[Path], cuts: Sequence[float]) -> None:
    import av

    starts = [0.0, *cuts]
    with av.open(os.fspath(path)) as source:
        video = source.streams.video[0]
        audio = source.streams.audio[0] if source.streams.audio else None
        wanted = [video] if audio is None else [video, audio]
        outputs: list[tuple[av.container.OutputContainer, dict[int, Any]]] = []
        try:
            for dest in paths:
                out = av.open(os.fspath(dest), "w", format="mp4")
                streams = {s.index: out.add_stream_from_template(s) for s in wanted}
                outputs.append((out, streams))
            # Pictures go by decoding order: a segment begins at its keyframe, and every
            # picture after it (a B-frame shown before it, in an open GOP, included)
            # belongs with it, since it may be decoded only from it. Sound goes by time.
            current = 0
            for packet in source.demux(wanted):
                if packet.pts is None or packet.time_base is None:
                    continue  # the demuxer's end-of-stream marker
                time = float(packet.pts * packet.time_base)
                if packet.stream.index == video.index:
                    if packet.is_keyframe:
                        current = max(current, _segment_of(time, cuts))
                    segment = current
                else:
                    segment = _segment_of(time, cuts)
                out, streams = outputs[segment]
                shift = round(Fraction(starts[segment]) / packet.time_base)
                packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
        finally:
            for out, _ in outputs:
                out.close()


def _split_encode(
    path: str | os.PathLike[str], paths: Sequence[Path], even: Sequence[float]
) -> None:
    import av

    with av.open(os.fspath(path)) as source:
        video = source.streams.video[0]
        rate = Fraction(video.average_rate or video.guessed_rate or 24)
        # Cut at picture boundaries: the frame nearest each even cut starts a segment.
        cuts = [float(round(c * rate) / rate) for c in even]
        starts = [Fraction(0), *(Fraction(round(c * rate)) / rate for c in even)]
        has_audio = bool(source.streams.audio)
        width, height = video.codec_context.width, video.codec_context.height
        # Opened as their segment begins and closed a second past its end (sound near
        # a cut may come a little after the next segment's first pictures): at most
        # two encoders, and their look-ahead buffers, are held at once.
        writers: dict[int, _Encoder] = {}
        try:
            wanted = [video, source.streams.audio[0]] if has_audio else [video]
            for frame in _decode(source, wanted):
                time = Fraction(frame.pts) * frame.time_base
                segment = _segment_of(float(time), cuts)
                if segment not in writers:
                    writers[segment] = _Encoder(paths[segment], width, height, rate, has_audio)
                if frame.__class__.__name__ == "VideoFrame":
                    writers[segment].video(frame, time - starts[segment])
                    for done in [j for j in writers if j < segment and time > cuts[j] + 1]:
                        writers[done].finish()
                        writers.pop(done).close()
                else:
                    writers[segment].audio(frame)
            for writer in writers.values():
                writer.finish()
        finally:
            for writer in writers.values():
                writer.close()


# --- Stitching --------------------------------------------------------------------------


def _coded_alike(paths: Sequence[str | os.PathLike[str]]) -> bool:
    import av

    seen: set[tuple[Any, ...]] = set()
    for path in paths:
        with av.open(os.fspath(path)) as clip:
            if not clip.streams.video:
                raise ValueError(f"the edited segment {Path(path).name} has no video track")
            v = clip.streams.video[0].codec_context
            key: tuple[Any, ...] = (v.name, v.width, v.height, v.pix_fmt, bytes(v.extradata or b""))
            if clip.streams.audio:
                a = clip.streams.audio[0].codec_context
                key += (a.name, a.sample_rate, a.layout.name, bytes(a.extradata or b""))
            else:
                return False  # re-encoded: the stitched file always has a sound track
            seen.add(key)
    return len(seen) == 1


def _stitch_copy(paths: Sequence[str | os.PathLike[str]], dest: str) -> None:
    import av

    offset = Fraction(0)
    with av.open(dest, "w", format="mp4", options={"movflags": "+faststart"}) as out:
        streams: dict[str, Any] = {}
        last_dts: dict[str, int] = {}
        for path in paths:
            with av.open(os.fspath(path)) as clip:
                video = clip.streams.video[0]
                audio = clip.streams.audio[0] if clip.streams.audio else None
                if not streams:
                    streams["video"] = out.add_stream_from_template(video)
                    if audio is not None:
                        streams["audio"] = out.add_stream_from_template(audio)
                wanted = [video] if audio is None else [video, audio]
                first: Fraction | None = None
                end = Fraction(0)
                for packet in clip.demux(wanted):
                    if packet.pts is None or packet.time_base is None:
                        continue
                    kind = "video" if packet.stream.index == video.index else "audio"
                    tb = packet.time_base
                    if kind == "video":
                        start = packet.pts * tb
                        first = start if first is None else min(first, start)
                        end = max(end, (packet.pts + (packet.duration or 0)) * tb)
                    shift = round(offset / tb)
                    packet.pts += shift
                    if packet.dts is not None:
                        packet.dts += shift
                        # A sound frame that overlaps the next clip's first is dropped.
                        if kind == "audio" and packet.dts <= last_dts.get(kind, -(2**62)):
                            continue
                        last_dts[kind] = packet.dts
                    packet.stream = streams[kind]
                    out.mux(packet)
                offset += end - (first or Fraction(0))


def _stitch_encode(paths: Sequence[str | os.PathLike[str]], dest: str) -> None:
    import av

    with av.open(os.fspath(paths[0])) as head:
        v = head.streams.video[0]
        width, height = v.codec_context.width, v.codec_context.height
        rate = Fraction(v.average_rate or v.guessed_rate or 24)
    writer = _Encoder(Path(dest), width, height, rate, True, faststart=True)
    try:
        offset = Fraction(0)
        for path in paths:
            with av.open(os.fspath(path)) as clip:
                video = clip.streams.video[0]
                wanted = [video, *clip.streams.audio[:1]]
                first: Fraction | None = None
                end = Fraction(0)
                clip_rate = Fraction(video.average_rate or video.guessed_rate or rate)
                writer.start_clip(offset)
                # Sound beyond the clip's last picture is dropped: the next clip's
                # sound starts with its pictures.
                writer.audio_until = offset + Fraction(_scan(path)[1])
                for frame in _decode(clip, wanted):
                    time = Fraction(frame.pts) * frame.time_base
                    if frame.__class__.__name__ == "VideoFrame":
                        first = time if first is None else min(first, time)
                        end = max(end, time + 1 / clip_rate)
                        writer.video(frame, offset + time - (first or 0), scale=True)
                    else:
                        writer.audio(frame)
                offset += end - (first or Fraction(0))
            writer.pad_audio(offset)
        writer.finish()
    finally:
        writer.close()


# --- Encoding ---------------------------------------------------------------------------


def _decode(source: av.container.InputContainer, streams: Sequence[Any]) -> Iterator[Any]:
    for packet in source.demux(list(streams)):
        frame: Any
        for frame in packet.decode():
            if frame.pts is not None and frame.time_base is not None:
                yield frame


class _Encoder:
    """An MP4 written as frames come: H.264 pictures timed as told, and the sound
    re-encoded to AAC (48 kHz stereo), its samples counted so it follows the pictures
    (``pad_audio`` fills a silent stretch)."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        rate: Fraction,
        has_audio: bool,
        *,
        faststart: bool = False,
    ) -> None:
        import av

        options = {"movflags": "+faststart"} if faststart else {}
        self._out = av.open(os.fspath(path), "w", format="mp4", options=options)
        self._width, self._height = width - width % 2, height - height % 2
        video = self._out.add_stream("libx264", rate=rate, options=dict(_X264_OPTIONS))
        video.width, video.height = self._width, self._height
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = _VIDEO_TIME_BASE
        video.time_base = _VIDEO_TIME_BASE
        self._video = video
        self._audio: Any = None
        self._resampler: Any = None
        self._samples = 0
        self._last_pts = -1
        self.audio_until: Fraction | None = None
        if has_audio:
            self._audio = self._out.add_stream("aac", rate=_OUT_RATE, layout="stereo")
            self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=_OUT_RATE)

    def start_clip(self, offset: Fraction) -> None:
        """A new clip's sound starts at ``offset``: fill any gap before it."""
        self.pad_audio(offset)

    def video(self, frame: Any, time: Fraction, *, scale: bool = False) -> None:
        pts = round(time / _VIDEO_TIME_BASE)
        if pts <= self._last_pts:
            return  # a repeated timestamp: FFmpeg's encoder refuses it
        self._last_pts = pts
        if scale or frame.width != self._width or frame.height != self._height:
            frame = frame.reformat(width=self._width, height=self._height, format="yuv420p")
        frame.pts, frame.time_base = pts, _VIDEO_TIME_BASE
        self._out.mux(self._video.encode(frame))

    def audio(self, frame: Any) -> None:
        if self._audio is None:
            return
        frame.pts = None
        for each in self._resampler.resample(frame):
            self._put_audio(each)

    def pad_audio(self, until: Fraction) -> None:
        """Silence up to ``until`` seconds, if the sound ends before it."""
        if self._audio is None:
            return
        import av

        missing = round(until * _OUT_RATE) - self._samples
        while missing > 0:
            n = min(missing, 1024)
            silent = av.AudioFrame(format="fltp", layout="stereo", samples=n)
            for plane in silent.planes:
                plane.update(bytes(plane.buffer_size))
            silent.sample_rate = _OUT_RATE
            self._put_audio(silent)
            missing -= n

    def _put_audio(self, frame: Any) -> None:
        if self.audio_until is not None and self._samples >= self.audio_until * _OUT_RATE:
            return
        frame.pts, frame.time_base = self._samples, Fraction(1, _OUT_RATE)
        self._samples += frame.samples
        self._out.mux(self._audio.encode(frame))

    def finish(self) -> None:
        self._out.mux(self._video.encode(None))
        if self._audio is not None:
            self._out.mux(self._audio.encode(None))

    def close(self) -> None:
        self._out.close()
