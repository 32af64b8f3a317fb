"""One batch across hosts on the shared journal, through the command line: `batch` loads
the manifest and works, `worker`s join, `status --journal` shows the whole batch.

Four worker processes on 2,000 inputs against one emulator (50 ms per request, 16
requests in flight per worker, 48 for the account): every input is created once, the
emulator never sees more than 48 requests at once, and a worker killed with SIGKILL
midway leaves its inputs to the others, with no duplicate.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import anyio
import anyio.abc
import pytest

from omni_edit.emulator import Emulator

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-postgres-cli-test"
ROWS = 2000
ACCOUNT_CAP = 48


def _env(emu: Emulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNI_EDIT_", "EVOLINK_"))}
    env.update(
        OMNI_EDIT_API_KEY=KEY,
        OMNI_EDIT_BASE_URL=emu.base_url,
        # A dead worker's inputs are free two seconds after its last heartbeat.
        OMNI_EDIT_JOURNAL_LEASE_SECONDS="2",
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "omni_edit", "--json", *args]


def _summary(stdout: bytes) -> dict[str, object]:
    lines = [line for line in stdout.decode().splitlines() if line.startswith("{")]
    last = lines[-1]
    summary: dict[str, object] = json.loads(last)
    return summary


async def test_four_workers_one_killed_make_every_input_once_within_the_accounts_cap(
    tmp_path: Path, postgres_url: str
) -> None:
    manifest = tmp_path / "m.csv"
    rows = [f"https://m.example/{i}.mp4,edit {i}" for i in range(ROWS)]
    manifest.write_text("\n".join(["video_url,prompt", *rows]) + "\n")
    report = tmp_path / "report.csv"
    async with Emulator(
        processing_time=(0.05, 0.2), estimated_time=0.1, latency=0.05, seed=17
    ) as emu:
        env = _env(emu)
        common = ("--no-preflight", "--concurrency", "64")
        loader = _cli(
            "batch",
            str(manifest),
            "--journal",
            postgres_url,
            "--out-dir",
            str(tmp_path / "out0"),
            "--account-concurrency",
            str(ACCOUNT_CAP),
            *common,
        )
        # Outputs go to files: a pipe nobody reads while the batch runs would fill up.
        logs = [tmp_path / f"worker{n}.out" for n in range(4)]
        streams = [log.open("wb") for log in logs]
        started: list[anyio.abc.Process] = []
        try:
            first = await anyio.open_process(loader, env=env, stdout=streams[0], stderr=streams[0])
            started.append(first)
            with anyio.fail_after(30):
                while len(emu.tasks) < 10:  # the batch is loaded and being worked
                    await anyio.sleep(0.01)
            joiners = [
                await anyio.open_process(
                    _cli("worker", "--journal", postgres_url, "--out-dir", str(tmp_path / f"o{n}"))
                    + list(common),
                    env=env,
                    stdout=streams[n],
                    stderr=streams[n],
                )
                for n in (1, 2, 3)
            ]
            started += joiners
            doomed = joiners[0]
            with anyio.fail_after(60):
                while len(emu.tasks) < ROWS // 3:
                    await anyio.sleep(0.01)
            doomed.kill()
            with anyio.fail_after(120):
                for process in [first, *joiners]:
                    await process.wait()
        finally:
            for process in started:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            for stream in streams:
                stream.close()
        outputs = [log.read_bytes() for log in logs]
        assert doomed.returncode == -signal.SIGKILL
        assert first.returncode == 0, outputs[0][-2000:]
        for process, output in zip(joiners[1:], outputs[2:], strict=True):
            assert process.returncode == 0, output[-2000:]
        created = Counter(t.prompt for t in emu.tasks.values())
        assert len(created) == ROWS
        assert max(created.values()) == 1, [p for p, n in created.items() if n > 1]
        assert emu.stats.max_in_flight <= ACCOUNT_CAP
        # Every survivor did a share, and together they did all that the dead one had
        # not reported done (its claimed and open inputs included).
        worked = [_summary(out)["worked"] for out in (outputs[0], outputs[2], outputs[3])]
        assert all(isinstance(n, int) and n > 0 for n in worked), worked
        reported = outputs[1].count(b'"status": "completed"')
        assert sum(n for n in worked if isinstance(n, int)) + reported >= ROWS

        status = await anyio.run_process(
            _cli("status", "--journal", postgres_url, "--report", str(report)), env=env
        )
    whole = _summary(status.stdout)
    assert whole["event"] == "batch_status"
    assert (whole["total"], whole["completed"], whole["done"]) == (ROWS, ROWS, True)
    assert len(report.read_text().splitlines()) == ROWS + 1  # the header and a row each
    password = postgres_url.split("//", 1)[1].split("@", 1)[0].partition(":")[2]
    assert password.encode() not in status.stdout + b"".join(outputs)


def test_the_resume_hint_hides_the_journals_password() -> None:
    from omni_edit._cli import _rerun_command

    hint = _rerun_command(["batch", "m.csv", "--journal", "postgresql://u:hunter2-pw@db/b"])
    assert "hunter2-pw" not in hint
    assert "postgresql://u:***@db/b" in hint
    assert "password" in hint
