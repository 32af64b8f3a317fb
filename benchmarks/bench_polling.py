"""Polling: GETs per task and detection lag, the shared scheduler against fixed intervals.

200 tasks whose real processing times are spread uniformly over 0.5x-2x of the reported
``estimated_time``, time-compressed: one "API second" is ``SCALE`` real seconds, so a 30 s
estimate runs in 3 s. Every strategy runs against the same in-process emulator in the
same run; lag is the time from the task's real completion (the emulator's clock) to the
moment the waiter sees it. Figures are reported in API seconds.

Memory: 100,000 tasks held by the scheduler at once, against a bare heap + dict of the
same tasks and a coroutine per waiter, measured as RSS growth per task.

Targets (issue 3): GETs <= 40% of 1 s polling's, median lag <= 5 s polling's; <= 1 KB of
RSS per held task.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import omni_edit as oe
from omni_edit._http.limits import Pause
from omni_edit._polling.scheduler import PollScheduler
from omni_edit.emulator import Emulator

SCALE = 0.1  # real seconds per API second
ESTIMATE = 30.0  # API seconds
TASKS = 200
KEY = "bench-key"


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


async def _run(
    wait: Callable[[oe.Client, oe.Task], Awaitable[float]], *, policy: oe.PollPolicy
) -> dict[str, float]:
    est = ESTIMATE * SCALE
    async with (
        Emulator(processing_time=(0.5 * est, 2 * est), estimated_time=est, seed=11) as emu,
        oe.Client(KEY, base_url=emu.base_url, poll=policy, max_concurrency=64) as client,
    ):
        tasks = [
            await client.submit("https://media.example.com/c.mp4", f"p{i}") for i in range(TASKS)
        ]
        lags: list[float] = []

        async def one(task: oe.Task) -> None:
            seen = await wait(client, task)
            finished = emu.tasks[task.id].finished_at
            assert finished is not None
            lags.append(max(0.0, seen - finished) / SCALE)

        await asyncio.gather(*(one(t) for t in tasks))
        gets = sum(1 for r in emu.stats.requests if r.method == "GET")
    return {
        "gets_per_task": gets / TASKS,
        "lag_median": statistics.median(lags),
        "lag_p95": _p95(lags),
    }


def _fixed(interval_api_seconds: float) -> Callable[[oe.Client, oe.Task], Awaitable[float]]:
    async def wait(client: oe.Client, task: oe.Task) -> float:
        while True:
            await asyncio.sleep(interval_api_seconds * SCALE)
            current = await client.get(task.id)
            if current.is_terminal:
                return time.time()

    return wait


async def _scheduled(client: oe.Client, task: oe.Task) -> float:
    await client.wait(task)
    return time.time()


async def polling() -> list[tuple[str, dict[str, float]]]:
    fixed_policy = oe.PollPolicy()
    ours = oe.PollPolicy(min_interval=1.0 * SCALE, max_interval=30.0 * SCALE)
    return [
        ("fixed 1 s", await _run(_fixed(1.0), policy=fixed_policy)),
        ("fixed 5 s", await _run(_fixed(5.0), policy=fixed_policy)),
        ("scheduler", await _run(_scheduled, policy=ours)),
    ]


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _tasks(n: int) -> list[oe.Task]:
    return [
        oe.Task(
            id=f"task-unified-1757169743-{i:08d}",
            status=oe.TaskStatus.PENDING,
            estimated_time=3600.0,
        )
        for i in range(n)
    ]


async def _hold(variant: str, n: int) -> float:
    """RSS growth per task while ``n`` waiting tasks are held one way."""

    async def never(task_id: str) -> oe.Task:
        raise AssertionError("no poll is due within the benchmark")

    def listener(task: oe.Task | None, error: BaseException | None) -> None:
        pass

    gc.collect()
    base = _rss()
    tasks = _tasks(n)
    if variant == "heap + dict":
        heap = [(time.monotonic() + 3600.0, t.id) for t in tasks]
        heapq.heapify(heap)
        table = {t.id: t for t in tasks}
        grown = _rss() - base
        del heap, table
    elif variant == "task per waiter":
        event = asyncio.Event()
        waiters = [asyncio.ensure_future(event.wait()) for _ in tasks]
        await asyncio.sleep(0)
        grown = _rss() - base
        event.set()
        await asyncio.gather(*waiters)
    else:
        sched = PollScheduler(never, oe.PollPolicy(), Pause())
        for task in tasks:
            sched.watch(task.id, listener, task=task)
        grown = _rss() - base
        await sched.aclose()
    return grown / n


MEMORY_VARIANTS = ("heap + dict", "task per waiter", "scheduler")


def memory(n: int = 100_000) -> dict[str, float]:
    """Each variant in a fresh interpreter: memory freed by one would otherwise be
    reused by the next and hide its cost."""
    results = {}
    for variant in MEMORY_VARIANTS:
        out = subprocess.run(
            [sys.executable, __file__, "--memory", variant, str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        results[variant] = float(out.stdout)
    return results


def main() -> None:
    rows = asyncio.run(polling())
    base_1s = rows[0][1]
    base_5s = rows[1][1]
    print(f"polling: {TASKS} tasks, estimate {ESTIMATE:g} s, processing 0.5x-2x, x{SCALE:g} time")
    print(f"  {'strategy':<10} {'GETs/task':>9} {'lag med':>8} {'lag p95':>8}  (API seconds)")
    for name, r in rows:
        print(
            f"  {name:<10} {r['gets_per_task']:>9.1f} {r['lag_median']:>8.2f} {r['lag_p95']:>8.2f}"
        )
    ours = rows[2][1]
    get_ratio = ours["gets_per_task"] / base_1s["gets_per_task"]
    lag_ratio = ours["lag_median"] / base_5s["lag_median"]
    print(f"  GETs vs fixed 1 s: {get_ratio:.0%} (target <= 40%)")
    print(f"  median lag vs fixed 5 s: {lag_ratio:.2f}x (target <= 1.00x)")
    mem = memory()
    print("memory: RSS growth per held task, 100,000 tasks")
    for name, per_task in mem.items():
        print(f"  {name:<16} {per_task:>7.0f} B")
    print(f"  scheduler: {mem['scheduler'] / 1024:.2f} KB per task (target <= 1 KB)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--memory":
        print(asyncio.run(_hold(sys.argv[2], int(sys.argv[3]))))
    else:
        main()
