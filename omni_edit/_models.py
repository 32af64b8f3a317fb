"""The values that cross the SDK's boundary: frozen, slotted attrs classes.

Models never parse JSON themselves; ``_wire/convert.py`` builds them from the wire.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

import attrs

from ._constants import TASK_ERROR_RETRYABLE
from ._redact import redact_optional_url, redact_url, redact_urls

__all__ = [
    "BatchProgress",
    "EditInput",
    "EditOutcome",
    "EditRequest",
    "MediaInfo",
    "PollPolicy",
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
class Usage:
    """Billing as the API reports it; ``credits_reserved`` is an estimate at creation."""

    billing_rule: str | None = None
    credits_reserved: float | None = None
    user_group: str | None = None


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


@attrs.frozen
class EditRequest:
    """One clip to edit: an mp4 URL of at most 10 s and the prompt describing the change."""

    video_url: str = attrs.field(repr=redact_url)
    prompt: str
    callback_url: str | None = attrs.field(default=None, repr=redact_optional_url)


# What ``edit_many`` accepts as one input: an ``EditRequest``, a ``(video_url, prompt)``
# or ``(video_url, prompt, callback_url)`` tuple, or a mapping with those keys. Public,
# so that a list mixing the forms can be annotated (``list[omni_edit.EditInput]``).
EditInput: TypeAlias = (
    EditRequest | tuple[str, str] | tuple[str, str, str | None] | Mapping[str, Any]
)


@attrs.frozen
class BatchProgress:
    """A batch's counts so far: ``submitted`` tasks created by this run, ``running``
    edits open, ``done`` and ``failed`` outcomes, ``credits_reserved`` by this run."""

    submitted: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    credits_reserved: float = 0.0


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
class EditOutcome:
    """The end of one input of ``edit_many``: a completed task, or the error that ended it.

    ``index`` is the input's place in this run's stream; ``occurrence`` which take it is
    among identical inputs (0 for the first). ``resumed`` is true when nothing was done
    for it in this run: the journal already held its outcome, from an earlier run or
    another worker sharing the journal.
    """

    index: int
    request: EditRequest | None
    task: Task | None = None
    error: BaseException | None = None
    path: Path | None = None
    occurrence: int = 0
    resumed: bool = False

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.task is not None
            and self.task.status is TaskStatus.COMPLETED
        )
