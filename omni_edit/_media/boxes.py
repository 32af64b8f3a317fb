"""ISO/IEC 14496-12 (ISO base media file format) boxes, parsed from bytes in memory.

No I/O happens here: ``mp4`` decides which bytes to fetch and hands each box payload
to these functions. Every length a file declares is checked before it is trusted, so a
hostile file costs at most the bytes it is made of and raises ``ValidationError``;
nothing here loops on input-controlled counts without first checking that the bytes
for them exist.

Only fixed paths are descended (``moov/trak/mdia/hdlr``, ``moov/mvex/mehd``, and in
``fragments`` ``moof/traf/trun``), never arbitrary children, so nesting is at most
three levels deep whatever the file says; ``BoxTally`` caps how many boxes are looked at.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping

import attrs

from .._exceptions import ValidationError

__all__ = [
    "FIELD",
    "BoxHeader",
    "BoxTally",
    "Fields",
    "Movie",
    "Track",
    "children",
    "corrupt",
    "parse_header",
    "parse_movie",
    "show_kind",
]

# The argument a media problem is blamed on, for ``ValidationError.field``.
FIELD = "video_url"

# A version-0 field of all ones means "duration unknown" (14496-12, mvhd and mdhd).
_UNKNOWN_32 = 0xFFFFFFFF
_UNKNOWN_64 = 0xFFFFFFFFFFFFFFFF


def corrupt(detail: str) -> ValidationError:
    """The error for a file that claims to be an MP4 but breaks the format's rules."""
    return ValidationError(f"corrupt MP4: {detail}", field=FIELD)


def show_kind(raw: bytes) -> str:
    """A box type for a message: its four letters, or hex when they are not printable."""
    text = raw.decode("latin-1")
    return text if text.isprintable() else raw.hex()


class BoxTally:
    """Counts the boxes looked at in one file; too many means the file is hostile."""

    __slots__ = ("_left", "_limit")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._left = limit

    def take(self) -> None:
        self._left -= 1
        if self._left < 0:
            raise corrupt(f"more than {self._limit} boxes")


@attrs.frozen
class BoxHeader:
    """A box's type and extent; ``size`` is None for a box running to an unknown end."""

    kind: str
    start: int
    header_size: int
    size: int | None

    @property
    def end(self) -> int | None:
        return None if self.size is None else self.start + self.size

    @property
    def payload_start(self) -> int:
        return self.start + self.header_size


def parse_header(raw: bytes, start: int, *, end_of_parent: int | None) -> BoxHeader:
    """The header at the front of ``raw`` (8 bytes, or 16 when it uses ``largesize``).

    ``size == 0`` means "to the end of the enclosing space" (the file, at top level);
    ``size == 1`` means a 64-bit ``largesize`` follows the type. The caller checks the
    result against the parent's end; here only self-consistency is checked.
    """
    if len(raw) < 8:
        raise corrupt(f"a box header at byte {start} is cut short")
    size, kind_raw = struct.unpack_from(">I4s", raw)
    kind = show_kind(kind_raw)
    header_size = 8
    total: int | None = size
    if size == 1:
        if len(raw) < 16:
            raise corrupt(f"the '{kind}' box at byte {start} is cut short in its 64-bit size")
        (total,) = struct.unpack_from(">Q", raw, 8)
        header_size = 16
    elif size == 0:
        total = None if end_of_parent is None else end_of_parent - start
    if total is not None and total < header_size:
        raise corrupt(
            f"the '{kind}' box at byte {start} declares {total} bytes, "
            f"less than its own {header_size}-byte header"
        )
    return BoxHeader(kind=kind, start=start, header_size=header_size, size=total)


class Fields:
    """Big-endian fields read in order from one box payload, bounds-checked."""

    __slots__ = ("_data", "_kind", "_pos")

    def __init__(self, data: bytes, kind: str) -> None:
        self._data = data
        self._kind = kind
        self._pos = 0

    def _take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self._pos + size > len(self._data):
            raise corrupt(f"the '{self._kind}' box is too short")
        (value,) = struct.unpack_from(fmt, self._data, self._pos)
        self._pos += size
        return int(value)

    def u16(self) -> int:
        return self._take(">H")

    def u32(self) -> int:
        return self._take(">I")

    def u64(self) -> int:
        return self._take(">Q")

    def sized(self, version: int) -> int:
        """A field that is 64-bit in version 1 of a full box and 32-bit otherwise."""
        return self.u64() if version == 1 else self.u32()

    def skip(self, count: int) -> None:
        if self._pos + count > len(self._data):
            raise corrupt(f"the '{self._kind}' box is too short")
        self._pos += count

    def fourcc(self) -> str:
        self.skip(4)
        return show_kind(self._data[self._pos - 4 : self._pos])

    def version_and_flags(self) -> tuple[int, int]:
        word = self.u32()
        return word >> 24, word & 0xFFFFFF

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def rest(self) -> bytes:
        return self._data[self._pos :]


def children(payload: bytes, parent: str, tally: BoxTally) -> Iterator[tuple[str, bytes]]:
    """The (type, payload) of each box directly inside a container's payload."""
    pos = 0
    while pos < len(payload):
        left = len(payload) - pos
        if left < 8:
            # QuickTime ends some containers with a 32-bit zero; anything else is damage.
            if payload[pos:] == bytes(left):
                return
            raise corrupt(f"{left} stray bytes at the end of the '{parent}' box")
        tally.take()
        header = parse_header(payload[pos : pos + 16], pos, end_of_parent=len(payload))
        end = header.end
        if end is None or end > len(payload):
            raise corrupt(f"the '{header.kind}' box runs past the end of its '{parent}' box")
        yield header.kind, payload[header.payload_start : end]
        pos = end


