"""Keeping secrets out of reprs, messages and logs.

Result links are presigned: their query string is a credential for 24 hours. The API
key is wrapped in ``Secret`` so that no ``repr`` or f-string can print it by accident.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` with its query string, fragment and any userinfo replaced by ``REDACTED``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "REDACTED@" + netloc.rsplit("@", 1)[1]
    query = "REDACTED" if parts.query else ""
    fragment = "REDACTED" if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_optional_url(url: str | None) -> str:
    return repr(None) if url is None else redact_url(url)


def redact_urls(urls: Iterable[str]) -> str:
    return repr(tuple(redact_url(u) for u in urls))


class Secret:
    """A string that never shows itself in ``repr``/``str``; read it with ``reveal()``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def printable(text: str, limit: int = 200) -> str:
    """``text`` made safe for one log line: control and other unprintable characters
    escaped (a newline from a request must not forge a second record), cut at ``limit``."""
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
