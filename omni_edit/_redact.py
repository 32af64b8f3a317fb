"""Keeping secrets out of reprs, messages and logs.

Result links are presigned: their query string is a credential for 24 hours. The API
key is wrapped in ``Secret`` so that no ``repr`` or f-string can print it by accident.

A server may also echo the key back (a 401 message quoting it, a proxy's error page
showing the request's headers), so every ``Secret``'s value is remembered here and
scrubbed from text that may carry it: the transport scrubs it from each answer's body
before anything reads it, every ``OmniEditError`` scrubs its ``str`` and ``repr``, and a
filter on the ``omni_edit`` logger scrubs every record logged there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "Secret",
    "redact_optional_url",
    "redact_secrets",
    "redact_url",
    "redact_urls",
]

REDACTED = "REDACTED"
# Shorter values are not keys (an emulator run with key "k", say); scrubbing them would
# garble every message. The bound keeps a process that makes clients with ever new keys
# from growing the list without end; the newest are kept.
MIN_SECRET_LENGTH = 8
_MAX_SECRETS = 64
_secrets: dict[str, None] = {}
_secrets_lock = threading.Lock()


def _remember(value: str) -> None:
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        _secrets.pop(value, None)
        _secrets[value] = None
        while len(_secrets) > _MAX_SECRETS:
            del _secrets[next(iter(_secrets))]


def redact_secrets(text: str) -> str:
    """``text`` with the value of every ``Secret`` made so far replaced by ``REDACTED``."""
    for secret in tuple(_secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


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
    """A string that never shows itself in ``repr``/``str``; read it with ``reveal()``.

    Its value (8 characters or more) is also scrubbed from exception texts and from the
    ``omni_edit`` logger's records, wherever it came from (``redact_secrets``).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        _remember(value)

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


class _SecretFilter(logging.Filter):
    """Scrubs secrets from a record's message and from its traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it at the handler
            return True
        clean = redact_secrets(message)
        if clean is not message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            clean = redact_secrets(text)
            if clean != text:
                record.exc_text = clean
        return True


# A logger's filters see only what is logged through it, not what its children pass
# up: each of the package's loggers gets the filter.
for _name in ("omni_edit", "omni_edit.cli", "omni_edit.emulator"):
    logging.getLogger(_name).addFilter(_SecretFilter())
