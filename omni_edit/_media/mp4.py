"""Finding an MP4 clip's duration from as few bytes as possible.

The API takes only MP4 clips of at most 10 seconds, and a refused clip is only learned
about after an upload and a wait. ``read_media_info`` answers "how long is it?" by
reading box headers (ISO/IEC 14496-12) through a ``ByteSource``, which may be a local
file or an HTTP server answering Range requests:

- ``ftyp`` first: the brand must be of the MP4 family;
- top-level boxes are walked by their 8- or 16-byte headers; ``mdat`` (the media data,
  nearly all of the file) is skipped without being read;
- ``moov`` is read whole, wherever it is (at the end of the file too): ``mvhd`` gives
  the duration, ``trak/tkhd`` the picture size, ``trak/mdia/hdlr`` whether there is
  sound;
- a fragmented file (``moov/mvex`` present) takes its length from ``mvex/mehd``, else
  from the ``sidx`` segment indexes, else by adding up the sample durations in each
  ``moof/traf`` (``tfhd``, ``tfdt``, ``trun``).

Reading stops as soon as the duration is settled. Safety against hostile input: every
box is checked against its parent and the file size, offsets only move forward, the
number of boxes is capped and the bytes fetched never exceed ``max_bytes``. Whatever
goes wrong is a ``ValidationError`` saying what is wrong in the user's terms.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs

from .._constants import MAX_PROBE_BYTES
from .._exceptions import ValidationError
from .boxes import FIELD, BoxHeader, BoxTally, Movie, corrupt, parse_header, parse_movie
from .fragments import SegmentIndex, parse_moof, parse_sidx
from .sniff import check_brands, describe_non_mp4

__all__ = ["ByteSource", "CountingByteSource", "MediaFacts", "read_media_info"]

# The first read holds a typical ftyp (20-40 bytes) and the next box's header.
_FIRST_READ = 64
# Enough to recognise an HTML page or a text file that starts with blank lines.
_SNIFF_READ = 512
_HEADER_READ = 16  # 8-byte header plus the 64-bit largesize that may follow
_MAX_FTYP_BYTES = 1024  # real ones list a handful of 4-byte brands
# A 10 s clip cut into one fragment per frame at 60 fps has ~1,800 top-level boxes (sidx,
# moof, mdat) and ~5,000 inside them. Each top-level box may cost a read (an HTTP request).
_MAX_TOP_LEVEL_BOXES = 4096
_MAX_BOXES = 20_000


class ByteSource(Protocol):
    """Random access to a file's bytes, wherever it lives."""

    async def size(self) -> int | None:
        """The total size in bytes if known (it may only be known after a first read)."""
        ...

    async def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; fewer only at the end of the file."""
        ...


@runtime_checkable
class CountingByteSource(ByteSource, Protocol):
    """A source that counts the bytes it transferred, which may exceed those asked for.

    A web server that ignores Range requests sends the file from its start, so skipping
    an ``mdat`` still costs its bytes; ``bytes_read`` reports this count when it exists.
    """

    @property
    def bytes_received(self) -> int: ...


@attrs.frozen
class MediaFacts:
    """What the MP4 header boxes say about a clip."""

    duration: float  # seconds
    width: int | None  # of the first video track, None without one
    height: int | None
    has_audio: bool | None  # None where unknown
    # Bytes fetched to learn this; for a CountingByteSource, all it ever received.
    bytes_read: int
    brand: str  # the ftyp major brand, e.g. "isom"
    fragmented: bool  # movie fragments (moov/mvex) are declared


class _Reader:
    """Reads through a source within a byte budget, reusing the last bytes fetched.

    The budget counts bytes asked for, not only those received, so that no source is
    ever asked for more than ``max_bytes`` in all. Header reads overshoot into the next
    box a little; keeping the last chunk means those bytes are never fetched twice.
    """

    def __init__(self, source: ByteSource, max_bytes: int) -> None:
        self._source = source
        self._max_bytes = max_bytes
        self._asked = 0
        self.used = 0  # bytes received
        self._kept_at = 0
        self._kept = b""

    @property
    def remaining(self) -> int:
        return self._max_bytes - self._asked

    def over_budget(self, what: str) -> ValidationError:
        return ValidationError(
            f"could not check the MP4 within the {self._max_bytes}-byte read limit: {what}",
            field=FIELD,
        )

    async def read(self, offset: int, length: int) -> bytes:
        have = b""
        if self._kept_at <= offset < self._kept_at + len(self._kept):
            start = offset - self._kept_at
            have = self._kept[start : start + length]
        need = length - len(have)
        if need == 0:
            return have
        if need > self.remaining:
            raise self.over_budget("the header boxes are too large or too many")
        self._asked += need
        data = await self._source.read(offset + len(have), need)
        data = data[:need]  # a source must not hand over more than asked for
        self.used += len(data)
        if data:
            self._kept_at, self._kept = offset, have + data
        return have + data


def _overrun(header: BoxHeader, file_size: int | None, movie_seen: bool) -> ValidationError:
    """A box that runs past the end of the file: the file was cut short."""
    if file_size is None:
        where = f"the file ends inside its '{header.kind}' box, which runs to byte {header.end}"
    else:
        where = (
            f"the file is {file_size} bytes but its '{header.kind}' box runs to byte {header.end}"
        )
    if movie_seen:
        return ValidationError(f"truncated MP4: {where}", field=FIELD)
    return ValidationError(f"truncated MP4: moov box missing ({where})", field=FIELD)


class _Scan:
    """The walk over one file's top-level boxes, and what it has learned so far."""

    def __init__(self, reader: _Reader, file_size: int | None) -> None:
        self.reader = reader
        self.file_size = file_size
        self.tally = BoxTally(_MAX_BOXES)
        self.top_level = BoxTally(_MAX_TOP_LEVEL_BOXES)
        self.movie: Movie | None = None
        self.indexes: list[SegmentIndex] = []
        self.track_ends: dict[int, int] = {}  # end of each track's samples, track timescale

    async def payload(self, header: BoxHeader) -> bytes:
        """A box's payload, plus up to one box header after it kept for the next read."""
        if header.size is None:
            raise corrupt(f"the '{header.kind}' box runs to the end of a file of unknown size")
        length = header.size - header.header_size
        if length > self.reader.remaining:
            raise self.reader.over_budget(f"its '{header.kind}' box alone is {header.size} bytes")
        extra = min(_HEADER_READ, self.reader.remaining - length)
        if self.file_size is not None:
            extra = min(extra, self.file_size - header.start - header.size)
        data = await self.reader.read(header.payload_start, length + extra)
        if len(data) < length:
            raise _overrun(header, header.payload_start + len(data), self.movie is not None)
        return data[:length]

    async def header_at(self, offset: int) -> BoxHeader | None:
        """The top-level box header at ``offset``, or None at the end of the file."""
        want = _HEADER_READ
        if self.file_size is not None:
            want = min(want, self.file_size - offset)
        raw = await self.reader.read(offset, want)
        if not raw:
            return None
        if len(raw) < 8:
            raise ValidationError(
                f"truncated MP4: the file ends inside a box header at byte {offset}", field=FIELD
            )
        header = parse_header(raw, offset, end_of_parent=self.file_size)
        end = header.end
        if self.file_size is not None and end is not None and end > self.file_size:
            raise _overrun(header, self.file_size, self.movie is not None)
        self.top_level.take()
        return header

    async def check_ends_at(self, header: BoxHeader) -> None:
        """With no known size, the last box's last byte proves the file is not cut short."""
        end = header.end
        if self.file_size is None and end is not None and not await self.reader.read(end - 1, 1):
            raise _overrun(header, None, self.movie is not None)

    def settled(self) -> bool:
        """Whether the duration is known without looking at any more boxes."""
        movie = self.movie
        return movie is not None and (not movie.fragmented or movie.fragment_duration > 0)

    async def visit(self, header: BoxHeader) -> None:
        movie = self.movie
        if header.kind == "moov":
            if movie is not None:
                raise corrupt("the file has two moov boxes")
            self.movie = parse_movie(await self.payload(header), self.tally)
            self.track_ends = {t.track_id: t.duration for t in self.movie.tracks}
        elif header.kind == "sidx" and movie is not None and movie.fragmented:
            self.indexes.append(parse_sidx(await self.payload(header)))
        elif header.kind == "moof" and movie is not None and movie.fragmented:
            # Summing samples is the last resort: a segment index says the same for less.
            if not self.indexes:
                self.add_fragment(movie, await self.payload(header))
        elif header.kind == "moof":
            raise corrupt("a movie fragment (moof) without a moov box declaring fragments")

    def add_fragment(self, movie: Movie, payload: bytes) -> None:
        for run in parse_moof(payload, movie.default_durations, self.tally):
            if run.track_id not in self.track_ends:
                raise corrupt(f"a movie fragment refers to track {run.track_id}, not in moov")
            end = self.track_ends[run.track_id]
            # tfdt, when present, places the fragment on the track's timeline exactly.
            base = end if run.base_time is None else run.base_time
            self.track_ends[run.track_id] = max(end, base + run.duration)

    def duration(self, movie: Movie) -> float:
        movie_seconds = movie.duration / movie.timescale
        if not movie.fragmented:
            tracks = (t.duration / t.timescale for t in movie.tracks)
            return movie_seconds or max(tracks, default=0.0)
        if movie.fragment_duration:
            return movie.fragment_duration / movie.timescale
        if self.indexes:
            return max(movie_seconds, self._indexed_seconds(movie))
        scales = {t.track_id: t.timescale for t in movie.tracks}
        ends = (end / scales[track] for track, end in self.track_ends.items())
        return max(movie_seconds, max(ends, default=0.0))

    def _indexed_seconds(self, movie: Movie) -> float:
        """The longest span the segment indexes cover for one referenced stream.

        Taking the latest end and earliest start copes alike with one global sidx, one
        per fragment, and a hierarchy of them. When the moov holds samples itself, the
        indexes continue its timeline, so their end is the clip's end.
        """
        spans: dict[tuple[int, int], tuple[int, int]] = {}
        for index in self.indexes:
            key = (index.reference_id, index.timescale)
            end = index.start + index.duration
            first, last = spans.get(key, (index.start, end))
            spans[key] = (min(first, index.start), max(last, end))
        return max(
            ((last - (first if movie.duration == 0 else 0)) / scale)
            for (_, scale), (first, last) in spans.items()
        )


