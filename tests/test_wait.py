"""wait(): the shared scheduler against the emulator."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

import omni_edit as oe
from omni_edit.emulator import Emulator, Fault

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory

pytestmark = pytest.mark.anyio

KEY = "sk-test-wait"
CLIP = "https://media.example.com/clip.mp4"
FAST = oe.PollPolicy(min_interval=0.05, max_interval=0.5, jitter=0.1)


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator(processing_time=(0.4, 0.6), estimated_time=0.5, seed=3)


@pytest.fixture
async def client(make_client: ClientFactory, emu: Emulator) -> oe.Client:
    return await make_client(emu, KEY, poll=FAST, max_concurrency=8)


def _reads_per_task(emu: Emulator) -> Counter[str]:
    """Single and batch reads of each task."""
    return Counter({task_id: t.reads for task_id, t in emu.tasks.items() if t.reads})


async def test_wait_returns_the_completed_task(client: oe.Client) -> None:
    task = await client.submit(CLIP, "warmer")
    done = await client.wait(task)
    assert done.status is oe.TaskStatus.COMPLETED
    assert done.result_url is not None


async def test_many_concurrent_waits_share_one_scheduler(client: oe.Client, emu: Emulator) -> None:
    tasks = [await client.submit(CLIP, f"p{i}") for i in range(20)]
    results: list[oe.Task] = []

    async def waiter(task: oe.Task) -> None:
        results.append(await client.wait(task))

    async with anyio.create_task_group() as tg:
        for task in tasks:
            for _ in range(10):  # ten waiters per task
                tg.start_soon(waiter, task)
    assert len(results) == 200
    assert all(r.status is oe.TaskStatus.COMPLETED for r in results)
    reads = _reads_per_task(emu)
    assert set(reads) == {t.id for t in tasks}
    # Ten waiters poll like one: a handful of reads per task, not ten handfuls.
    assert max(reads.values()) <= 6, reads


async def test_on_progress_sees_every_change_sync_and_async(client: oe.Client) -> None:
    task = await client.submit(CLIP, "warmer")
    sync_seen: list[tuple[str, int]] = []
    async_seen: list[tuple[str, int]] = []

    async def record(t: oe.Task) -> None:
        await anyio.lowlevel.checkpoint()
        async_seen.append((t.status.value, t.progress))

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: client.wait(task, on_progress=record))
        await client.wait(
            task, on_progress=lambda t: sync_seen.append((t.status.value, t.progress))
        )
    assert sync_seen[-1] == ("completed", 100)
    progress = [p for _, p in sync_seen]
    assert progress == sorted(progress)
    assert len(set(sync_seen)) == len(sync_seen)  # changes only, no repeats
    assert async_seen[-1] == ("completed", 100)


async def test_failed_task_raises_task_failed_error(client: oe.Client, emu: Emulator) -> None:
    task = await client.submit(CLIP, "warmer")
    emu.fail(task.id, code="generation_timeout")
    with pytest.raises(oe.TaskFailedError) as info:
        await client.wait(task.id)
    assert info.value.task.status is oe.TaskStatus.FAILED
    assert info.value.code == "generation_timeout"
    assert info.value.retryable


async def test_cancelled_task_raises_task_failed_error(client: oe.Client, emu: Emulator) -> None:
    task = await client.submit(CLIP, "warmer")
    emu.cancel(task.id)
    with pytest.raises(oe.TaskFailedError) as info:
        await client.wait(task.id)
    assert info.value.task.status is oe.TaskStatus.CANCELLED


async def test_timeout_raises_wait_timeout_error_with_the_last_task(
    emu: Emulator,
) -> None:
    async with oe.Client(KEY, base_url=emu.base_url, poll=FAST) as c:
        task = await c.submit(CLIP, "warmer")
        with pytest.raises(oe.WaitTimeoutError) as info:
            await c.wait(task, timeout=0.1)
    assert info.value.task is not None
    assert info.value.task.id == task.id
    assert isinstance(info.value, TimeoutError)


async def test_a_cancelled_wait_stops_its_polling(emu: Emulator) -> None:
    steady = oe.PollPolicy(min_interval=0.05, max_interval=0.05, jitter=0)
    async with oe.Client(KEY, base_url=emu.base_url, poll=steady) as client:
        await _cancel_a_wait_and_count_polls(client, emu)


async def _cancel_a_wait_and_count_polls(client: oe.Client, emu: Emulator) -> None:
    task = await client.submit(CLIP, "warmer")
    with anyio.move_on_after(0.2):
        await client.wait(task.id)
    await anyio.sleep(0.06)  # a poll already in flight may land
    count = _reads_per_task(emu)[task.id]
    assert count >= 1
    await anyio.sleep(0.3)
    assert _reads_per_task(emu)[task.id] == count
    assert len(client._scheduler) == 0


async def test_waiting_on_an_unknown_id_raises_not_found(client: oe.Client) -> None:
    with pytest.raises(oe.NotFoundError):
        await client.wait("task-unified-1-doesnotexist")


async def test_a_terminal_task_returns_without_a_request(client: oe.Client, emu: Emulator) -> None:
    task = await client.wait(await client.submit(CLIP, "warmer"))
    before = len(emu.stats.requests)
    assert await client.wait(task) is task
    assert len(emu.stats.requests) == before


async def test_first_poll_is_timed_by_estimated_time() -> None:
    async with (
        Emulator(processing_time=(1.0, 1.0), estimated_time=1.0) as emu,
        oe.Client(KEY, base_url=emu.base_url, poll=oe.PollPolicy(min_interval=0.05, jitter=0)) as c,
    ):
        task = await c.submit(CLIP, "warmer")
        start = time.monotonic()
        await c.wait(task)
        gets = sorted(r.time for r in emu.stats.requests if r.method == "GET")
    assert gets[0] - start >= 0.45  # half the estimate: nothing can finish sooner
    # Fixed polling at min_interval would take about 20 GETs.
    assert len(gets) <= 7


async def test_an_error_ends_a_wait_that_reports_progress(client: oe.Client) -> None:
    seen: list[oe.Task] = []
    with anyio.fail_after(5), pytest.raises(oe.NotFoundError):
        await client.wait("task-unified-1-doesnotexist", on_progress=seen.append)
    assert seen == []


async def test_a_timeout_error_from_on_progress_is_not_taken_for_the_wait_timeout(
    client: oe.Client,
) -> None:
    def on_progress(task: oe.Task) -> None:
        raise TimeoutError("the caller's own")

    task = await client.submit(CLIP, "warmer")
    with pytest.raises(TimeoutError, match="the caller's own") as info:
        await client.wait(task, timeout=30, on_progress=on_progress)
    assert not isinstance(info.value, oe.WaitTimeoutError)


async def test_a_wait_cancelled_mid_poll_leaves_no_connection_or_task_behind(
    client: oe.Client, emu: Emulator
) -> None:
    task = await client.submit(CLIP, "warmer")
    before = asyncio.all_tasks()
    emu.inject(Fault.delay(5), method="GET", times=1)
    with anyio.move_on_after(0.3):  # its first poll runs inline, 5 s from an answer
        await client.wait(task.id)
    assert emu.stats.requests[-1].method == "GET"  # the poll was in flight
    assert len(client._scheduler) == 0  # nobody waits: nothing polls it again
    # White-box leak checks: the connector's and the in-flight cap's own counts.
    connector = client._transport.session.connector
    assert connector is not None
    assert len(connector._acquired) == 0  # the cut connection went back (closed)
    assert client._limits.slots._value == client.max_concurrency  # every slot is free

    def left_behind() -> set[asyncio.Task[object]]:
        # The in-process emulator still serves the delayed GET: its tasks do not count.
        return {
            t
            for t in asyncio.all_tasks() - before
            if "/emulator/" not in str(getattr(t.get_coro(), "cr_code", ""))
            and "web_protocol" not in str(getattr(t.get_coro(), "cr_code", ""))
        }

    with anyio.fail_after(1):  # the scheduler's runner ends within a tick
        while left_behind():
            await anyio.sleep(0.01)
    with anyio.fail_after(5):
        assert (await client.wait(task.id)).status is oe.TaskStatus.COMPLETED
