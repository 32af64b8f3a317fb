"""Reading tasks for the scheduler: the reads asked for together go out as batch reads.

Every read asked for in the same turn of the event loop is gathered; at the end of the
turn they go out as ``POST /v1/tasks/batch`` requests of at most ``TASKS_BATCH_MAX_IDS``
ids (docs/api.md#batch-reads), or as a plain read when there is only one. The scheduler
decides which polls fall due together (docs/architecture.md#batch-reads); this module
only sends them.

- An id absent from a batch answer is read singly: the single read says what became of
  it (a 404 there is that task's ``NotFoundError``, and nobody else's).
- A deployment that answers the batch endpoint 404 or 405 has none: the reader switches
  to single reads for good, logs it once, and reads that batch's ids singly.
- Any other failure of a batch request (after the transport's retries) is the failure of
  every read in it, as it would have been for each single read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from .._constants import TASKS_BATCH_MAX_IDS
from .._exceptions import APIError
from .._models import Task
from .._wire.batch_read import BatchAnswer

__all__ = ["BatchRead", "TaskReader"]

logger = logging.getLogger("omni_edit")

BatchRead = Callable[[Sequence[str]], Awaitable[BatchAnswer]]
"""Reads distinct, valid ids (2 to ``TASKS_BATCH_MAX_IDS``) in one batch request."""

# The answers of a deployment without the batch endpoint: no such route, or not for POST.
_NO_BATCH_ENDPOINT = frozenset({404, 405})


class _Read:
    """One id's read: the askers it has left, and the request that serves it (``job``,
    shared with the other reads of its ``group``) once sent."""

    __slots__ = ("askers", "future", "group", "job")

    def __init__(self, future: asyncio.Future[Task]) -> None:
        self.future = future
        self.askers = 0
        self.group: dict[str, _Read] = {}
        self.job: asyncio.Task[None] | None = None


class TaskReader:
    """Reads tasks through ``read_one`` (one request per id) or, gathered, through
    ``read_batch`` (``None``: single reads only)."""

    def __init__(self, read_one: Callable[[str], Awaitable[Task]], read_batch: BatchRead | None):
        self._read_one = read_one
        self._read_batch = read_batch
        # The reads asked for in this turn of the loop, by id: askers of one id share one.
        self._pending: dict[str, _Read] = {}
        self._flush: asyncio.Handle | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def batching(self) -> bool:
        """Whether reads asked for together go out as batch reads."""
        return self._read_batch is not None

    async def read(self, task_id: str) -> Task:
        """The task, read by a request that starts at the end of this turn of the loop.

        Raises what a single read raises, and ``RuntimeError`` once closed. A request
        whose askers have all left is cancelled (never one that others still wait for).
        """
        if self._closed:
            raise RuntimeError("this omni_edit client is closed")
        if self._read_batch is None:
            return await self._read_one(task_id)
        read = self._pending.get(task_id)
        if read is None:
            loop = asyncio.get_running_loop()
            read = self._pending[task_id] = _Read(loop.create_future())
            read.future.add_done_callback(_consume)
            if self._flush is None:
                self._flush = loop.call_soon(self._send)
        read.askers += 1
        try:
            return await asyncio.shield(read.future)
        finally:
            read.askers -= 1
            if not read.askers and not read.future.done():
                job = self._drop(task_id, read)
                if job is not None:
                    # Gone when the asker is: no connection or task outlives the wait.
                    await asyncio.wait([job])

    def _drop(self, task_id: str, read: _Read) -> asyncio.Task[None] | None:
        """Nobody waits for ``read`` any more: unsend it, or cancel its request (and
        return it) once nobody waits for any read it serves."""
        if read.job is None:
            if self._pending.get(task_id) is read:
                del self._pending[task_id]
            _settle(read.future, RuntimeError("the read was abandoned"))
        elif not any(other.askers for other in read.group.values()):
            read.job.cancel()
            return read.job
        return None

    def _send(self) -> None:
        self._flush = None
        pending, self._pending = self._pending, {}
        ids = list(pending)
        if len(ids) == 1 or self._read_batch is None:
            groups = [{task_id: pending[task_id]} for task_id in ids]
        else:
            groups = [
                {task_id: pending[task_id] for task_id in ids[i : i + TASKS_BATCH_MAX_IDS]}
                for i in range(0, len(ids), TASKS_BATCH_MAX_IDS)
            ]
        loop = asyncio.get_running_loop()
        for group in groups:
            futures = {task_id: read.future for task_id, read in group.items()}
            work = self._batch(futures) if len(group) > 1 else self._singly(futures)
            job = loop.create_task(work, name="omni_edit read")
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)
            for read in group.values():
                read.group, read.job = group, job

    async def _batch(self, group: dict[str, asyncio.Future[Task]]) -> None:
        try:
            read_batch = self._read_batch
            if read_batch is None:  # switched off since this group was formed
                await self._singly(group)
                return
            try:
                answer = await read_batch(list(group))
            except APIError as exc:
                if exc.status not in _NO_BATCH_ENDPOINT:
                    raise
                if self._read_batch is not None:
                    self._read_batch = None
                    logger.warning(
                        "the API answered the batch read with HTTP %s: this deployment has"
                        " no batch endpoint, so this client reads tasks one by one from now on",
                        exc.status,
                    )
                await self._singly(group)
                return
            absent: dict[str, asyncio.Future[Task]] = {}
            for task_id, future in group.items():
                if (task := answer.tasks.get(task_id)) is not None:
                    _settle(future, task)
                elif (error := answer.errors.get(task_id)) is not None:
                    _settle(future, error)
                else:
                    absent[task_id] = future
            if answer.ignored:
                logger.debug(
                    "batch read: ignored %d entries about no task asked for", answer.ignored
                )
            if absent:
                await self._singly(absent)
        except Exception as exc:
            for future in group.values():
                _settle(future, exc)
        finally:
            _abandon(group)

    async def _singly(self, group: dict[str, asyncio.Future[Task]]) -> None:
        async def one(task_id: str, future: asyncio.Future[Task]) -> None:
            try:
                _settle(future, await self._read_one(task_id))
            except Exception as exc:
                _settle(future, exc)

        try:
            await asyncio.gather(*(one(i, f) for i, f in group.items()))
        finally:
            _abandon(group)

    async def aclose(self) -> None:
        """Cancel every read; callers still waiting get ``RuntimeError``."""
        self._closed = True
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        _abandon({task_id: read.future for task_id, read in self._pending.items()})
        self._pending = {}
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)


def _settle(future: asyncio.Future[Task], outcome: Task | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _abandon(group: dict[str, asyncio.Future[Task]]) -> None:
    """Fail the reads left unanswered (the work was cancelled: the client is closing)."""
    for future in group.values():
        _settle(future, RuntimeError("this omni_edit client is closed"))


def _consume(future: asyncio.Future[Task]) -> None:
    # Every asker may have left by the time the read fails: mark the error as seen.
    if not future.cancelled():
        future.exception()