async def _file_type(reader: _Reader, file_size: int | None, head: bytes) -> tuple[str, int]:
    """The ftyp major brand and where the next box starts; sniffs what else it might be."""
    if len(head) < 8 or head[4:8] != b"ftyp":
        if len(head) == _FIRST_READ and reader.remaining > 0:
            head = await reader.read(0, min(_SNIFF_READ, _FIRST_READ + reader.remaining))
        raise ValidationError(describe_non_mp4(head), field=FIELD)
    header = parse_header(head, 0, end_of_parent=file_size)
    if header.size is None or header.size > _MAX_FTYP_BYTES:
        raise corrupt(f"the file type box (ftyp) claims {header.size or 'all the'} bytes")
    if file_size is not None and header.size > file_size:
        raise _overrun(header, file_size, movie_seen=False)
    payload = await reader.read(header.payload_start, header.size - header.header_size)
    if len(payload) < header.size - header.header_size:
        raise _overrun(header, header.payload_start + len(payload), movie_seen=False)
    return check_brands(payload), header.size


async def read_media_info(source: ByteSource, *, max_bytes: int = MAX_PROBE_BYTES) -> MediaFacts:
    """Read an MP4's duration, picture size and whether it has sound from its header boxes.

    Fetches only box headers, ``moov`` and, for fragmented files without ``mehd``, the
    ``sidx`` or ``moof`` boxes; never more than ``max_bytes`` in all. The source is not
    closed.

    Raises:
        ValidationError: the file is empty, is not an MP4 (with what it looks like:
            WebM/Matroska, an HTML page...), is truncated or corrupt, or needs more than
            ``max_bytes`` to answer. Errors of the source itself pass through.
    """
    if max_bytes < _FIRST_READ:
        raise ValidationError(f"max_bytes must be at least {_FIRST_READ}", field="max_bytes")
    reader = _Reader(source, max_bytes)
    head = await reader.read(0, _FIRST_READ)
    file_size = await source.size()
    if not head or file_size == 0:
        raise ValidationError("empty file: the video has no bytes", field=FIELD)
    if file_size is not None and file_size < len(head):
        raise corrupt(f"the source reports {file_size} bytes but sent more")
    brand, offset = await _file_type(reader, file_size, head)
    scan = _Scan(reader, file_size)
    previous: BoxHeader | None = None
    while not scan.settled():
        header = await scan.header_at(offset)
        if header is None:
            if previous is not None:
                await scan.check_ends_at(previous)
            break
        await scan.visit(header)
        if header.end is None:  # size 0: the box runs to the end of the file
            break
        previous, offset = header, header.end
    movie = scan.movie
    if movie is None:
        raise ValidationError("truncated MP4: moov box missing", field=FIELD)
    duration = scan.duration(movie)
    if duration <= 0:
        raise ValidationError(
            "the MP4 declares no duration (an unfinished recording?)", field=FIELD
        )
    video = next((t for t in movie.tracks if t.handler == "vide"), None)
    bytes_read = reader.used
    if isinstance(source, CountingByteSource):
        bytes_read = max(bytes_read, source.bytes_received)
    return MediaFacts(
        duration=duration,
        width=video.width if video else None,
        height=video.height if video else None,
        has_audio=any(t.handler == "soun" for t in movie.tracks),
        bytes_read=bytes_read,
        brand=brand,
        fragmented=movie.fragmented,
    )
