"""The values that cross the SDK's boundary: frozen, slotted attrs classes.

Models never parse JSON themselves; ``_wire/convert.py`` builds them from the wire.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any, TypeAlias

import attrs

from ._constants import TASK_ERROR_RETRYABLE
from ._redact import redact_optional_url, redact_url, redact_urls

__all__ = [
    "Balance",
    "BatchProgress",
    "Cost",
    "EditInput",
    "EditOutcome",
    "EditRequest",
    "MediaInfo",
    "PollPolicy",
    "StoredClip",
    "Task",
    "TaskError",
    "TaskStatus",
    "Usage",
]


class TaskStatus(str, enum.Enum):
    """A task's state. ``COMPLETED``, ``FAILED`` and ``CANCELLED`` are terminal."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


@attrs.frozen
class TaskError:
    """Why a task failed: the API's business ``code`` and its ``message``."""

    code: str
    message: str = ""

    @property
    def retryable(self) -> bool:
        """Whether the same input may succeed later (docs/api.md#task-error-codes)."""
        return TASK_ERROR_RETRYABLE.get(self.code, False)


@attrs.frozen
class Cost:
    """What a finished task cost, as the API reports it: ``credits`` and ``usd``."""

    credits: float | None = None
    usd: float | None = None


@attrs.frozen
class Usage:
    """Billing as the API reports it. ``credits_reserved`` is an estimate at creation;
    ``credits_used`` (and ``cost``) what a completed task was actually charged, where
    the answer gives it."""

    billing_rule: str | None = None
    credits_reserved: float | None = None
    user_group: str | None = None
    credits_used: float | None = None
    cost: Cost | None = None


@attrs.frozen
class Balance:
    """Credits left and spent (``GET /v1/credits``): the account's, and this API key's.

    ``key_unlimited`` says the key has no limit of its own (only the account's
    balance then bounds it); ``key_remaining_credits`` and ``key_used_credits`` are
    ``None`` where the answer does not give them. ``available`` is what can still be
    spent through this key: the smaller of the two balances.
    """

    remaining_credits: float
    used_credits: float | None = None
    key_remaining_credits: float | None = None
    key_used_credits: float | None = None
    key_unlimited: bool = False

    @property
    def available(self) -> float:
        if self.key_unlimited or self.key_remaining_credits is None:
            return self.remaining_credits
        return min(self.remaining_credits, self.key_remaining_credits)


@attrs.frozen
class Task:
    """One edit task as last read from the API.

    Every field but ``id`` and ``status`` is optional on the wire, so each has a default.
    ``results`` are signed links valid for 24 hours; their query strings are redacted in
    the ``repr``.
    """

    id: str
    status: TaskStatus
    progress: int = 0
    model: str | None = None
    created: datetime | None = None
    results: tuple[str, ...] = attrs.field(default=(), repr=redact_urls)
    error: TaskError | None = None
    estimated_time: float | None = None
    can_cancel: bool | None = None
    video_duration: float | None = None
    usage: Usage | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in _TERMINAL

    @property
    def result_url(self) -> str | None:
        """The first result link, or ``None`` until the task has completed."""
        return self.results[0] if self.results else None


def _path_text(value: str | PathLike[str]) -> str:
    """A local clip given as a ``Path`` is kept as its text (anything else as it is,
    for the input checks to refuse)."""
    return os.fspath(value) if isinstance(value, PathLike) else value


@attrs.frozen
class EditRequest:
    """One clip to edit: an mp4 URL of at most 10 s, or a local clip (a path, a
    ``Path``, a ``file://`` URL: uploaded to the client's storage, docs/storage.md),
    and the prompt describing the change."""

    video_url: str = attrs.field(repr=redact_url, converter=_path_text)
    prompt: str
    callback_url: str | None = attrs.field(default=None, repr=redact_optional_url)


@attrs.frozen
class StoredClip:
    """A local clip in the configured storage (``Client.upload``): ``url`` is a
    presigned GET URL (its query string, a credential, is redacted in ``repr``) valid
    until ``expires`` (aware UTC); the object is named by the file's ``sha256``;
    ``uploaded`` is false when the object was there already and nothing was sent."""

    url: str = attrs.field(repr=redact_url)
    sha256: str
    size: int
    uploaded: bool
    expires: datetime
    path: str


