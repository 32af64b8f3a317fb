"""``edit_many``'s inputs: what one may be, how it is read, and where its result goes.

Inputs come from an iterable or an async iterable and are read lazily, one at a time, by
whichever worker is free, so a generator of a million inputs never sits in memory.
"""

from __future__ import annotations

import array
import asyncio
import inspect
import os
import re
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from os import PathLike
from pathlib import Path

from .._constants import FILE_NAME_MAX_BYTES, TEMP_NAME_ROOM_BYTES
from .._exceptions import ValidationError
from .._models import EditInput, EditRequest
from .journal import fingerprint

__all__ = [
    "InputFeed",
    "OccurrenceCounter",
    "check_destination",
    "check_destination_callable",
    "coerce_request",
    "output_name",
]

# Linux's limit on a path passed to a system call.
_PATH_MAX_BYTES = 4095


def coerce_request(raw: object) -> EditRequest:
    """An ``EditRequest`` from one input: itself, ``(video_url, prompt[, callback_url])``
    or a mapping with those keys. ``ValidationError`` for anything else."""
    if isinstance(raw, EditRequest):
        return raw
    # Tuples before mappings: an ABC check costs several plain ones, on every input.
    if isinstance(raw, tuple) and len(raw) in (2, 3):
        return EditRequest(*raw)
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"video_url", "prompt", "callback_url"}
        if unknown:
            raise ValidationError(f"unknown keys in input: {', '.join(sorted(unknown))}")
        if "video_url" not in raw or "prompt" not in raw:
            raise ValidationError("an input needs 'video_url' and 'prompt'")
        return EditRequest(raw["video_url"], raw["prompt"], raw.get("callback_url"))
    raise ValidationError(
        f"an input must be an EditRequest, a (video_url, prompt) tuple or a dict, not"
        f" {type(raw).__name__}"
    )


def output_name(request: EditRequest, occurrence: int = 0, *, digest: str | None = None) -> str:
    """A file name derived from the input alone, stable across reruns and orderings:
    the clip's name and a digest of the request, and for the 2nd, 3rd... identical
    input (``occurrence`` 1, 2...) ``-take2``, ``-take3``..., so no two takes share a file."""
    stem = Path(request.video_url.split("?", 1)[0]).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-")[:48] or "clip"
    if digest is None:
        digest = fingerprint(request.video_url, request.prompt, request.callback_url)
    take = f"-take{occurrence + 1}" if occurrence else ""
    return f"{stem}-{digest[:10]}{take}.mp4"


def check_destination_callable(destination: Callable[..., object]) -> None:
    """``ValidationError`` now, before anything is sent, for a ``destination`` that
    cannot be called as ``destination(index, request, occurrence)``: found out per
    input, it would fail each one after it was billed."""
    try:
        signature = inspect.signature(destination)
    except (TypeError, ValueError):
        return  # a builtin or C callable without a signature: trusted
    try:
        signature.bind(0, None, 0)
    except TypeError as exc:
        raise ValidationError(
            f"destination must take (index, request, occurrence) and return a path: {exc}",
            field="destination",
        ) from None


