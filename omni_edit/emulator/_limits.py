"""Request-rate limiting per API key: one token bucket each."""

from __future__ import annotations

__all__ = ["RateLimiter"]


class RateLimiter:
    """``rate`` requests per second per key, with bursts of up to ``rate`` (at least 1).

    A refused request takes no token, so a client that waits as told gets through.
    """

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, owner: str, now: float) -> float | None:
        """Take a token for ``owner``: ``None`` if there was one, else the seconds until
        there will be."""
        tokens, last = self._buckets.get(owner, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._rate)
        if tokens >= 1:
            self._buckets[owner] = (tokens - 1, now)
            return None
        self._buckets[owner] = (tokens, now)
        return (1 - tokens) / self._rate
