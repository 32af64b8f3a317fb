"""The scheduler's bookkeeping, with a fake task source in place of the API."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

import omni_edit as oe
from omni_edit._http.limits import Pause
from omni_edit._polling.scheduler import Follower, Listener, PollScheduler

pytestmark = pytest.mark.anyio

FAST = oe.PollPolicy(min_interval=0.01, max_interval=0.05, jitter=0.1)


class FakeApi:
    def __init__(self, polls_to_finish: int = 3) -> None:
        self.gets: dict[str, int] = {}
        self.polls_to_finish = polls_to_finish

    async def fetch(self, task_id: str) -> oe.Task:
        n = self.gets[task_id] = self.gets.get(task_id, 0) + 1
        await anyio.lowlevel.checkpoint()
        if n >= self.polls_to_finish:
            return oe.Task(id=task_id, status=oe.TaskStatus.COMPLETED, progress=100)
        return oe.Task(id=task_id, status=oe.TaskStatus.PROCESSING, progress=30 * n)


async def test_many_listeners_of_one_task_share_its_polls() -> None:
    api = FakeApi()
    sched = PollScheduler(api.fetch, FAST, Pause())
    seen: list[list[oe.Task]] = [[] for _ in range(50)]
    done = anyio.Event()

    def listener_for(i: int) -> Listener:
        def listener(task: oe.Task | None, error: BaseException | None) -> None:
            assert task is not None
            seen[i].append(task)
            if all(s and s[-1].is_terminal for s in seen):
                done.set()

        return listener

    for i in range(50):
        sched.watch("task-unified-1-a", listener_for(i))
    with anyio.fail_after(5):
        await done.wait()
    assert api.gets == {"task-unified-1-a": 3}
    assert len(sched) == 0
    await sched.aclose()


async def test_a_task_nobody_watches_is_never_polled_again() -> None:
    api = FakeApi(polls_to_finish=10**6)
    sched = PollScheduler(api.fetch, FAST, Pause())

    def listener(task: oe.Task | None, error: BaseException | None) -> None:
        pass

    sched.watch("task-unified-1-a", listener)
    await anyio.sleep(0.1)
    sched.unwatch("task-unified-1-a", listener)
    await anyio.sleep(0.01)
    count = api.gets["task-unified-1-a"]
    await anyio.sleep(0.2)
    assert api.gets["task-unified-1-a"] == count
    assert len(sched) == 0
    await sched.aclose()


async def test_the_runner_ends_when_idle_and_restarts_on_a_new_watch() -> None:
    api = FakeApi(polls_to_finish=1)
    sched = PollScheduler(api.fetch, FAST, Pause())
    results: list[oe.Task | None] = []
    sched.watch("task-unified-1-a", lambda t, e: results.append(t))
    with anyio.fail_after(2):
        while sched._runner is not None:
            await anyio.sleep(0.01)
    sched.watch("task-unified-1-b", lambda t, e: results.append(t))
    with anyio.fail_after(2):
        while len(results) < 2:
            await anyio.sleep(0.01)
    assert [t.id for t in results if t] == ["task-unified-1-a", "task-unified-1-b"]
    await sched.aclose()


async def test_a_pause_holds_every_poll_back() -> None:
    api = FakeApi(polls_to_finish=1)
    pause = Pause()
    pause.pause_for(0.3)
    sched = PollScheduler(api.fetch, FAST, pause)
    sched.watch("task-unified-1-a", lambda t, e: None)
    await anyio.sleep(0.2)
    assert api.gets == {}
    await anyio.sleep(0.3)
    assert api.gets == {"task-unified-1-a": 1}
    await sched.aclose()


async def test_fatal_poll_errors_reach_the_listeners() -> None:
    async def fetch(task_id: str) -> oe.Task:
        raise oe.NotFoundError("gone", status=404)

    sched = PollScheduler(fetch, FAST, Pause())
    errors: list[BaseException | None] = []
    sched.watch("task-unified-1-a", lambda t, e: errors.append(e))
    with anyio.fail_after(2):
        while not errors:
            await anyio.sleep(0.01)
    assert isinstance(errors[0], oe.NotFoundError)
    await sched.aclose()


async def test_an_unexpected_error_in_the_runners_own_poll_reaches_the_listeners() -> None:
    """A poll the runner runs as a task of its own (no waiter parked) that fails with
    something no rule expects ends the task's watch with that error; it does not leave
    the task marked as being polled and never polled again."""
    calls = 0

    async def fetch(task_id: str) -> oe.Task:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise LookupError("a bug, or a parser that gave way")
        return oe.Task(id=task_id, status=oe.TaskStatus.PROCESSING, progress=10 * calls)

    sched = PollScheduler(fetch, FAST, Pause())
    errors: list[BaseException] = []
    sched.watch("task-unified-1-a", lambda t, e: errors.append(e) if e else None)
    with anyio.fail_after(2):
        while not errors:
            await anyio.sleep(0.01)
    assert isinstance(errors[0], LookupError)
    assert len(sched) == 0
    await sched.aclose()


async def test_a_wait_with_an_async_on_progress_ends_when_a_poll_fails_unexpectedly() -> None:
    """While the waiter is busy in its ``on_change``, the runner polls in a task of its
    own; an unexpected failure there reaches the waiter instead of hanging it."""
    calls = 0

    async def fetch(task_id: str) -> oe.Task:
        nonlocal calls
        calls += 1
        if calls >= 2:
            raise RecursionError("maximum recursion depth exceeded")
        return oe.Task(id=task_id, status=oe.TaskStatus.PROCESSING, progress=10)

    async def on_change(task: oe.Task) -> None:
        await anyio.sleep(0.2)  # busy: the next poll is not handed to this waiter

    sched = PollScheduler(fetch, FAST, Pause())
    with anyio.fail_after(3), pytest.raises(RecursionError):
        await sched.follow("task-unified-1-a", Follower(None, reports=True), on_change=on_change)
    assert calls == 2
    assert len(sched) == 0
    await sched.aclose()


async def test_aclose_leaves_no_task_behind() -> None:
    before = asyncio.all_tasks()
    api = FakeApi(polls_to_finish=10**6)
    sched = PollScheduler(api.fetch, FAST, Pause())
    errors: list[BaseException | None] = []
    for i in range(20):
        sched.watch(f"task-unified-1-{i}", lambda t, e: errors.append(e))
    await anyio.sleep(0.05)
    await sched.aclose()
    assert asyncio.all_tasks() - before == set()
    assert any(isinstance(e, RuntimeError) for e in errors)


async def test_a_follower_runs_its_own_polls_without_a_task_per_poll() -> None:
    api = FakeApi(polls_to_finish=3)
    tasks_during_polls: list[int] = []

    async def counting_fetch(task_id: str) -> oe.Task:
        tasks_during_polls.append(len(sched._polls))
        return await api.fetch(task_id)

    sched = PollScheduler(counting_fetch, FAST, Pause())
    seen: list[int] = []
    with anyio.fail_after(5):
        task = await sched.follow(
            "task-unified-1-a",
            Follower(None, reports=True),
            on_change=lambda t: seen.append(t.progress),
        )
    assert task.status is oe.TaskStatus.COMPLETED
    assert api.gets == {"task-unified-1-a": 3}
    # The first poll ran inline, the later ones were handed to the parked follower.
    assert tasks_during_polls == [0, 0, 0]
    assert seen == [30, 60, 100]
    assert len(sched) == 0
    await sched.aclose()


async def test_a_follower_cancelled_mid_poll_hands_the_poll_to_the_next() -> None:
    started = anyio.Event()
    calls = 0

    async def fetch(task_id: str) -> oe.Task:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            await anyio.sleep_forever()  # the answer that never comes
        return oe.Task(id=task_id, status=oe.TaskStatus.COMPLETED, progress=100)

    before = asyncio.all_tasks()
    sched = PollScheduler(fetch, FAST, Pause())
    results: list[oe.Task] = []

    async def follow() -> None:
        results.append(await sched.follow("task-unified-1-a", Follower(None, reports=False)))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            first = anyio.CancelScope()

            async def first_follower() -> None:
                with first:
                    await follow()

            tg.start_soon(first_follower)
            await started.wait()  # the first follower is inside its poll
            tg.start_soon(follow)
            await anyio.sleep(0.01)
            first.cancel()
    assert [t.status for t in results] == [oe.TaskStatus.COMPLETED]
    assert calls == 2
    assert len(sched) == 0
    await sched.aclose()
    assert asyncio.all_tasks() - before == set()
