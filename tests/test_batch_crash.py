"""A batch process killed with SIGKILL mid-run, then rerun with the same journal."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest
from by_hand import finish_tasks_by_hand

from omni_edit.emulator import Emulator, Fault

pytestmark = pytest.mark.anyio

N = 40
# The killed run's leases lapse in 1.5 s, not 30: its rerun takes its inputs over at once.
CHILD_ENV = {**os.environ, "OMNI_EDIT_JOURNAL_LEASE_SECONDS": "1.5"}
CHILD = """
import asyncio, sys
import omni_edit as oe

async def main() -> None:
    base_url, journal = sys.argv[1], sys.argv[2]
    policy = oe.PollPolicy(min_interval=0.02, max_interval=0.2)
    async with oe.Client("crash-key", base_url=base_url, poll=policy) as client:
        inputs = ((f"https://m.example/{i}.mp4", f"prompt {i}") for i in range({n}))
        async for o in client.edit_many(
            inputs, journal=journal, concurrency=10
        ):
            print(o.index, "ok" if o.ok else type(o.error).__name__, flush=True)

asyncio.run(main())
""".replace("{n}", str(N))


def _parse(out: str) -> dict[int, str]:
    return {int(i): status for i, status in (line.split() for line in out.splitlines() if line)}


async def _run(emu: Emulator, journal: Path) -> dict[int, str]:
    """Run the batch to its end, finishing its tasks by hand meanwhile."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(finish_tasks_by_hand, emu)
        result = await anyio.run_process(
            [sys.executable, "-c", CHILD, emu.base_url, str(journal)],
            check=True,
            env=CHILD_ENV,
        )
        tg.cancel_scope.cancel()
    return _parse(result.stdout.decode())


def _recorded(journal: Path) -> set[str]:
    """The task ids the journal holds (read beside the running batch: WAL mode)."""
    if not journal.exists():
        return set()
    try:
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT task_id FROM items WHERE task_id IS NOT NULL")
            return {task_id for (task_id,) in rows}
    except sqlite3.OperationalError:  # the schema is still being made
        return set()


async def test_a_killed_batch_resumes_without_creating_anything_twice(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    # Tasks that would run for ten minutes, finished by hand: however slow the machine,
    # the batch is still running when it is killed.
    async with Emulator(processing_time=(600, 600), estimated_time=0.4, seed=9) as emu:
        async with await anyio.open_process(
            [sys.executable, "-c", CHILD, emu.base_url, str(journal)],
            stdout=-1,
            env=CHILD_ENV,
        ) as proc:
            assert proc.stdout is not None
            seen = b""
            with anyio.fail_after(30):
                # Kill once some inputs are done and others are in flight: five of the
                # first ten tasks end, five more are created in their place, and the
                # child has recorded each of the fifteen task ids.
                while len(emu.tasks) < 5:
                    await anyio.sleep(0.01)
                for task_id in list(emu.tasks)[:5]:
                    emu.complete(task_id)
                while seen.count(b"\n") < 5:
                    seen += await proc.stdout.receive()
                while len(emu.tasks) < 15 or not set(emu.tasks) <= _recorded(journal):
                    await anyio.sleep(0.01)
                # Then two creates in flight: handled (their tasks exist, billed) with the
                # answers held back, so the kill lands between the send and the record.
                made = len(emu.tasks)
                emu.inject(Fault.delay(60), method="POST", path="/v1/videos/generations", times=2)
                for task_id in list(emu.tasks)[5:7]:
                    emu.complete(task_id)  # frees two workers to send those creates
                while len(emu.tasks) < made + 2 or emu.stats.in_flight < 2:
                    await anyio.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        first = _parse(seen.decode().rsplit("\n", 1)[0])
        assert 0 < len(first) < N

        second = await _run(emu, journal)
        # The two inputs killed mid-create were recorded "submitting" with their keys
        # before the send: the rerun replays the keys and gets the tasks the killed run
        # paid for, instead of reporting them uncertain or paying again.
        assert sorted(second) == list(range(N))
        assert set(second.values()) == {"ok"}
        assert emu.stats.replays == 2
        created = Counter(t.prompt for t in emu.tasks.values())
        assert sorted(created) == sorted(f"prompt {i}" for i in range(N))
        assert max(created.values()) == 1


FULL_DISK_CHILD = """
import asyncio, resource, signal, sys
import omni_edit as oe

async def main() -> None:
    base_url, journal, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if limit:
        # A disk that fills up: past this size a write fails (EFBIG) instead of the
        # process being killed by SIGXFSZ.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    policy = oe.PollPolicy(min_interval=0.02, max_interval=0.1)
    async with oe.Client("disk-key", base_url=base_url, poll=policy) as client:
        inputs = ((f"https://m.example/{i}.mp4", f"prompt {i}") for i in range(30))
        async for o in client.edit_many(inputs, journal=journal, concurrency=4):
            print(o.index, "ok" if o.ok else type(o.error).__name__, flush=True)

asyncio.run(main())
"""


async def test_a_full_disk_stops_the_batch_and_the_rerun_bills_nothing_twice(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "run.sqlite"
    async with Emulator(processing_time=(0.02, 0.05), estimated_time=0.03, seed=3) as emu:
        full = await anyio.run_process(
            [sys.executable, "-c", FULL_DISK_CHILD, emu.base_url, str(journal), "40000"],
            check=False,
            env=CHILD_ENV,
        )
        errors = full.stderr.decode()
        assert full.returncode == 0, errors  # every input got an outcome; no crash
        assert "Traceback" not in errors
        first = _parse(full.stdout.decode())
        assert sorted(first) == list(range(30))
        assert set(first.values()) <= {"ok", "JournalError"}
        assert list(first.values()).count("JournalError") >= 20  # stopped, not ploughed on
        made = len(emu.tasks)
        assert made < 30  # nothing was submitted once the journal could not be written

        rerun = await anyio.run_process(
            [sys.executable, "-c", FULL_DISK_CHILD, emu.base_url, str(journal), "0"],
            check=True,
            env=CHILD_ENV,
        )
        second = _parse(rerun.stdout.decode())
    assert sorted(second) == list(range(30))
    assert set(second.values()) == {"ok"}  # none uncertain, none lost
    created = Counter(t.prompt for t in emu.tasks.values())
    assert len(created) == 30
    assert max(created.values()) == 1
