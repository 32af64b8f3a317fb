"""Hostile input: whatever the bytes, read_media_info answers or refuses, fast and bounded.

Every outcome must be ``MediaFacts`` or ``ValidationError``; never another exception, a
hang, or a read past ``max_bytes``.
"""

from __future__ import annotations

import math
import re
import struct
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from omni_edit._exceptions import ValidationError
from omni_edit._media.mp4 import read_media_info

pytestmark = pytest.mark.anyio

MEDIA = Path(__file__).parent / "data" / "media"
FIXTURES = [
    (MEDIA / name).read_bytes()
    for name in (
        "faststart.mp4",
        "moov_at_end.mp4",
        "fragmented.mp4",
        "fragmented_sidx.mp4",
        "fragmented_mehd.mp4",
        "v1_largesize.mp4",
    )
]
FUZZ = settings(
    max_examples=300,
    deadline=timedelta(milliseconds=500),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CONTAINERS = [b"moov", b"trak", b"mdia", b"mvex", b"moof", b"traf"]
LEAVES = [
    b"mvhd", b"tkhd", b"mdhd", b"hdlr", b"mehd", b"trex", b"tfhd", b"tfdt", b"trun",
    b"sidx", b"mdat", b"free", b"ftyp", b"\x00\x00\x00\x00",
]  # fmt: skip
VALID_FTYP = struct.pack(">I4s4sI4s", 20, b"ftyp", b"isom", 512, b"isom")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


class WatchedSource:
    """In-memory bytes that check every request the reader makes."""

    def __init__(self, data: bytes, *, known_size: bool) -> None:
        self.data = data
        self.known_size = known_size
        self.requested = 0

    async def size(self) -> int | None:
        return len(self.data) if self.known_size else None

    async def read(self, offset: int, length: int) -> bytes:
        assert offset >= 0
        assert length >= 0
        self.requested += length
        return self.data[offset : offset + length]


async def outcome_is_bounded(data: bytes, known_size: bool, max_bytes: int) -> None:
    source = WatchedSource(data, known_size=known_size)
    with anyio.fail_after(2):
        try:
            facts = await read_media_info(source, max_bytes=max_bytes)
        except ValidationError as exc:
            event("refused: " + re.sub(r"\d+", "N", str(exc).split(":")[0]))
        else:
            event("answered")
            assert math.isfinite(facts.duration)
            assert facts.duration > 0
            assert facts.bytes_read <= max_bytes
    assert source.requested <= max_bytes


def sized(kind: bytes, payload: bytes, mode: str, number: int) -> bytes:
    """A box whose size field is right, zero, 64-bit, or a lie of some kind."""
    if mode == "exact":
        return struct.pack(">I4s", 8 + len(payload), kind) + payload
    if mode == "zero":
        return struct.pack(">I4s", 0, kind) + payload
    if mode == "large":
        return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload
    if mode == "large_lie":
        return struct.pack(">I4sQ", 1, kind, number % 2**64) + payload
    if mode == "tiny":
        return struct.pack(">I4s", number % 8, kind) + payload
    if mode == "header_only":  # the payload then reads as sibling boxes
        return struct.pack(">I4s", 8, kind) + payload
    return struct.pack(">I4s", number % 2**32, kind) + payload  # any 32-bit size


modes = st.sampled_from(
    ["exact", "exact", "exact", "zero", "large", "large_lie", "tiny", "header_only", "any"]
)
numbers = st.one_of(
    st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 7, 8, 16, 2**31, 2**32 - 1, 2**63])
)
full_payloads = st.builds(
    lambda version, flags, rest: bytes([version]) + flags + rest,
    st.sampled_from([0, 1, 2, 255]),
    st.binary(min_size=3, max_size=3),
    st.binary(max_size=120),
)
leaves = st.builds(sized, st.sampled_from(LEAVES), full_payloads, modes, numbers)
trees = st.recursive(
    leaves,
    lambda inner: st.builds(
        lambda kind, kids, mode, number: sized(kind, b"".join(kids), mode, number),
        st.sampled_from(CONTAINERS),
        st.lists(inner, max_size=4),
        modes,
        numbers,
    ),
    max_leaves=12,
)
limits = st.one_of(st.integers(64, 4096), st.integers(4096, 1 << 20), st.just(4 * 1024 * 1024))


@FUZZ
@given(data=st.binary(max_size=2048), known_size=st.booleans(), max_bytes=limits)
async def test_random_bytes(data: bytes, known_size: bool, max_bytes: int) -> None:
    await outcome_is_bounded(data, known_size, max_bytes)


@FUZZ
@given(
    boxes=st.lists(trees, max_size=6),
    known_size=st.booleans(),
    max_bytes=limits,
)
async def test_structured_box_trees(boxes: list[bytes], known_size: bool, max_bytes: int) -> None:
    await outcome_is_bounded(VALID_FTYP + b"".join(boxes), known_size, max_bytes)


@FUZZ
@given(
    depth=st.integers(1, 300),
    kinds=st.lists(st.sampled_from(CONTAINERS), min_size=1, max_size=6),
    known_size=st.booleans(),
)
async def test_deep_nesting(depth: int, kinds: list[bytes], known_size: bool) -> None:
    inner = struct.pack(">I4s", 8, b"free")
    for level in range(depth):
        inner = struct.pack(">I4s", 8 + len(inner), kinds[level % len(kinds)]) + inner
    await outcome_is_bounded(VALID_FTYP + inner, known_size, 4 * 1024 * 1024)


def box_offsets(data: bytes) -> list[int]:
    """Where box headers start in a well-formed file, at every level: places worth hitting."""
    found: list[int] = []

    def walk(start: int, end: int) -> None:
        while start + 8 <= end:
            size, kind = struct.unpack_from(">I4s", data, start)
            header = 8
            if size == 1:
                size, header = struct.unpack_from(">Q", data, start + 8)[0], 16
            if size < header or start + size > end:
                return
            found.append(start)
            if kind in CONTAINERS:
                walk(start + header, start + size)
            start += size

    walk(0, len(data))
    return found


OFFSETS = [box_offsets(data) for data in FIXTURES]


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> bytes:
    which = draw(st.integers(0, len(FIXTURES) - 1))
    data = bytearray(FIXTURES[which])
    for _ in range(draw(st.integers(1, 4))):
        headers = [offset for offset in OFFSETS[which] if offset < len(data)] or [0]
        at = draw(st.one_of(st.sampled_from(headers), st.integers(0, len(data) - 1)))
        action = draw(st.sampled_from(["size", "size", "kind", "byte", "cut", "insert"]))
        if action == "size":
            value = draw(st.sampled_from([0, 1, 7, 8, 9, 2**31, 2**32 - 1, len(data), at]))
            data[at : at + 4] = struct.pack(">I", value % 2**32)
        elif action == "kind":
            data[at + 4 : at + 8] = draw(st.sampled_from([*CONTAINERS, *LEAVES]))
        elif action == "byte":
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        if not data:
            break
    return bytes(data)


@FUZZ
@given(data=mutated_fixtures(), known_size=st.booleans(), max_bytes=limits)
async def test_mutated_real_files(data: bytes, known_size: bool, max_bytes: int) -> None:
    await outcome_is_bounded(data, known_size, max_bytes)
