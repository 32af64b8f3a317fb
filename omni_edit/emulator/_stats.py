"""What the emulator saw, for tests and benchmarks to assert on.

Nothing here holds an API key: a request record says only whether an Authorization
header came and whether it was accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import attrs

__all__ = ["CallbackAttempt", "RequestRecord", "ResultRequestRecord", "Stats"]


@attrs.define
class RequestRecord:
    """One API request, recorded on arrival. ``status`` is the status sent, ``None``
    while the request is being handled and when the connection was dropped with no
    answer; ``time`` is ``time.monotonic()`` at its arrival; ``request_id`` the
    ``x-request-id`` its answer carried."""

    method: str
    path: str
    status: int | None
    had_authorization: bool
    authorized: bool
    time: float
    request_id: str | None = None


@attrs.define
class ResultRequestRecord:
    """One request to the result host, recorded on arrival. ``headers`` is a
    case-insensitive mapping of every request header, so ``"authorization" in headers``
    cannot miss a differently spelled one. ``status`` is ``None`` while the request is
    being handled and when the connection was dropped before any answer."""

    method: str
    path: str
    headers: Mapping[str, str]
    range: str | None
    status: int | None
    time: float


class CallbackAttempt(NamedTuple):
    """One delivery attempt: ``http_status`` is ``None`` when no answer came (refused,
    reset, timed out)."""

    task_id: str
    status: str
    http_status: int | None


@attrs.define
class Stats:
    """Counters and records, appended as things happen."""

    requests: list[RequestRecord] = attrs.Factory(list)
    creates: int = 0
    # Creates answered from the idempotency ledger with the original task.
    replays: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    result_requests: list[ResultRequestRecord] = attrs.Factory(list)
    callbacks_sent: list[CallbackAttempt] = attrs.Factory(list)

    @property
    def callbacks(self) -> int:
        """How many callback deliveries were attempted."""
        return len(self.callbacks_sent)

    def enter(self, record: RequestRecord) -> None:
        """An API request arrived and is being handled."""
        self.requests.append(record)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self, record: RequestRecord, status: int | None) -> None:
        """An API request was answered with ``status``, or dropped (``None``)."""
        record.status = status
        self.in_flight -= 1
