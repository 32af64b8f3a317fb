"""The batch journal's interface: what an input is, what was done for it, who works it.

An input is known by its ``Identity``: a digest of what it asks for (clip, prompt,
callback URL; a local clip by its content's SHA-256, never its path or the URL it was
uploaded to, docs/storage.md#in-a-batch-and-its-journal) and its occurrence among
identical inputs in the stream, so the 2nd of three identical rows is the 2nd take
whatever its row number. Inserting, deleting, reordering or fixing rows leaves every
other input's identity, and what the journal holds for it, unchanged (docs/reliability.md#journal).

Each input moves ``pending`` (claimed, nothing sent) -> ``submitting`` (its create about
to be sent, with its Idempotency-Key) -> ``submitted`` (task id) -> ``completed`` or
``failed``. An input is worked by one worker at a time: a ``claim`` takes it with a lease
that the worker renews while it lives; another worker finds it ``BUSY`` until the lease
ends, then takes it over from what the journal holds (the task id to wait on, or the key
to replay).

The create request's key derives from the identity, the attempt number and a random
salt kept in the journal: every worker, and every rerun, sends the same key for the same
paid intent, so the gateway answers a second send with the first task (docs/api.md#
idempotency-keys), even if two workers ever raced for one input.

SQLite is the embedded implementation (``sqlite_journal``); a journal for many hosts
implements the same calls.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs

from .._exceptions import JournalError

__all__ = [
    "Claim",
    "ClaimKind",
    "Identity",
    "JournalEntry",
    "JournalState",
    "JournalStore",
    "derive_key",
    "fingerprint",
]


class JournalState(str, enum.Enum):
    PENDING = "pending"  # claimed; no create request sent yet
    SUBMITTING = "submitting"  # about to POST, or the POST's answer was never recorded
    UNCERTAIN = "uncertain"  # the POST was sent and its answer lost
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    FAILED = "failed"


@attrs.frozen
class Identity:
    """What an input is: the digest of its request and which take of it (0-based)."""

    digest: str
    occurrence: int


@attrs.frozen
class JournalEntry:
    identity: Identity
    state: JournalState
    task_id: str | None = None
    attempts: int = 0
    result_url: str | None = None
    path: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False
    credits: float | None = None
    idempotency_key: str | None = None
    # The clip URL the latest create carried, when it differs from the input's own (a
    # local clip's presigned URL): a replay of ``idempotency_key`` sends it again.
    video_url: str | None = None

    @property
    def finished(self) -> bool:
        """Nothing more will happen to it: completed, or failed for good."""
        return self.state is JournalState.COMPLETED or (
            self.state is JournalState.FAILED and not self.retryable
        )


class ClaimKind(enum.Enum):
    CLAIMED = "claimed"  # this worker holds the input now
    FINISHED = "finished"  # done already (by an earlier run or another worker)
    BUSY = "busy"  # another live worker holds it


@attrs.frozen
class Claim:
    kind: ClaimKind
    entry: JournalEntry
    # The entry was made by this claim: nothing was ever sent for it.
    fresh: bool = False
    # Seconds until a BUSY input's lease ends, if its holder stops renewing it.
    lease_left: float = 0.0


def fingerprint(video_url: str, prompt: str, callback_url: str | None) -> str:
    """A stable digest of what an input asks for. ``UnicodeEncodeError`` for text that
    is not UTF-8 (a lone surrogate): the caller refuses such an input."""
    text = "\0".join((video_url, prompt, callback_url or ""))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def derive_key(salt: bytes, identity: Identity, attempt: int) -> str:
    """The Idempotency-Key of an input's ``attempt``-th create (1-based): 43 characters
    of ``[A-Za-z0-9_-]``, within the gateway's 16-96 (docs/api.md#idempotency-keys)."""
    message = f"{identity.digest}:{identity.occurrence}:{attempt}".encode()
    digest = hmac.new(salt, message, hashlib.sha256).hexdigest()
    return "oe-" + digest[:40]


class JournalStore(Protocol):
    """What ``edit_many`` asks of a journal. Every call raises ``JournalError`` when the
    journal cannot be read or written; ``close`` never raises."""

    location: str
    lease_seconds: float

    def claim(
        self,
        identity: Identity,
        request: tuple[str, str, str | None],
        *,
        submit: bool,
    ) -> Awaitable[Claim]:
        """Claim the input. A new one is recorded with ``request`` (clip, prompt,
        callback URL): ``submitting`` with its first key when ``submit`` (the caller
        sends at once), else ``pending``. Queued when called, not at the first await."""
        ...

    async def reclaim(self, identity: Identity) -> Claim:
        """Try again for an input that was ``BUSY``."""
        ...

    def key_for(self, identity: Identity, attempt: int) -> str:
        """The Idempotency-Key of the input's ``attempt``-th create."""
        ...

    # The records below are queued when called, in call order, and written (group
    # committed) in that order; the awaitable says when the write is done.

    def submitting(
        self, identity: Identity, attempts: int, key: str, *, video_url: str | None = None
    ) -> Awaitable[None]:
        """Durable before the create request is sent. ``video_url``: the clip URL it
        carries, when not the input's own (a local clip's presigned URL)."""
        ...

    def submitted(
        self,
        identity: Identity,
        task_id: str,
        credits: float | None,
        *,
        on_error: Callable[[JournalError], None] | None = None,
    ) -> Awaitable[None]:
        """Durable as soon as the create's answer is in. With ``on_error``, a write
        nobody waits on: its failure is told to ``on_error`` (the same for
        ``completed``)."""
        ...

    def uncertain(self, identity: Identity, message: str) -> Awaitable[None]: ...

    def completed(
        self,
        identity: Identity,
        task_id: str,
        result_url: str | None,
        path: str | None,
        *,
        on_error: Callable[[JournalError], None] | None = None,
    ) -> Awaitable[None]: ...

    def failed(
        self,
        identity: Identity,
        *,
        code: str | None,
        message: str,
        retryable: bool,
        task_id: str | None = None,
        release: bool = True,
    ) -> Awaitable[None]:
        """``release=False`` while the worker goes on trying the input itself."""
        ...

    async def renew(self) -> None:
        """Extend the leases of every input this worker holds."""
        ...

    async def close(self) -> None:
        """Write what is pending, give up this worker's leases, close."""
        ...
