"""``Content-Range`` as RFC 9110 section 14.4 defines it, for the two readers that ask for
byte ranges: the result download (resuming) and the media probe (header boxes)."""

from __future__ import annotations

import re

import attrs

__all__ = ["ContentRange", "parse_content_range"]

# "bytes 0-99/1234", "bytes 0-99/*" (length unknown) or "bytes */1234" (unsatisfied).
# At most 18 digits a number (under 2**63): a longer one is no file size, and thousands
# of digits would make int() itself fail (Python's limit on digit strings).
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d{1,18})-(\d{1,18})|\*)/(\d{1,18}|\*)")


@attrs.frozen
class ContentRange:
    """``first`` and ``last`` byte (both ``None`` for an unsatisfied range) and the
    complete length, ``None`` when the server does not know it."""

    first: int | None
    last: int | None
    length: int | None


def parse_content_range(value: str | None) -> ContentRange | None:
    """The header's value parsed, or ``None`` when it is missing, malformed or absurd
    (a number of more than 18 digits, a last byte before the first)."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    first, last, length = match.groups()
    if first is not None and int(last) < int(first):
        return None
    return ContentRange(
        first=None if first is None else int(first),
        last=None if last is None else int(last),
        length=None if length == "*" else int(length),
    )
