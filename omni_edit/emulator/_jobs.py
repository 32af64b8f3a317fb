"""Background jobs with one owner: an anyio task group that lives in one host task.

The group is hosted by its own task so that ``Emulator.start`` and ``Emulator.close``
may run in different tasks (a fixture's setup and teardown, say); jobs can be started
from any task of the loop, including the synchronous ``Emulator.complete``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

__all__ = ["JobGroup"]

logger = logging.getLogger("omni_edit.emulator")


class JobGroup:
    """Runs jobs until ``close`` cancels them all and waits for them to end."""

    def __init__(self) -> None:
        self._group: TaskGroup | None = None
        self._host: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self) -> None:
        """Start the host task and its task group."""
        self._closed = False
        ready = asyncio.Event()
        self._host = asyncio.create_task(self._run(ready), name="omni_edit.emulator jobs")
        await ready.wait()

    async def _run(self, ready: asyncio.Event) -> None:
        async with anyio.create_task_group() as group:
            self._group = group
            ready.set()
            await anyio.sleep_forever()

    def spawn(self, job: Callable[[], Awaitable[None]], name: str) -> None:
        """Run ``job`` in the group; after ``close`` it is not started at all."""
        if self._group is None or self._closed:
            logger.debug("job %s not started: the emulator is closed", name)
            return
        self._group.start_soon(self._guarded, job, name, name=name)

    @staticmethod
    async def _guarded(job: Callable[[], Awaitable[None]], name: str) -> None:
        # One broken job must not cancel its siblings through the group.
        try:
            await job()
        except Exception:
            logger.exception("emulator job %s failed", name)

    async def close(self) -> None:
        """Cancel every job and wait until all have ended. Safe to call twice."""
        self._closed = True
        if self._group is not None:
            self._group.cancel_scope.cancel()
        if self._host is not None:
            await self._host
            self._host = None
