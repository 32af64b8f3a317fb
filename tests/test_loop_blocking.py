"""Nothing a batch does blocks the event loop: run under asyncio's debug mode, which
logs every callback (every step of a task) slower than ``slow_callback_duration``.

Run in a fresh interpreter: a module imported on first use (anyio's thread pool was one,
60-80 ms inside the journal's open) blocks only the first run in a process, which a
test suite that imported it already would never see."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import asyncio, logging, sys
from pathlib import Path

import omni_edit as oe
from omni_edit.emulator import Emulator

slow = []

class Catch(logging.Handler):
    def emit(self, record):
        if "took" in record.getMessage():
            slow.append(record.getMessage())

logging.getLogger("asyncio").addHandler(Catch())

async def main(tmp):
    asyncio.get_running_loop().slow_callback_duration = 0.05
    async with Emulator(processing_time=(0.01, 0.05), estimated_time=0.02, seed=4) as emu:
        policy = oe.PollPolicy(min_interval=0.01, max_interval=0.05)
        async with oe.Client("sk-loop-test", base_url=emu.base_url, poll=policy) as client:
            inputs = [(f"https://m.example/{i}.mp4", f"edit {i}") for i in range(200)]
            outcomes = [
                o async for o in client.edit_many(
                    inputs,
                    journal=tmp / "run.sqlite",
                    download_dir=tmp / "out",
                    concurrency=32,
                )
            ]
    return outcomes

outcomes = asyncio.run(main(Path(sys.argv[1])), debug=True)
print(sum(o.ok for o in outcomes), len(outcomes))
for line in slow:
    print("SLOW", line)
"""


def test_a_batch_with_a_journal_and_downloads_never_blocks_the_loop(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    first, *slow = done.stdout.splitlines()
    assert first == "200 200"
    assert not slow, slow[:5]
