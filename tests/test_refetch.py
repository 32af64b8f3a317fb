"""Refetcher: callbacks' re-reads of a task, coalesced and at most one per interval."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from omni_edit import Task, TaskStatus
from omni_edit._polling.refetch import Refetcher

pytestmark = pytest.mark.anyio

TASK_ID = "task-unified-1-refetch"


class _Api:
    """A fetch that counts reads and can be held mid-read."""

    def __init__(self) -> None:
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def fetch(self, task_id: str) -> Task:
        self.reads += 1
        number = self.reads
        await self.gate.wait()
        return Task(id=task_id, status=TaskStatus.PROCESSING, progress=number)


async def test_callers_while_a_read_waits_share_it() -> None:
    api = _Api()
    refetcher = Refetcher(api.fetch, interval=0.2)
    try:
        await refetcher.read(TASK_ID)
        results = await asyncio.gather(*(refetcher.read(TASK_ID) for _ in range(100)))
        assert api.reads == 2
        assert {task.progress for task in results} == {2}
    finally:
        await refetcher.aclose()


async def test_a_caller_during_a_read_in_flight_gets_the_next_read() -> None:
    api = _Api()
    refetcher = Refetcher(api.fetch, interval=0.0)
    try:
        api.gate.clear()
        async with anyio.create_task_group() as tg:
            first: list[Task] = []

            async def read_first() -> None:
                first.append(await refetcher.read(TASK_ID))

            tg.start_soon(read_first)
            await anyio.sleep(0.01)  # the first read is now sending
            later = asyncio.ensure_future(refetcher.read(TASK_ID))
            await anyio.sleep(0.01)
            api.gate.set()
        # The later caller's news may postdate the first read: it is read again.
        assert first[0].progress == 1
        assert (await later).progress == 2
    finally:
        await refetcher.aclose()


async def test_aclose_ends_waiting_callers_with_an_error() -> None:
    api = _Api()
    refetcher = Refetcher(api.fetch, interval=10.0)
    await refetcher.read(TASK_ID)
    waiting = asyncio.ensure_future(refetcher.read(TASK_ID))
    await anyio.sleep(0.01)
    await refetcher.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await waiting
