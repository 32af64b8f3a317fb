"""Emulated tasks and their lifecycle.

A task's state is a function of its timestamps and of the moment it is looked at:
nothing ticks, so a hundred thousand tasks cost only their records. The first tenth of
its processing time a task is ``pending``, then ``processing`` with a progress rising
linearly, then its outcome, drawn at creation (or forced later), takes effect.
"""

from __future__ import annotations

import math
import random
import string
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import attrs

from .._constants import (
    INPUT_TOKENS_PER_SECOND,
    MODEL,
    OUTPUT_TOKENS_PER_SECOND,
    TASK_ID_PREFIX,
)

__all__ = ["ASSUMED_CLIP_SECONDS", "EmulatedTask", "EstimateMode", "Outcome", "TaskStore", "clock"]

Outcome = Literal["completed", "failed", "cancelled"]
# What ``task_info.estimated_time`` holds: the estimate, 0, or no such field at all.
EstimateMode = Literal["given", "zero", "absent"]

# The emulator never downloads the input clip; it assumes one of this length for the
# billing estimate, task_info.video_duration and the result file's header.
ASSUMED_CLIP_SECONDS = 5
_PENDING_SHARE = 0.1
# docs/api.md#billing gives tokens per second but no price per token; this rate puts a
# 5 s clip with a short prompt near the documented example (credits_reserved 102.34).
_CREDITS_PER_1K_TOKENS = 1.765
# What a completed task is charged, as a share of its reservation: the gateway settles
# from actual usage, which the emulator puts a little under the estimate.
_SETTLED_SHARE = 0.96
# The display rate of EvoLink's clients (docs/api.md#gateway-extras), for ``usage.cost``.
_CREDITS_PER_USD = 68
_ID_ALPHABET = string.ascii_lowercase + string.digits
# Wording for the error codes of docs/api.md#task-error-codes, as a task's error.message.
_ERROR_MESSAGES = {
    "content_policy_violation": "The content was blocked by safety filters.",
    "invalid_parameters": "The request parameters are invalid.",
    "image_processing_error": "The input media could not be processed.",
    "image_dimension_mismatch": "The media dimensions do not match.",
    "request_cancelled": "The task was cancelled.",
    "generation_failed_no_content": "The model produced no content.",
    "service_error": "Internal service error.",
    "generation_timeout": "Processing timed out.",
    "resource_exhausted": "Upstream capacity is exhausted.",
    "quota_exceeded": "Rate or quota limit exceeded.",
    "service_unavailable": "The service is temporarily unavailable.",
    "resource_not_found": "The task id is invalid or expired.",
}


def clock() -> float:
    """The emulator's time base for lifecycles: monotonic seconds."""
    return time.monotonic()


def estimate_credits(prompt: str) -> float:
    """A deterministic ``credits_reserved``: a 5 s clip in and out plus the prompt, at
    roughly four bytes per token."""
    prompt_tokens = math.ceil(len(prompt.encode()) / 4)
    tokens = ASSUMED_CLIP_SECONDS * (INPUT_TOKENS_PER_SECOND + OUTPUT_TOKENS_PER_SECOND)
    return round((tokens + prompt_tokens) * _CREDITS_PER_1K_TOKENS / 1000, 2)


