"""`omni-edit batch` and its journal: an edited manifest resumes by what rows are, and two
processes on one manifest split it, one finishing what the other, killed, left."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest
from by_hand import finish_tasks_by_hand

from omni_edit.emulator import Emulator

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-sharing-cli-test"
ROWS = 60


def _env(emu: Emulator, lease: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNI_EDIT_", "EVOLINK_"))}
    env.update(
        OMNI_EDIT_API_KEY=KEY,
        OMNI_EDIT_BASE_URL=emu.base_url,
        OMNI_EDIT_JOURNAL_LEASE_SECONDS=str(lease),
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _manifest(tmp_path: Path) -> Path:
    path = tmp_path / "m.csv"
    rows = [f"https://m.example/{i}.mp4,edit {i}" for i in range(ROWS)]
    path.write_text("\n".join(["video_url,prompt", *rows]) + "\n")
    return path


def _command(manifest: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "omni_edit",
        "--json",
        "batch",
        str(manifest),
        "--no-preflight",
        "--concurrency",
        "6",
    ]


def _summary(stdout: bytes) -> dict[str, object]:
    last = stdout.decode().strip().splitlines()[-1]
    summary: dict[str, object] = json.loads(last)
    assert summary["event"] == "summary"
    return summary


def _created_once(emu: Emulator) -> None:
    created = Counter(t.prompt for t in emu.tasks.values())
    assert len(created) == ROWS
    assert max(created.values()) == 1, [p for p, n in created.items() if n > 1]


async def test_two_batch_runs_on_one_manifest_split_it(
    tmp_path: Path,
) -> None:
    manifest = _manifest(tmp_path)
    async with Emulator(processing_time=(0.05, 0.3), estimated_time=0.1, seed=11) as emu:
        env = _env(emu, lease=30)
        results: list[tuple[int, bytes, bytes]] = []

        async def run() -> None:
            done = await anyio.run_process(_command(manifest), env=env, check=False)
            results.append((done.returncode, done.stdout, done.stderr))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                tg.start_soon(run)
        _created_once(emu)
    shares = []
    for code, stdout, stderr in results:
        assert code == 0, stderr.decode()
        summary = _summary(stdout)
        assert summary["completed"] == ROWS  # each reports the whole manifest done
        found = summary["found_done"]
        assert isinstance(found, int)
        shares.append(ROWS - found)
    assert sum(shares) == ROWS  # every row worked by exactly one of them
    assert min(shares) > 0  # and both worked


async def test_a_killed_run_s_rows_are_finished_by_the_other_without_duplicates(
    tmp_path: Path,
) -> None:
    manifest = _manifest(tmp_path)
    # Tasks that would run for ten minutes, finished by hand: both runs are mid-batch
    # with tasks open when one is killed.
    async with Emulator(processing_time=(600, 600), estimated_time=0.2, seed=12) as emu:
        env = _env(emu, lease=1.0)
        command = _command(manifest)
        async with (
            await anyio.open_process(command, env=env) as doomed,
            await anyio.open_process(command, env=env) as survivor,
        ):
            with anyio.fail_after(30):
                while len(emu.tasks) < 12:  # both have six tasks open
                    await anyio.sleep(0.01)
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
            async with anyio.create_task_group() as tg:
                tg.start_soon(finish_tasks_by_hand, emu)
                with anyio.fail_after(60):
                    await survivor.wait()
                tg.cancel_scope.cancel()
            assert survivor.stdout is not None
            assert survivor.stderr is not None
            stdout = b"".join([chunk async for chunk in survivor.stdout])
            stderr = b"".join([chunk async for chunk in survivor.stderr])
        assert doomed.returncode == -signal.SIGKILL
        assert survivor.returncode == 0, stderr.decode()
        assert _summary(stdout)["completed"] == ROWS
        _created_once(emu)  # the dead run's tasks were waited on, or their keys replayed


async def test_an_edited_manifest_submits_only_its_new_and_fixed_rows(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    async with Emulator(processing_time=(0.02, 0.1), estimated_time=0.05, seed=13) as emu:
        env = _env(emu, lease=30)
        first = await anyio.run_process(_command(manifest), env=env, check=False)
        assert first.returncode == 0, first.stderr.decode()
        assert len(emu.tasks) == ROWS

        header, *rows = manifest.read_text().splitlines()
        rows.reverse()  # sorted the other way in a spreadsheet
        del rows[7]  # one deleted
        rows[3] = rows[3] + " (fixed)"  # one prompt fixed
        fixed = rows[3].split(",", 1)[1]
        rows.insert(0, "https://m.example/new.mp4,a new row")  # one inserted on top
        manifest.write_text("\n".join([header, *rows]) + "\n")

        again = await anyio.run_process(_command(manifest), env=env, check=False)
        assert again.returncode == 0, again.stderr.decode()
        summary = _summary(again.stdout)
        assert summary["completed"] == ROWS
        assert summary["found_done"] == ROWS - 2
        created = Counter(t.prompt for t in emu.tasks.values())
        assert len(emu.tasks) == ROWS + 2  # the new row and the fixed one, nothing else
        assert created["a new row"] == 1
        assert created[fixed] == 1