def _known(value: int, version: int) -> int:
    """A duration field, with the all-ones "unknown" marker turned into 0."""
    return 0 if value == (_UNKNOWN_64 if version == 1 else _UNKNOWN_32) else value


@attrs.frozen
class Track:
    """What one ``trak`` box says: ids, kind of media, picture size and length."""

    track_id: int
    handler: str  # hdlr handler_type: "vide", "soun", ...
    width: int | None
    height: int | None
    timescale: int  # mdhd units per second
    duration: int  # mdhd, in the track's timescale; 0 when unknown


@attrs.frozen
class Movie:
    """What the ``moov`` box says about the whole clip."""

    timescale: int  # mvhd units per second
    duration: int  # mvhd, in the movie timescale; 0 when unknown or empty
    fragmented: bool  # an mvex box is present: movie fragments may follow
    fragment_duration: int  # mehd, in the movie timescale; 0 when absent
    tracks: tuple[Track, ...]
    default_durations: Mapping[int, int]  # trex default_sample_duration by track_ID


def _timed_header(payload: bytes, kind: str, name: str) -> tuple[int, int]:
    """mvhd or mdhd, which share their first fields: (timescale, duration)."""
    fields = Fields(payload, kind)
    version, _ = fields.version_and_flags()
    fields.sized(version)  # creation_time
    fields.sized(version)  # modification_time
    timescale = fields.u32()
    duration = _known(fields.sized(version), version)
    if timescale == 0:
        raise corrupt(f"{name} ({kind}) has a timescale of 0")
    return timescale, duration


def _movie_header(payload: bytes) -> tuple[int, int]:
    return _timed_header(payload, "mvhd", "the movie header")


def _track_header(payload: bytes) -> tuple[int, int | None, int | None]:
    """tkhd: (track_ID, width, height); the sizes are 16.16 fixed point in the file."""
    fields = Fields(payload, "tkhd")
    version, _ = fields.version_and_flags()
    fields.sized(version)  # creation_time
    fields.sized(version)  # modification_time
    track_id = fields.u32()
    fields.u32()  # reserved
    fields.sized(version)  # duration, in the movie timescale; mdhd is used instead
    # reserved[2], layer, alternate_group, volume, reserved, matrix[9]
    fields.skip(8 + 2 + 2 + 2 + 2 + 36)
    width = fields.u32() >> 16
    height = fields.u32() >> 16
    return track_id, width or None, height or None


def _media_header(payload: bytes) -> tuple[int, int]:
    return _timed_header(payload, "mdhd", "a media header")


def _handler_type(payload: bytes) -> str:
    fields = Fields(payload, "hdlr")
    fields.version_and_flags()
    fields.u32()  # pre_defined
    return fields.fourcc()


def _track(payload: bytes, tally: BoxTally) -> Track:
    header: tuple[int, int | None, int | None] | None = None
    media: tuple[int, int] | None = None
    handler = ""
    for kind, body in children(payload, "trak", tally):
        if kind == "tkhd" and header is None:
            header = _track_header(body)
        elif kind == "mdia":
            for inner_kind, inner in children(body, "mdia", tally):
                if inner_kind == "mdhd" and media is None:
                    media = _media_header(inner)
                elif inner_kind == "hdlr" and not handler:
                    handler = _handler_type(inner)
    if header is None or media is None:
        raise corrupt("a track (trak) lacks its 'tkhd' or 'mdhd' header")
    track_id, width, height = header
    timescale, duration = media
    return Track(track_id, handler, width, height, timescale, duration)


def _movie_extends(payload: bytes, tally: BoxTally) -> tuple[int, dict[int, int]]:
    """mvex: (mehd fragment_duration or 0, trex default_sample_duration by track)."""
    fragment_duration = 0
    defaults: dict[int, int] = {}
    for kind, body in children(payload, "mvex", tally):
        fields = Fields(body, kind)
        if kind == "mehd":
            version, _ = fields.version_and_flags()
            fragment_duration = _known(fields.sized(version), version)
        elif kind == "trex":
            fields.version_and_flags()
            track_id = fields.u32()
            fields.u32()  # default_sample_description_index
            defaults[track_id] = fields.u32()
    return fragment_duration, defaults


def parse_movie(payload: bytes, tally: BoxTally) -> Movie:
    """The ``moov`` payload, read for timing, tracks and fragmentation."""
    header: tuple[int, int] | None = None
    tracks: list[Track] = []
    fragmented = False
    fragment_duration = 0
    defaults: dict[int, int] = {}
    for kind, body in children(payload, "moov", tally):
        if kind == "mvhd" and header is None:
            header = _movie_header(body)
        elif kind == "trak":
            tracks.append(_track(body, tally))
        elif kind == "mvex":
            fragmented = True
            fragment_duration, defaults = _movie_extends(body, tally)
    if header is None:
        raise corrupt("the moov box has no movie header (mvhd)")
    timescale, duration = header
    return Movie(timescale, duration, fragmented, fragment_duration, tuple(tracks), defaults)
