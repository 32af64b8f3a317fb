"""How long to wait before a retry, how many retries the client can afford, and the
client-wide pause a 429 imposes. Numbers and their sources live in ``_constants``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import anyio

from .._constants import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    NO_RETRY_REFUND,
    RETRY_AFTER_CAP_SECONDS,
    RETRY_BUDGET_CAPACITY,
    RETRY_COST,
    RETRY_COST_TIMEOUT,
)

__all__ = ["Pause", "RetryBudget", "backoff_delay", "retry_delay"]


def backoff_delay(
    attempt: int,
    *,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
    rng: Callable[[], float] = random.random,
) -> float:
    """Full jitter: uniform in ``[0, min(cap, base * 2**attempt))`` (AWS Architecture blog,
    "Exponential Backoff And Jitter"). ``attempt`` counts from 0 for the first retry."""
    return rng() * min(cap, base * 2.0 ** min(attempt, 32))


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """The server's ``Retry-After`` wins over backoff, capped so that a bad header cannot
    stall a run for hours (stripe-python caps at 60 s)."""
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP_SECONDS)
    return backoff_delay(attempt)


class RetryBudget:
    """A client-wide token bucket for retries (botocore's "standard" retry quota).

    A retry takes ``RETRY_COST`` tokens (``RETRY_COST_TIMEOUT`` after a timeout); a request
    that succeeds gives back what its retries took, or ``NO_RETRY_REFUND`` when it needed
    none. With the bucket empty, requests fail at once instead of retrying: an API in
    trouble sees fewer retries from us, not a storm.
    """

    __slots__ = ("_tokens", "capacity")

    def __init__(self, capacity: int = RETRY_BUDGET_CAPACITY) -> None:
        self.capacity = capacity
        self._tokens = capacity

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

    __slots__ = ("_clock", "_until")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0

    def pause_for(self, seconds: float) -> None:
        self._until = max(self._until, self._clock() + seconds)

    def remaining(self) -> float:
        return max(0.0, self._until - self._clock())

    async def wait(self) -> None:
        # A deadline, not an event: another 429 may push it later while we sleep.
        while (left := self.remaining()) > 0:  # noqa: ASYNC110
            await anyio.sleep(left)
