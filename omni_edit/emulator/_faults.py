"""Injected faults: what a test asks the emulator to get wrong, and when.

A ``Fault`` is a value; ``FaultQueue`` holds the ones queued for upcoming requests. Some
kinds *replace* the request (it is never processed: nothing is created); others let it
be processed and then spoil the answer, which is how a create whose answer was lost is
emulated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Literal

import attrs
from aiohttp import web
from multidict import CIMultiDict

from .._constants import QUOTA_LIMIT_CODES
from ._errors import RETRY_HINT_STATUSES, error_body, html_page

__all__ = [
    "API_FAULT_KINDS",
    "PROCESSING_KINDS",
    "RESULT_FAULT_KINDS",
    "Fault",
    "FaultKind",
    "FaultQueue",
    "drop_connection",
]

FaultKind = Literal[
    "status",
    "html",
    "empty",
    "redirect",
    "malformed",
    "drop_before",
    "drop_after",
    "delay",
    "drop_after_bytes",
    "ignore_range",
]
# Kinds that let the API request be handled before they act on the answer.
PROCESSING_KINDS: frozenset[str] = frozenset({"malformed", "drop_after", "delay"})
_REPLACING_KINDS = frozenset({"status", "html", "empty", "redirect", "drop_before"})
API_FAULT_KINDS: frozenset[str] = _REPLACING_KINDS | PROCESSING_KINDS
RESULT_FAULT_KINDS: frozenset[str] = _REPLACING_KINDS | {
    "delay",
    "drop_after_bytes",
    "ignore_range",
}

_JSON = "application/json"


def _check_status(code: int) -> int:
    if not 100 <= code <= 599:
        raise ValueError(f"HTTP status must be within 100-599, got {code}")
    return code


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


@attrs.frozen
class Fault:
    """One misbehaviour of the emulator. Build it with the class methods, not directly.

    ``http_status``, ``body`` and ``headers`` make up the answer of the kinds that send
    one; ``seconds`` is the wait of ``delay``; ``byte_count`` is how much of a result
    file ``drop_after_bytes`` sends before cutting the connection.
    """

    kind: FaultKind
    http_status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    byte_count: int = 0

    @classmethod
    def status(
        cls,
        code: int,
        *,
        body: Mapping[str, Any] | bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: int | None = 1,
    ) -> Fault:
        """Answer ``code`` instead of handling the request (nothing is created).

        The default body is the JSON error of docs/api.md#http-errors for ``code``, with
        its numeric status as ``code``. A 429 or 503 also gets ``Retry-After: N`` and
        the fallback suggestion "retry after N seconds": N is the ``Retry-After`` in
        ``headers`` if given, else ``retry_after``; ``retry_after=None`` sends neither.
        A mapping ``body`` is sent as JSON, bytes or str as they are. Raises
        ``ValueError`` for a status outside 100-599.
        """
        _check_status(code)
        merged = CIMultiDict(headers or {})
        hint: int | None = None
        if code in RETRY_HINT_STATUSES:
            given = merged.get("Retry-After")
            if given is None and retry_after is not None:
                merged["Retry-After"] = str(retry_after)
                hint = retry_after
            elif given is not None and given.strip().isdigit():
                hint = int(given)
        if body is None:
            raw = json.dumps(error_body(code, code, _phrase(code), retry_after=hint)).encode()
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
        merged.setdefault("Content-Type", _JSON)
        return cls("status", code, raw, tuple(merged.items()))

    @classmethod
    def refusal(cls, code: str, **figures: float) -> Fault:
        """The gateway's admission refusal with a finer ``code`` of docs/api.md#http-errors
        (``key_daily_quota_exhausted``, ``key_disabled``...): 402 for a credit limit,
        403 for the key itself; ``figures`` (``estimated_credits=...``) join the body.
        Nothing is created. Raises ``ValueError`` for a code not in that list."""
        limit = QUOTA_LIMIT_CODES.get(code)
        if limit is None:
            raise ValueError(f"{code!r} is not one of the gateway's 402/403 codes")
        status = 402 if limit in ("account_balance", "key_quota", "key_daily_quota") else 403
        message = f"Refused: {code.replace('_', ' ')}."
        return cls.status(status, body=error_body(status, code, message, extra=dict(figures)))

    @classmethod
    def html(cls, code: int) -> Fault:
        """A proxy's HTML error page with status ``code``; the request is not handled."""
        headers = (("Content-Type", "text/html; charset=utf-8"),)
        return cls("html", _check_status(code), html_page(code), headers)

    @classmethod
    def empty(cls, code: int) -> Fault:
        """Status ``code`` with an empty body; the request is not handled."""
        return cls("empty", _check_status(code))

    @classmethod
    def redirect(cls, location: str, *, code: int = 302) -> Fault:
        """A redirect to ``location`` (on the API a client must not follow it)."""
        if not 300 <= code <= 399:
            raise ValueError(f"a redirect needs a 3xx status, got {code}")
        return cls("redirect", code, headers=(("Location", location),))

    @classmethod
    def malformed(cls, body: bytes, status: int = 200) -> Fault:
        """Handle the request normally (a create does create), then answer these raw
        bytes, labelled JSON, with ``status``."""
        return cls("malformed", _check_status(status), body, (("Content-Type", _JSON),))

    @classmethod
    def drop_before(cls) -> Fault:
        """Close the connection without handling the request and without an answer."""
        return cls("drop_before")

    @classmethod
    def drop_after(cls) -> Fault:
        """Handle the request (a create creates and bills), then close the connection
        with no answer: the "answer was lost" case."""
        return cls("drop_after")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before answering (an API request is handled first)."""
        if seconds < 0:
            raise ValueError(f"a delay cannot be negative, got {seconds}")
        return cls("delay", seconds=seconds)

    @classmethod
    def drop_after_bytes(cls, n: int) -> Fault:
        """Result host only: send the headers and the first ``n`` body bytes, then cut
        the connection."""
        if n < 0:
            raise ValueError(f"a byte count cannot be negative, got {n}")
        return cls("drop_after_bytes", byte_count=n)

    @classmethod
    def ignore_range(cls) -> Fault:
        """Result host only: answer 200 with the whole file even when a range was asked."""
        return cls("ignore_range")

    def response(self) -> web.Response:
        """The answer this fault sends in place of the real one."""
        return web.Response(
            status=self.http_status, body=self.body or None, headers=CIMultiDict(self.headers)
        )


@attrs.define
class _Queued:
    fault: Fault
    method: str | None
    path: str | None
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or path.startswith(self.path)
        )


class FaultQueue:
    """Faults waiting for the requests they will hit, first queued first used."""

    def __init__(self, kinds: frozenset[str], where: str) -> None:
        self._kinds = kinds
        self._where = where
        self._queued: list[_Queued] = []

    def add(self, fault: Fault, *, method: str | None, path: str | None, times: int) -> None:
        """Queue ``fault`` for the next ``times`` matching requests.

        Raises ``ValueError`` for a kind this host cannot do or a ``times`` below 1.
        """
        if fault.kind not in self._kinds:
            raise ValueError(f"a {fault.kind!r} fault cannot be injected on the {self._where}")
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        self._queued.append(_Queued(fault, method and method.upper(), path, times))

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if one is queued for it; uses one of its times."""
        for queued in self._queued:
            if queued.matches(method.upper(), path):
                queued.remaining -= 1
                if queued.remaining == 0:
                    self._queued.remove(queued)
                return queued.fault
        return None


def drop_connection(request: web.BaseRequest) -> web.Response:
    """Close the connection so that no byte of an answer is sent.

    The returned placeholder is never written: aiohttp meets the closed transport when it
    tries, and gives up quietly.
    """
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)
