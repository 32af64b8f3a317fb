"""Polling: status requests per task and detection lag, the shared scheduler against
fixed intervals.

200 tasks whose real processing times are spread uniformly over 0.5x-2x of the reported
``estimated_time``, time-compressed: one "API second" is ``SCALE`` real seconds, so a 30 s
estimate runs in 3 s. The tasks are submitted together, each waited on from its
creation. Every strategy runs against the same in-process emulator settings in the same
run; lag is the time from the task's real completion (the emulator's clock) to the
moment the waiter sees it. Figures are reported in API seconds. "requests" counts
every status request: single reads (GET) and batch reads (POST /v1/tasks/batch).

Rows: fixed 1 s and 5 s polling; the scheduler with batch reads; the scheduler against a
deployment without them (the emulator answers the batch endpoint 404: one refused batch,
then single reads); and tasks whose answers carry no ``estimated_time``.

Memory: 100,000 tasks held by the scheduler at once, against a bare heap + dict of the
same tasks and a coroutine per waiter, measured as RSS growth per task.

Targets (issue 14): with batch reads <= 0.5 requests per task at a median lag no worse
than fixed 1 s polling's; with batch reads off <= 3 GETs per task at a median lag <= 1
API-second; with no estimate, every first poll within ``min_interval`` and a median lag
<= 1 API-second. (Issue 3: GETs <= 40% of 1 s polling's, median lag <= 5 s polling's;
<= 1 KB of RSS per held task.)
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
from typing import Any

import omni_edit as oe
from omni_edit._constants import TASKS_BATCH_PATH
from omni_edit._http.limits import Pause
from omni_edit._polling.scheduler import PollScheduler
from omni_edit.emulator import Emulator

SCALE = 0.1  # real seconds per API second
ESTIMATE = 30.0  # API seconds
TASKS = 200
KEY = "bench-key"
# The scheduler's policy, in API seconds: the defaults, time-compressed.
DEFAULTS = oe.PollPolicy()
OURS = oe.PollPolicy(
    min_interval=DEFAULTS.min_interval * SCALE,
    max_interval=DEFAULTS.max_interval * SCALE,
    batch_window=DEFAULTS.batch_window * SCALE,
)


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


async def _run(
    wait: Callable[[oe.Client, oe.Task], Awaitable[float]],
    *,
    policy: oe.PollPolicy,
    **knobs: Any,
) -> dict[str, float]:
    est = ESTIMATE * SCALE
    async with (
        Emulator(processing_time=(0.5 * est, 2 * est), estimated_time=est, seed=11, **knobs) as emu,
        oe.Client(KEY, base_url=emu.base_url, poll=policy, max_concurrency=64) as client,
    ):
        tasks: list[oe.Task] = []
        lags: list[float] = []

        async def one(i: int) -> None:
            # Each task is waited on from its creation, as a caller would.
            task = await client.submit("https://media.example.com/c.mp4", f"p{i}")
            tasks.append(task)
            seen = await wait(client, task)
            finished = emu.tasks[task.id].finished_at
            assert finished is not None
            lags.append(max(0.0, seen - finished) / SCALE)

        await asyncio.gather(*(one(i) for i in range(TASKS)))
        gets = sum(1 for r in emu.stats.requests if r.method == "GET")
        batches = sum(1 for r in emu.stats.requests if r.path == TASKS_BATCH_PATH)
        reads = sum(emu.tasks[t.id].reads for t in tasks)
        first = [
            (t_first - emu.tasks[t.id].started) / SCALE
            for t in tasks
            if (t_first := emu.tasks[t.id].first_read) is not None
        ]
    return {
        "requests_per_task": (gets + batches) / TASKS,
        "gets_per_task": gets / TASKS,
        "reads_per_task": reads / TASKS,
        "lag_median": statistics.median(lags),
        "lag_p95": _p95(lags),
        "first_poll_max": max(first),
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


ROWS = ("fixed 1 s", "fixed 5 s", "batch reads", "single reads", "no estimate")


async def polling() -> dict[str, dict[str, float]]:
    fixed_policy = oe.PollPolicy()
    return {
        "fixed 1 s": await _run(_fixed(1.0), policy=fixed_policy),
        "fixed 5 s": await _run(_fixed(5.0), policy=fixed_policy),
        "batch reads": await _run(_scheduled, policy=OURS),
        "single reads": await _run(_scheduled, policy=OURS, batch_reads=False),
        "no estimate": await _run(_scheduled, policy=OURS, estimate="absent"),
    }


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


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


def main() -> int:
    rows = asyncio.run(polling())
    print(f"polling: {TASKS} tasks, estimate {ESTIMATE:g} s, processing 0.5x-2x, x{SCALE:g} time")
    print(
        f"  {'strategy':<13} {'requests/task':>13} {'GETs/task':>9} {'reads/task':>10}"
        f" {'lag med':>8} {'lag p95':>8} {'1st poll max':>12}  (API seconds)"
    )
    for name in ROWS:
        r = rows[name]
        print(
            f"  {name:<13} {r['requests_per_task']:>13.2f} {r['gets_per_task']:>9.2f}"
            f" {r['reads_per_task']:>10.2f} {r['lag_median']:>8.2f} {r['lag_p95']:>8.2f}"
            f" {r['first_poll_max']:>12.2f}"
        )
    fixed_1s, fixed_5s = rows["fixed 1 s"], rows["fixed 5 s"]
    batch, single, blind = rows["batch reads"], rows["single reads"], rows["no estimate"]
    checks = [
        (
            f"batch reads: {batch['requests_per_task']:.2f} requests/task (target <= 0.5)",
            batch["requests_per_task"] <= 0.5,
        ),
        (
            f"batch reads: median lag {batch['lag_median']:.2f} vs fixed 1 s"
            f" {fixed_1s['lag_median']:.2f} (target: no worse)",
            batch["lag_median"] <= fixed_1s["lag_median"],
        ),
        (
            f"batch reads off: {single['gets_per_task']:.2f} GETs/task (target <= 3)",
            single["gets_per_task"] <= 3,
        ),
        (
            f"batch reads off: median lag {single['lag_median']:.2f} (target <= 1 API-second)",
            single["lag_median"] <= 1.0,
        ),
        (
            f"batch reads off: GETs vs fixed 1 s"
            f" {single['gets_per_task'] / fixed_1s['gets_per_task']:.0%} (target <= 40%)",
            single["gets_per_task"] <= 0.4 * fixed_1s["gets_per_task"],
        ),
        (
            f"batch reads off: median lag vs fixed 5 s"
            f" {single['lag_median'] / fixed_5s['lag_median']:.2f}x (target <= 1.00x)",
            single["lag_median"] <= fixed_5s["lag_median"],
        ),
        (
            f"no estimate: first poll within {blind['first_poll_max']:.2f} of creation"
            f" (target <= min_interval, {DEFAULTS.min_interval:g})",
            blind["first_poll_max"] <= DEFAULTS.min_interval,
        ),
        (
            f"no estimate: median lag {blind['lag_median']:.2f} (target <= 1 API-second)",
            blind["lag_median"] <= 1.0,
        ),
    ]
    for text, ok in checks:
        print(f"  {_verdict(ok)} {text}")
    mem = memory()
    print("memory: RSS growth per held task, 100,000 tasks")
    for name, per_task in mem.items():
        print(f"  {name:<16} {per_task:>7.0f} B")
    mem_ok = mem["scheduler"] <= 1024
    print(
        f"  {_verdict(mem_ok)} scheduler: {mem['scheduler'] / 1024:.2f} KB per task"
        " (target <= 1 KB)"
    )
    return 0 if mem_ok and all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--memory":
        print(asyncio.run(_hold(sys.argv[2], int(sys.argv[3]))))
    else:
        sys.exit(main())
