"""What the journal costs: edit_many over instant inputs with a journal, against the same
run without one.

Both contenders are ``edit_many`` exactly as in ``bench_batch.py`` (the SDK side: 64 in
flight, polls with no delay, tasks that finish at once, no download), over the same
2,000 inputs against an emulator in its own process. The journalled run opens a new
SQLite journal file in a fresh temporary folder each round, so every input is claimed,
recorded "submitting" (durably, before its create is sent), "submitted" (durably, with
its task id) and "completed". Rounds alternate which contender goes first; the ratio is
per round, and the median and quartiles of the ratios are reported.

Target (issue): journalled wall time <= 1.3x the run without a journal (median of paired
rounds). The client's own CPU time (its event-loop thread) is printed beside it: on a
shared machine it moves less than the wall time does.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import omni_edit as oe

sys.path.insert(0, str(Path(__file__).parent))
from bench_batch import (
    CONCURRENCY,
    KEY,
    POLICY,
    EmulatorProcess,
    _inputs,
)

N = 2_000
ROUNDS = 15
TARGET = 1.3


async def run(base_url: str, n: int, journal: str | None) -> tuple[float, float]:
    start = time.perf_counter()
    cpu = time.thread_time()
    failed = 0
    async with oe.Client(
        KEY, base_url=base_url, max_concurrency=CONCURRENCY, poll=POLICY
    ) as client:
        async for outcome in client.edit_many(_inputs(n), concurrency=CONCURRENCY, journal=journal):
            if not outcome.ok:
                failed += 1
    if failed:
        raise RuntimeError(f"{failed} inputs failed")
    return time.perf_counter() - start, time.thread_time() - cpu


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else ROUNDS
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    walls: dict[str, list[float]] = {"journal": [], "none": []}
    with EmulatorProcess() as emu:
        asyncio.run(run(emu.base_url, 200, None))  # warm-up
        for r in range(rounds):
            with tempfile.TemporaryDirectory() as tmp:
                order = ["journal", "none"] if r % 2 == 0 else ["none", "journal"]
                got: dict[str, float] = {}
                cpu: dict[str, float] = {}
                for name in order:
                    journal = str(Path(tmp) / "batch.journal") if name == "journal" else None
                    got[name], cpu[name] = asyncio.run(run(emu.base_url, n, journal))
                    walls[name].append(got[name])
                ratios.append(got["journal"] / got["none"])
                cpu_ratios.append(cpu["journal"] / cpu["none"])
                print(
                    f"round {r + 1}: journal {got['journal']:.2f} s, none {got['none']:.2f} s,"
                    f" ratio {ratios[-1]:.2f} (client CPU {cpu_ratios[-1]:.2f})",
                    flush=True,
                )
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    median = statistics.median(ratios)
    with_journal = statistics.median(walls["journal"])
    without = statistics.median(walls["none"])
    print(
        f"edit_many, {n} instant inputs, {rounds} paired rounds: journal/none wall median"
        f" {median:.2f}x (quartiles {q[0]:.2f}-{q[2]:.2f}); median walls"
        f" {with_journal:.2f} s with, {without:.2f} s without; client CPU"
        f" {statistics.median(cpu_ratios):.2f}x;"
        f" target <= {TARGET}x: {'met' if median <= TARGET else 'NOT met'}"
    )
    return 0 if median <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
