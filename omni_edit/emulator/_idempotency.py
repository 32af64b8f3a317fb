"""The gateway's idempotency ledger (docs/api.md#idempotency-keys).

A create that carries an ``Idempotency-Key`` is entered here, per API key, with a digest
of its body. A repeat with the same key and body gets the original task back (marked
``idempotency-replayed: true``) instead of creating and billing another; the same key
with another body is a 409 ``idempotency_conflict``; a repeat that arrives while the
first is still being handled is a 409 ``paid_outcome_unknown`` (wait, then replay).
Entries are kept for ``retention`` seconds. A create refused before it created anything
leaves no entry, so its key may be used again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import attrs

__all__ = ["Conflict", "IdempotencyLedger", "InProgress", "Replay"]


@attrs.frozen
class Replay:
    """The key was seen with this body: answer with the original task."""

    task_id: str


@attrs.frozen
class Conflict:
    """The key was seen with another body."""


@attrs.frozen
class InProgress:
    """The first request with this key is still being handled."""


@attrs.define
class _Entry:
    digest: str
    at: float
    task_id: str | None = None  # None while the first request is being handled


class IdempotencyLedger:
    """Keys seen per API key, oldest first, forgotten after ``retention`` seconds."""

    def __init__(self, retention: float) -> None:
        self._retention = retention
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def begin(
        self, owner: str, key: str, body: bytes, now: float
    ) -> Replay | Conflict | InProgress | None:
        """What a create with ``key`` should get; ``None``: go on and create, then call
        ``created`` (or ``abandon`` if nothing was created)."""
        self._forget_before(now - self._retention)
        digest = hashlib.sha256(body).hexdigest()
        entry = self._entries.get((owner, key))
        if entry is None:
            self._entries[(owner, key)] = _Entry(digest, now)
            return None
        if entry.digest != digest:
            return Conflict()
        if entry.task_id is None:
            return InProgress()
        return Replay(entry.task_id)

    def created(self, owner: str, key: str, task_id: str) -> None:
        entry = self._entries.get((owner, key))
        if entry is not None:
            entry.task_id = task_id

    def abandon(self, owner: str, key: str) -> None:
        """The create was refused and created nothing: the key is free again."""
        entry = self._entries.get((owner, key))
        if entry is not None and entry.task_id is None:
            del self._entries[(owner, key)]

    def _forget_before(self, cutoff: float) -> None:
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.at >= cutoff:
                return
            self._entries.popitem(last=False)
