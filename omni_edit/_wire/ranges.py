"""``Content-Range`` as RFC 9110 section 14.4 defines it, for the two readers that ask for
byte ranges: the result download (resuming) and the media probe (header boxes)."""

from __future__ import annotations

import re

import attrs

__all__ = ["ContentRange", "parse_content_range"]

# "bytes 0-99/1234", "bytes 0-99/*" (length unknown) or "bytes */1234" (unsatisfied).
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


@attrs.frozen
class ContentRange:
    """``first`` and ``last`` byte (both ``None`` for an unsatisfied range) and the
    complete length, ``None`` when the server does not know it."""

    first: int | None
    last: int | None
    length: int | None


def parse_content_range(value: str | None) -> ContentRange | None:
    """The header's value parsed, or ``None`` when it is missing or malformed."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    first, last, length = match.groups()
    return ContentRange(
        first=None if first is None else int(first),
        last=None if last is None else int(last),
        length=None if length == "*" else int(length),
    )
