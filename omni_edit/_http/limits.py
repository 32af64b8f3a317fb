"""The limits a client keeps for everything it sends, whoever sends it.

One ``ClientLimits`` is made per client and handed to every part that sends requests:
the transport (API calls), the result fetcher (downloads), ``probe`` (media hosts) and
the poll scheduler (which waits out a 429 pause before it polls). Owning them in one
object, rather than in the transport, is what makes them client-wide by construction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import anyio

from .._constants import (
    NO_RETRY_REFUND,
    RETRY_BUDGET_CAPACITY,
    RETRY_COST,
    RETRY_COST_TIMEOUT,
)

__all__ = ["ClientLimits", "Pause", "RetryBudget"]


class ClientLimits:
    """The in-flight cap (``slots``), the 429 ``pause`` and the retry ``budget`` of one
    client.

    ``slots`` is an asyncio semaphore rather than anyio's ``CapacityLimiter``: it is on
    every request's path and costs a fraction (no checkpoint when uncontended).
    """

    __slots__ = ("budget", "max_concurrency", "pause", "slots")

    def __init__(self, max_concurrency: int) -> None:
        self.max_concurrency = max_concurrency
        self.slots = asyncio.Semaphore(max_concurrency)
        self.pause = Pause()
        self.budget = RetryBudget()


class RetryBudget:
    """A client-wide token bucket for retries (botocore's "standard" retry quota).

    A retry takes ``RETRY_COST`` tokens (``RETRY_COST_TIMEOUT`` after a timeout); a request
    that succeeds gives back what its retries took, or ``NO_RETRY_REFUND`` when it needed
    none. With the bucket empty, requests fail at once instead of retrying: an API in
    trouble sees fewer retries from us, not a storm.
    """

    __slots__ = ("_tokens", "capacity")

    def __init__(self, capacity: int | None = None) -> None:
        # Read at construction, not at import: a test may lower the module's figure.
        self.capacity = RETRY_BUDGET_CAPACITY if capacity is None else capacity
        self._tokens = self.capacity

    @property
    def tokens(self) -> int:
        return self._tokens

    def acquire(self, *, after_timeout: bool = False) -> int:
        """Take a retry's cost; return it, or 0 when the bucket cannot pay (no retry)."""
        cost = RETRY_COST_TIMEOUT if after_timeout else RETRY_COST
        if self._tokens < cost:
            return 0
        self._tokens -= cost
        return cost

    def release(self, spent: int) -> None:
        """A request succeeded after spending ``spent`` tokens on retries."""
        self._tokens = min(self.capacity, self._tokens + (spent or NO_RETRY_REFUND))


class Pause:
    """A gate every request passes before it is sent; a 429 closes it for everyone.

    Throttling is about the client, not the request: one request's 429 means the others
    would get one too, so all of them wait out the server's ``Retry-After``.
    """

    __slots__ = ("_clock", "_until", "observer")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0
        # Told of every pause a 429 here starts: a batch sharing the account's budget
        # passes it on to its other workers (docs/architecture.md#journals).
        self.observer: Callable[[float], None] | None = None

    def pause_for(self, seconds: float) -> None:
        self.hold(seconds)
        if self.observer is not None:
            self.observer(seconds)

    def hold(self, seconds: float) -> None:
        """Pause for ``seconds`` without telling the observer (a pause heard from
        another worker)."""
        self._until = max(self._until, self._clock() + seconds)

    def remaining(self) -> float:
        return max(0.0, self._until - self._clock())

    async def wait(self) -> None:
        # A deadline, not an event: another 429 may push it later while we sleep.
        while (left := self.remaining()) > 0:  # noqa: ASYNC110
            await anyio.sleep(left)
