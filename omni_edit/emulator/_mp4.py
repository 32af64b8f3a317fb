"""The bytes of an emulated result file: real MP4 header boxes, then filler media.

The header (``ftyp`` brand ``isom``, a ``moov`` with ``mvhd`` and a video and a sound
``trak``) lets a client that reads MP4 boxes over Range requests find a duration, a
720p frame size and an audio track. The rest is an ``mdat`` box of pseudo-random bytes
that depend only on the file's name, so any byte range can be served without keeping
the file.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator

from ._state import ASSUMED_CLIP_SECONDS

__all__ = ["ResultFile"]

_TIMESCALE = 1000
_FILLER_BLOCK = 64 * 1024
_UNITY_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, flags: int, *parts: bytes) -> bytes:
    # Version 0 everywhere: 32-bit times and durations are plenty here.
    return _box(kind, struct.pack(">I", flags), *parts)


def _track(track_id: int, handler: bytes, width: int, height: int, volume: int) -> bytes:
    duration = ASSUMED_CLIP_SECONDS * _TIMESCALE
    tkhd = _full_box(
        b"tkhd",
        0x3,  # enabled, in movie
        struct.pack(">5I", 0, 0, track_id, 0, duration),
        bytes(8),
        struct.pack(">hhHH", 0, 0, volume, 0),
        _UNITY_MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = _full_box(
        b"mdhd", 0, struct.pack(">4I", 0, 0, _TIMESCALE, duration), struct.pack(">HH", 0x55C4, 0)
    )
    hdlr = _full_box(b"hdlr", 0, bytes(4), handler, bytes(12), b"omni_edit emulator\0")
    return _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr))


def _header() -> bytes:
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    mvhd = _full_box(
        b"mvhd",
        0,
        struct.pack(">4I", 0, 0, _TIMESCALE, ASSUMED_CLIP_SECONDS * _TIMESCALE),
        struct.pack(">IH", 0x10000, 0x100),
        bytes(10),
        _UNITY_MATRIX,
        bytes(24),
        struct.pack(">I", 3),
    )
    moov = _box(b"moov", mvhd, _track(1, b"vide", 1280, 720, 0), _track(2, b"soun", 0, 0, 0x100))
    return ftyp + moov


_HEADER = _header()


class ResultFile:
    """The ``size`` bytes of the result file called ``name``, readable by range."""

    def __init__(self, name: str, size: int) -> None:
        mdat_size = max(0, size - len(_HEADER))
        self.size = size
        self._head = (_HEADER + struct.pack(">I", mdat_size) + b"mdat")[:size]
        filler = max(0, size - len(self._head))
        self._block = random.Random(name).randbytes(min(_FILLER_BLOCK, filler))
        digest = hashlib.sha256(f"{name}:{size}".encode()).hexdigest()[:24]
        self.etag = f'"{digest}"'

    def chunks(self, start: int, stop: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``stop`` (exclusive), in pieces of at most 64 KiB."""
        head = len(self._head)
        pos = start
        while pos < stop:
            if pos < head:
                piece = self._head[pos : min(stop, head)]
            else:
                offset = (pos - head) % len(self._block)
                piece = self._block[offset : offset + (stop - pos)]
            yield piece
            pos += len(piece)