def check_destination(path: str | PathLike[str]) -> Path:
    """A result path the file system can take, checked before the input is billed:
    ``ValidationError`` for a NUL byte, a name over 255 bytes or a path over 4095."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise ValidationError(
            f"destination returned {type(path).__name__}, not a path", field="destination"
        ) from None
    if not isinstance(text, str):
        text = os.fsdecode(text)
    shown = repr(text[:80])
    if "\0" in text:
        raise ValidationError(f"the result path {shown} holds a NUL byte", field="destination")
    try:
        encoded = os.fsencode(text)
    except UnicodeEncodeError:
        raise ValidationError(
            f"the result path {shown} is not valid text", field="destination"
        ) from None
    if len(encoded) > _PATH_MAX_BYTES:
        raise ValidationError(
            f"the result path {shown}... is {len(encoded)} bytes long; the limit is"
            f" {_PATH_MAX_BYTES}",
            field="destination",
        )
    parts = encoded.split(b"/")
    for i, part in enumerate(parts):
        limit = FILE_NAME_MAX_BYTES - (TEMP_NAME_ROOM_BYTES if i == len(parts) - 1 else 0)
        if len(part) > limit:
            raise ValidationError(
                f"the result path {shown} has a name of {len(part)} bytes; the limit"
                f" is {limit} (file systems take {FILE_NAME_MAX_BYTES}, and the download's"
                " temporary file needs the rest)",
                field="destination",
            )
    return Path(text)


class OccurrenceCounter:
    """Which take of its request each input is: 0 for the first of identical inputs in a
    stream, 1 for the second... (docs/reliability.md#journal).

    Every distinct request is remembered, so memory is kept small: its 128-bit digest in
    an open-addressing table of 64-bit words, about 32 bytes per distinct request at
    worst (a million-input stream: ~32 MB; a dict of the digests took ~150), and a
    count only for requests seen more than once. The whole digest is kept, so two
    requests are never taken for one.
    """

    def __init__(self) -> None:
        self._capacity = 1024  # slots, a power of two; each slot is two words
        self._table = array.array("Q", [0]) * (2 * self._capacity)
        self._used = 0
        self._repeats: dict[tuple[int, int], int] = {}

    def next(self, digest: str) -> int:
        """The occurrence of the input whose ``fingerprint`` is ``digest`` (32 hex)."""
        high, low = int(digest[:16], 16), int(digest[16:32], 16)
        # (0, 0) marks a free slot: the all-zero digest is stored as 0...01 (the two
        # would be counted as one, at odds of 2**-128).
        if high == 0 and low == 0:
            low = 1
        table, mask = self._table, self._capacity - 1
        slot = high & mask  # the digest is a hash already: its bits are uniform
        while True:
            h, lo = table[2 * slot], table[2 * slot + 1]
            if h == 0 and lo == 0:
                table[2 * slot], table[2 * slot + 1] = high, low
                self._used += 1
                if 2 * self._used > self._capacity:
                    self._grow()
                return 0
            if h == high and lo == low:
                key = (high, low)
                n = self._repeats.get(key, 0) + 1
                self._repeats[key] = n
                return n
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        old = self._table
        self._capacity *= 2
        self._table = array.array("Q", [0]) * (2 * self._capacity)
        mask = self._capacity - 1
        for i in range(0, len(old), 2):
            high, low = old[i], old[i + 1]
            if high or low:
                slot = high & mask
                while self._table[2 * slot] or self._table[2 * slot + 1]:
                    slot = (slot + 1) & mask
                self._table[2 * slot], self._table[2 * slot + 1] = high, low


class InputFeed:
    """The inputs, read lazily by the workers in turn and numbered in reading order.

    Ends at the inputs' end or at the first error reading them (kept in ``broken``).
    """

    def __init__(self, requests: Iterable[EditInput] | AsyncIterable[EditInput]) -> None:
        self._sync: Iterator[EditInput] | None = None
        self._async: AsyncIterator[EditInput] | None = None
        # Async iterators (async generators in particular) refuse overlapping reads.
        self._lock: asyncio.Lock | None = None
        self.index = 0
        self.done = False
        self.broken: Exception | None = None
        try:
            if isinstance(requests, AsyncIterable):
                self._async = aiter(requests)
                self._lock = asyncio.Lock()
            else:
                self._sync = iter(requests)
        except Exception as exc:
            self._end(exc)

    def _end(self, exc: Exception | None) -> None:
        self.done = True
        if exc is not None and self.broken is None:
            self.broken = exc

    async def take(self) -> tuple[int, EditInput] | None:
        """The next input and its index, or ``None`` when there are no more."""
        if self.done:
            return None
        try:
            if self._sync is not None:
                raw = next(self._sync)
            else:
                assert self._async is not None
                assert self._lock is not None
                async with self._lock:
                    if self.done:
                        return None
                    raw = await anext(self._async)
        except (StopIteration, StopAsyncIteration):
            self._end(None)
            return None
        except Exception as exc:
            self._end(exc)
            return None
        index = self.index
        self.index += 1
        return index, raw
