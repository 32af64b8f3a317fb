"""``edit_many``'s inputs: what one may be, how it is read, and where its result goes.

Inputs come from an iterable or an async iterable and are read lazily, one at a time, by
whichever worker is free, so a generator of a million inputs never sits in memory.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path

from .._exceptions import ValidationError
from .._models import EditInput, EditRequest
from .journal import fingerprint

__all__ = ["InputFeed", "coerce_request", "output_name"]


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


def output_name(request: EditRequest) -> str:
    """A file name derived from the input alone, stable across reruns and orderings."""
    stem = Path(request.video_url.split("?", 1)[0]).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-")[:48] or "clip"
    digest = fingerprint(request.video_url, request.prompt, request.callback_url)
    return f"{stem}-{digest[:10]}.mp4"


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