# What ``edit_many`` accepts as one input: an ``EditRequest``, a ``(video_url, prompt)``
# or ``(video_url, prompt, callback_url)`` tuple, or a mapping with those keys. Public,
# so that a list mixing the forms can be annotated (``list[omni_edit.EditInput]``).
# A local clip may be a ``Path`` (docs/storage.md).
EditInput: TypeAlias = (
    EditRequest
    | tuple[str | PathLike[str], str]
    | tuple[str | PathLike[str], str, str | None]
    | Mapping[str, Any]
)


@attrs.frozen
class BatchProgress:
    """A batch's counts so far: ``submitted`` tasks created by this run, ``running``
    edits open, ``done`` and ``failed`` outcomes, ``credits_reserved`` by this run;
    local clips ``uploading`` now and ``uploaded`` by this run (docs/storage.md)."""

    submitted: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    credits_reserved: float = 0.0
    uploading: int = 0
    uploaded: int = 0


@attrs.frozen
class PollPolicy:
    """How the shared scheduler spaces the polls of a task, in seconds.

    ``min_interval`` and ``max_interval`` bound every gap between two polls of one task;
    a task with no ``estimated_time`` (or 0) is first polled within ``min_interval``,
    then at doubling gaps until its progress gives a rate. ``jitter`` spreads polls (a
    fraction of the interval) so many tasks do not poll in lockstep.
    ``callback_interval`` is the slow safety-net gap for tasks that have a callback URL,
    whose completion normally arrives by callback. ``batch_window``: polls of several
    tasks that fall due within this long of each other are read in one batch request; no
    poll waits longer than this (nor than half ``min_interval``) for company.
    """

    min_interval: float = 1.0
    max_interval: float = 30.0
    jitter: float = 0.1
    callback_interval: float = 120.0
    batch_window: float = 0.3

    def __attrs_post_init__(self) -> None:
        if self.min_interval < 0 or self.max_interval < self.min_interval:
            raise ValueError("PollPolicy needs 0 <= min_interval <= max_interval")
        if not 0 <= self.jitter < 1:
            raise ValueError("PollPolicy.jitter must be in [0, 1)")
        if self.batch_window < 0:
            raise ValueError("PollPolicy.batch_window cannot be negative")


@attrs.frozen
class MediaInfo:
    """What a probe learned from a clip's MP4 header boxes."""

    duration: float
    width: int | None = None
    height: int | None = None
    has_audio: bool | None = None
    bytes_read: int = 0


@attrs.frozen
class BatchStatus:
    """A whole batch's progress in a shared (``postgresql://``) journal, from any host.

    ``total`` inputs loaded: ``completed``; ``failed`` for good; ``retryable`` failed
    this run but tried again when the batch is loaded again; ``uncertain`` (a create
    whose answer was lost: loading the batch again replays its key); ``in_progress``
    (claimed, submitted or waiting for a worker). ``queued`` inputs are still to be
    finished by the workers on it; ``workers`` are alive now.
    """

    total: int = 0
    completed: int = 0
    failed: int = 0
    retryable: int = 0
    uncertain: int = 0
    in_progress: int = 0
    queued: int = 0
    workers: int = 0

    @property
    def done(self) -> bool:
        """Nothing is left for the workers: every input has its outcome for this run."""
        return self.queued == 0


@attrs.frozen
class EditOutcome:
    """The end of one input of ``edit_many``: a completed task, or the error that ended it.

    ``index`` is the input's place in this run's stream; ``occurrence`` which take it is
    among identical inputs (0 for the first). ``resumed`` is true when nothing was done
    for it in this run: the journal already held its outcome, from an earlier run or
    another worker sharing the journal.

    A clip over 10 s is edited in segments (docs/media.md#long-clips): ``path`` is
    the stitched file, ``segments`` the segments' tasks in order (one done by an earlier
    run: its task as the journal recorded it; none when the whole clip is ``resumed``),
    and ``task`` the last segment's.
    """

    index: int
    request: EditRequest | None
    task: Task | None = None
    error: BaseException | None = None
    path: Path | None = None
    occurrence: int = 0
    resumed: bool = False
    segments: tuple[Task, ...] = ()

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.task is not None
            and self.task.status is TaskStatus.COMPLETED
        )