@attrs.define(eq=False)
class EmulatedTask:
    """The emulator's record of one task.

    ``owner`` is a fingerprint of the API key that created it (never the key).
    ``started`` and ``ends`` are ``clock()`` times: the outcome (``completed``,
    ``failed`` or ``cancelled``, with ``error_code``) takes effect at ``ends``.
    ``status``, ``progress``, ``results`` and ``finished_at`` are read at the moment you
    ask.
    """

    id: str
    owner: str
    video_url: str
    prompt: str
    callback_url: str | None
    created: int
    created_wall: float
    credits_reserved: float
    estimated_time: int | float
    processing_time: float
    outcome: Outcome
    error_code: str | None
    started: float
    ends: float
    result_name: str
    result_url: str | None = None
    results_revoked: bool = False
    estimate_mode: EstimateMode = "given"
    # Reads of this task by its owner (single and batch) and the ``clock()`` time of
    # the first: what polling costs and how soon it starts, for tests and benchmarks.
    reads: int = 0
    first_read: float | None = None

    def read_at(self, now: float) -> dict[str, Any]:
        """``to_json`` for a read by the task's owner, counted."""
        self.reads += 1
        if self.first_read is None:
            self.first_read = now
        return self.to_json(now)

    def status_at(self, now: float) -> str:
        """``pending``, ``processing`` or the outcome, at ``clock()`` time ``now``."""
        if now >= self.ends:
            return self.outcome
        if now - self.started < self.processing_time * _PENDING_SHARE:
            return "pending"
        return "processing"

    def progress_at(self, now: float) -> int:
        """0 while pending, rising with elapsed time, 100 once completed; a failed or
        cancelled task keeps the progress it had when it ended."""
        status = self.status_at(now)
        if status == "completed":
            return 100
        if status == "pending" or self.processing_time <= 0:
            return 0
        elapsed = min(now, self.ends) - self.started
        return min(99, int(100 * elapsed / self.processing_time))

    @property
    def credits_used(self) -> float:
        """What the task is charged if it completes."""
        return round(self.credits_reserved * _SETTLED_SHARE, 2)

    @property
    def status(self) -> str:
        """The status now."""
        return self.status_at(clock())

    @property
    def progress(self) -> int:
        """The progress now."""
        return self.progress_at(clock())

    @property
    def finished(self) -> bool:
        """Whether the outcome has taken effect."""
        return clock() >= self.ends

    @property
    def ends_wall(self) -> float:
        """Unix time at which the outcome takes (or took) effect."""
        return self.created_wall + (self.ends - self.started)

    @property
    def finished_at(self) -> float | None:
        """Unix time the task ended, or ``None`` while it runs."""
        return self.ends_wall if self.finished else None

    @property
    def results(self) -> list[str]:
        """The result URLs the API reports now: one once completed, else none."""
        if self.status == "completed" and self.result_url is not None:
            return [self.result_url]
        return []

    def to_json(self, now: float) -> dict[str, Any]:
        """The task object as ``GET /v1/tasks/{id}`` and callbacks send it at ``now``."""
        return self._json(self.status_at(now), self.progress_at(now), now)

    def creation_json(self) -> dict[str, Any]:
        """The create answer: pending with progress 0 as in docs/api.md#create-a-task, even for a
        task with no processing time at all."""
        return self._json("pending", 0, self.started)

    def _json(self, status: str, progress: int, now: float) -> dict[str, Any]:
        body: dict[str, Any] = {
            "created": self.created,
            "id": self.id,
            "model": MODEL,
            "object": "video.generation.task",
            "progress": progress,
            "status": status,
            "task_info": self._task_info(status, now),
            "type": "video",
            "usage": {
                "billing_rule": "per_token",
                "credits_reserved": self.credits_reserved,
                "user_group": "default",
            },
        }
        if status == "completed":
            body["results"] = [self.result_url]
            used = self.credits_used
            body["usage"]["credits_used"] = used
            body["usage"]["cost"] = {"credits": used, "usd": round(used / _CREDITS_PER_USD, 4)}
        elif status in ("failed", "cancelled"):
            code = self.error_code or "unknown_error"
            message = _ERROR_MESSAGES.get(code, "The task failed for an unclassified reason.")
            body["error"] = {"code": code, "message": message}
        return body

    def _estimate_left(self, status: str, now: float) -> int | float:
        """The estimate reported: the whole one while pending, what is left of it while
        processing; 0 when the estimate mode says so."""
        if self.estimate_mode == "zero":
            return 0
        if status == "pending":
            return self.estimated_time
        left = self.estimated_time * (1 - (now - self.started) / self.processing_time)
        return max(1, math.ceil(left)) if isinstance(self.estimated_time, int) else round(left, 3)

    def _task_info(self, status: str, now: float) -> dict[str, Any]:
        # The documented fields come and go: an estimate only while the task runs, the
        # clip's duration once processing has looked at it.
        info: dict[str, Any] = {"can_cancel": False}
        if status in ("pending", "processing") and self.estimate_mode != "absent":
            info["estimated_time"] = self._estimate_left(status, now)
        if status in ("processing", "completed"):
            info["video_duration"] = ASSUMED_CLIP_SECONDS
        return info


