"""How long to wait before a retry: full-jitter backoff, or the server's ``Retry-After``.
Numbers and their sources live in ``_constants``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .._constants import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    RETRY_AFTER_CAP_SECONDS,
)

__all__ = ["backoff_delay", "retry_delay"]


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
    # The module's figure read at each call, not frozen at import: a test may lower it.
    return backoff_delay(attempt, base=BACKOFF_BASE_SECONDS)