class TaskStore:
    """Every task the emulator created, with the draws that decide their fates.

    ``result_url`` builds a task's presigned result link; the result host supplies it.
    """

    def __init__(
        self,
        *,
        rng: random.Random,
        processing_time: tuple[float, float],
        estimated_time: float | None,
        estimate_mode: EstimateMode = "given",
        failure_rate: float,
        failure_codes: Sequence[str],
        cancel_rate: float,
        concurrency_limit: int | None,
        result_url: Callable[[EmulatedTask], str],
    ) -> None:
        self.tasks: dict[str, EmulatedTask] = {}
        self._by_result: dict[str, EmulatedTask] = {}
        self._rng = rng
        self._processing_time = processing_time
        self._estimated: int | float = (
            max(1, math.ceil(sum(processing_time) / 2))
            if estimated_time is None
            else estimated_time
        )
        self._estimate_mode: EstimateMode = estimate_mode
        self._failure_rate = failure_rate
        self._failure_codes = tuple(failure_codes)
        self._cancel_rate = cancel_rate
        self._limit = concurrency_limit
        # Per owner, the tasks that may still be running; kept only under a limit, and
        # pruned when asked, so it stays at most the limit's size.
        self._open: dict[str, set[EmulatedTask]] = {}
        self._result_url = result_url

    def create(
        self, *, owner: str, video_url: str, prompt: str, callback_url: str | None
    ) -> EmulatedTask:
        """A new task, its fate drawn now from the seeded generator."""
        rng = self._rng
        processing = rng.uniform(*self._processing_time)
        draw = rng.random()
        outcome: Outcome = "completed"
        error_code: str | None = None
        end_share = 1.0
        if draw < self._failure_rate + self._cancel_rate:
            if draw < self._failure_rate:
                outcome, error_code = "failed", rng.choice(self._failure_codes)
            else:
                outcome, error_code = "cancelled", "request_cancelled"
            # Tasks that go wrong usually do so before the end of their run.
            end_share = rng.uniform(0.2, 1.0)
        wall, started = time.time(), clock()
        task = EmulatedTask(
            id=self._new_id(int(wall)),
            owner=owner,
            video_url=video_url,
            prompt=prompt,
            callback_url=callback_url,
            created=int(wall),
            created_wall=wall,
            credits_reserved=estimate_credits(prompt),
            estimated_time=self._estimated,
            processing_time=processing,
            outcome=outcome,
            error_code=error_code,
            started=started,
            ends=started + processing * end_share,
            result_name=f"{rng.getrandbits(128):032x}",
            estimate_mode=self._estimate_mode,
        )
        if outcome == "completed":
            task.result_url = self._result_url(task)
        self.tasks[task.id] = task
        self._by_result[task.result_name] = task
        if self._limit is not None:
            self._open.setdefault(owner, set()).add(task)
        return task

    def _new_id(self, created: int) -> str:
        while True:
            suffix = "".join(self._rng.choices(_ID_ALPHABET, k=8))
            task_id = f"{TASK_ID_PREFIX}{created}-{suffix}"
            if task_id not in self.tasks:
                return task_id

    def seconds_until_slot(self, owner: str, now: float) -> float | None:
        """``None`` if ``owner`` may start another task under the concurrency limit, else
        the seconds until its earliest unfinished task ends."""
        if self._limit is None:
            return None
        running = self._open.setdefault(owner, set())
        for task in [t for t in running if t.ends <= now]:
            running.discard(task)
        if len(running) < self._limit:
            return None
        return min(t.ends for t in running) - now

    def by_result_name(self, name: str) -> EmulatedTask | None:
        """The task whose result file is called ``name``."""
        return self._by_result.get(name)

    def force(self, task_id: str, outcome: Outcome, error_code: str | None) -> EmulatedTask:
        """End a running task now with ``outcome``.

        Raises ``KeyError`` for an unknown id and ``ValueError`` for a task that has
        already ended (a terminal state is final, as on the API).
        """
        task = self.tasks[task_id]
        now = clock()
        if task.ends <= now:
            raise ValueError(f"task {task_id} already ended {task.outcome}")
        task.outcome, task.error_code, task.ends = outcome, error_code, now
        task.result_url = self._result_url(task) if outcome == "completed" else None
        return task
