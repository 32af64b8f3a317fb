"""The ``omni-edit`` command line, run as the installed console script against an
in-process emulator (and a local static server for the media it must probe)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from by_hand import finish_tasks_by_hand

import omni_edit as oe
from omni_edit.emulator import Emulator

if TYPE_CHECKING:
    from conftest import EmulatorFactory

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
# The command line of this checkout (PYTHONPATH below), whatever is installed.
OMNI_EDIT = [sys.executable, "-m", "omni_edit"]
# Runs the command after it with Ctrl-C handled as in a terminal. A shell without job
# control starts background jobs with SIGINT ignored, and the ignore is inherited: a
# test suite run as `... &` would otherwise send a SIGINT nobody hears.
_DEFAULT_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL);"
    " os.execv(sys.argv[1], sys.argv[1:])",
]
KEY = "sk-cli-test-SECRET"


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator(processing_time=(0.05, 0.3), estimated_time=0.2, seed=7)


def _env(emu: Emulator | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNI_EDIT_", "EVOLINK_"))}
    if emu is not None:
        env.update(OMNI_EDIT_API_KEY=KEY, OMNI_EDIT_BASE_URL=emu.base_url)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


async def _run(*args: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str, str]:
    with anyio.fail_after(30):
        result = await anyio.run_process([*OMNI_EDIT, *args], env=env, cwd=cwd, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def _manifest(path: Path, rows: list[str], header: str = "video_url,prompt") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _read_report(path: Path) -> dict[int, dict[str, str]]:
    with open(path, newline="") as file:
        return {int(row["line"]): row for row in csv.DictReader(file)}


# --- one task ----------------------------------------------------------------------------


async def test_edit_saves_the_result_and_exits_0(emu: Emulator, media: str, tmp_path: Path) -> None:
    out = tmp_path / "warm.mp4"
    code, stdout, stderr = await _run(
        "edit", f"{media}/clip_9_9s.mp4", "--prompt", "Make it warmer", "--out", str(out),
        env=_env(emu),
    )  # fmt: skip
    assert code == 0, stderr
    assert out.stat().st_size > 0
    assert f"saved {out}" in stdout
    assert "completed" in stderr
    assert "\r" not in stderr


async def test_a_failed_edit_exits_1_with_one_friendly_line(media: str, tmp_path: Path) -> None:
    async with Emulator(
        processing_time=(0.05, 0.1), failure_rate=1.0, failure_codes=("content_policy_violation",)
    ) as emu:
        code, _, stderr = await _run(
            "edit", f"{media}/clip_9_9s.mp4", "--prompt", "x", env=_env(emu), cwd=tmp_path
        )
    assert code == 1
    assert "content_policy_violation" in stderr
    assert "Traceback" not in stderr
    assert not list(tmp_path.iterdir())


async def test_edit_reads_the_clip_header_first_unless_told_not_to(
    emu: Emulator, media: str, tmp_path: Path
) -> None:
    args = ["edit", f"{media}/clip_10_1s.mp4", "--prompt", "Warmer"]
    code, _, stderr = await _run(*args, "--no-split", env=_env(emu), cwd=tmp_path)
    assert code == 2
    assert "the clip is 10.10 s long" in stderr
    # Split (the default), it would be edited in segments: that needs a storage.
    code, _, stderr = await _run(*args, env=_env(emu), cwd=tmp_path)
    assert code == 2
    assert "the clip is over 10 s, so it is edited in segments" in stderr
    assert not [r for r in emu.stats.requests if r.method == "POST"]  # nothing billed

    await _run(*args, "--no-preflight", env=_env(emu), cwd=tmp_path)
    assert [r.method for r in emu.stats.requests].count("POST") == 1


async def test_edit_and_wait_refuse_to_overwrite_a_file_unless_forced(
    emu: Emulator, media: str, tmp_path: Path
) -> None:
    out = tmp_path / "warm.mp4"
    out.write_text("mine")
    edit = ["edit", f"{media}/clip_9_9s.mp4", "--prompt", "Warmer", "--out", str(out)]
    code, _, stderr = await _run(*edit, env=_env(emu))
    assert code == 2
    assert stderr == (
        f"omni-edit: error: {out} already exists: pass --force to overwrite it, or choose"
        " another --out\n"
    )
    assert not emu.stats.requests  # refused before anything was billed
    assert out.read_text() == "mine"

    code, _, stderr = await _run(*edit, "--force", env=_env(emu))
    assert code == 0, stderr
    assert out.read_bytes() != b"mine"

    async with oe.Client(KEY, base_url=emu.base_url) as client:
        task = await client.submit("https://m.example/a.mp4", "Cooler")
    (tmp_path / f"{task.id}.mp4").write_text("mine too")
    for target in (out, tmp_path):  # a file, and a folder where the task's file is
        code, _, stderr = await _run("wait", task.id, "--out", str(target), env=_env(emu))
        assert code == 2
        assert "already exists: pass --force" in stderr
    code, _, stderr = await _run("wait", task.id, "--out", str(tmp_path), "--force", env=_env(emu))
    assert code == 0, stderr
    assert (tmp_path / f"{task.id}.mp4").read_bytes() != b"mine too"


async def test_status_shows_a_task_and_wait_saves_its_result(emu: Emulator, tmp_path: Path) -> None:
    async with oe.Client(KEY, base_url=emu.base_url) as client:
        task = await client.submit("https://m.example/a.mp4", "Make it warmer")
    code, stdout, _ = await _run("status", task.id, "--json", env=_env(emu))
    assert code == 0
    assert json.loads(stdout)["task_id"] == task.id

    out = tmp_path / "result.mp4"
    code, stdout, stderr = await _run("wait", task.id, "--out", str(out), env=_env(emu))
    assert code == 0, stderr
    assert out.stat().st_size > 0
    code, stdout, _ = await _run("status", task.id, env=_env(emu))
    assert code == 0
    assert f"{task.id}  completed  100%" in stdout


async def test_status_of_an_unknown_task_is_a_friendly_error(emu: Emulator) -> None:
    code, _, stderr = await _run("status", "task-unified-1-nosuch", env=_env(emu))
    assert code == 1
    assert stderr.startswith("omni-edit: error: not found (HTTP 404)")
    assert "Traceback" not in stderr


# --- batch -------------------------------------------------------------------------------


async def test_batch_reports_bad_rows_by_line_and_edits_the_others(
    emu: Emulator, media: str, tmp_path: Path
) -> None:
    manifest = _manifest(
        tmp_path / "clips.csv",
        [
            f"{media}/clip_9_9s.mp4,Make it warmer",
            f"{media}/clip_9_9s.mp4,",  # line 3: no prompt
            "ftp://m.example/a.mp4,Make it cooler",  # line 4: not http(s)
            # line 5: over 10 s, found by preflight; split, it needs a storage.
            f"{media}/clip_10_1s.mp4,Make it warmer",
            f'{media}/clip_9_9s.mp4,"A prompt on',  # lines 6-7: one row, two lines
            'two lines"',
            f"{media}/clip_9_9s.mp4,Film look,mine.mp4",  # line 8: its own output
        ],
        header="video_url,prompt,output",
    )
    report = tmp_path / "report.csv"
    code, stdout, stderr = await _run(
        "batch", str(manifest), "--report", str(report), env=_env(emu)
    )
    assert code == 1
    assert "manifest line 3: prompt is missing or empty" in stderr
    assert "manifest line 4: video_url must start with http:// or https://" in stderr
    assert "manifest line 5: invalid: the clip is over 10 s, so it is edited in segments" in stderr
    assert "3 of 6 inputs completed; 3 invalid" in stdout
    # The progress names the invalid rows as the summary does, not as failures.
    assert stderr.splitlines()[-1].startswith("3/6 done, 0 failed, 3 invalid, 0 running,")

    rows = _read_report(report)
    assert {line: row["status"] for line, row in rows.items()} == {
        2: "completed",
        3: "invalid",
        4: "invalid",
        5: "invalid",
        6: "completed",
        8: "completed",
    }
    assert [rows[line]["index"] for line in sorted(rows)] == ["0", "1", "2", "3", "4", "5"]
    assert rows[3]["error_message"] == "prompt is missing or empty"
    assert rows[6]["prompt"] == "A prompt on\ntwo lines"
    assert rows[2]["task_id"].startswith("task-unified-")
    assert float(rows[2]["credits"]) > 0
    # A row's output is taken under the output folder, not the manifest's.
    assert Path(rows[8]["output"]) == tmp_path / "clips-results" / "mine.mp4"
    assert not (tmp_path / "mine.mp4").exists()
    for line in (2, 6, 8):
        assert Path(rows[line]["output"]).stat().st_size > 0
    # No create request for any of the bad rows.
    assert sorted(t.prompt for t in emu.tasks.values()) == [
        "A prompt on\ntwo lines",
        "Film look",
        "Make it warmer",
    ]
    assert (tmp_path / "clips.csv.journal.sqlite").exists()
    assert len(list((tmp_path / "clips-results").iterdir())) == 3


async def test_a_row_output_is_saved_under_the_out_dir_not_the_manifest_folder(
    emu: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "lists").mkdir()
    manifest = _manifest(
        tmp_path / "lists" / "m.csv",
        ["https://m.example/a.mp4,Warmer,mine.mp4", "https://m.example/b.mp4,Cooler,sub/b.mp4"],
        header="video_url,prompt,output",
    )
    out_dir = tmp_path / "results"
    code, _, stderr = await _run(
        "batch", str(manifest), "--no-preflight", "--out-dir", str(out_dir), env=_env(emu)
    )
    assert code == 0, stderr
    assert (out_dir / "mine.mp4").stat().st_size > 0
    assert (out_dir / "sub" / "b.mp4").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "lists").iterdir()) == [
        "m.csv",
        "m.csv.journal.sqlite",
    ]


def _outputs_refused(tmp_path: Path) -> dict[str, str]:
    """Row outputs that would write outside the output folder or could not be saved,
    each with the words its refusal must say."""
    return {
        "../../victim.cfg": "inside the output folder",
        "sub/../../x.mp4": "inside the output folder",
        str(tmp_path / "abs.mp4"): "inside the output folder",
        "~/x.mp4": "inside the output folder",
        "~": "inside the output folder",
        "bad\x00name.mp4": "NUL",
        "n" * 300 + ".mp4": "longer than 223 bytes",
        "\u00e9" * 128: "longer than 223 bytes",  # 128 characters, 256 bytes
        "d" * 256 + "/x.mp4": "longer than 255 bytes",
        "d/" * 2100 + "x.mp4": "path longer than the file system takes",
        "link/x.mp4": "through a link",
        "taken": "is a folder",
        ".": "names no file",
    }


def _hostile_out_dir(tmp_path: Path) -> Path:
    out_dir = tmp_path / "a" / "b"
    (out_dir / "taken").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (out_dir / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "victim.cfg").write_text("precious")
    return out_dir


def test_manifest_refuses_outputs_outside_the_out_dir_or_too_long(tmp_path: Path) -> None:
    from omni_edit._cli.manifest import Manifest

    out_dir = _hostile_out_dir(tmp_path)
    refused = _outputs_refused(tmp_path)
    good = ["ok.mp4", "sub/ok.mp4", "\u00e9" * 100 + ".mp4", "a~b.mp4", "./dot.mp4"]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"video_url": "https://m.example/a.mp4", "prompt": str(i), "output": out})
            + "\n"
            for i, out in enumerate([*refused, *good])
        )
    )
    rows = list(Manifest(manifest, out_dir=out_dir).rows())
    assert len(rows) == len(refused) + len(good)
    for row, (output, words) in zip(rows, refused.items(), strict=False):
        assert row.problem is not None, output
        assert words in row.problem, (output, row.problem)
        assert row.problem.startswith("output '"), row.problem
        assert row.output is None
    for row, output in zip(rows[len(refused) :], good, strict=True):
        assert row.problem is None, (output, row.problem)
        assert row.output is not None
        assert row.output.resolve().is_relative_to(out_dir.resolve())


async def test_batch_refuses_rows_that_would_write_outside_the_out_dir_before_billing(
    emu: Emulator, tmp_path: Path
) -> None:
    out_dir = _hostile_out_dir(tmp_path)
    refused = _outputs_refused(tmp_path)
    inputs = [*refused, "fine.mp4", None]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"video_url": "https://m.example/a.mp4", "prompt": f"p{i}", "output": out})
            + "\n"
            for i, out in enumerate(inputs)
        )
    )
    report = tmp_path / "report.jsonl"
    code, stdout, stderr = await _run(
        "batch", str(manifest), "--no-preflight", "--out-dir", str(out_dir),
        "--report", str(report), env=_env(emu),
    )  # fmt: skip
    assert code == 1
    assert "Traceback" not in stderr
    for line in range(1, len(refused) + 1):
        assert f"manifest line {line}: output '" in stderr
    assert f"2 of {len(inputs)} inputs completed; {len(refused)} invalid" in stdout
    statuses = [json.loads(text)["status"] for text in report.read_text().splitlines()]
    assert sorted(statuses) == sorted(["invalid"] * len(refused) + ["completed"] * 2)
    # Nothing billed for a refused row, nothing written outside the output folder.
    assert sorted(t.prompt for t in emu.tasks.values()) == [
        f"p{len(refused)}",
        f"p{len(refused) + 1}",
    ]
    assert (tmp_path / "victim.cfg").read_text() == "precious"
    assert not list((tmp_path / "elsewhere").iterdir())
    assert not (tmp_path / "abs.mp4").exists()
    assert (out_dir / "fine.mp4").stat().st_size > 0


@pytest.mark.parametrize("replay", [True, False])
async def test_batch_replays_lost_creates_unless_told_not_to(
    make_emulator: EmulatorFactory, tmp_path: Path, replay: bool
) -> None:
    emu = await make_emulator(processing_time=(0.05, 0.1), lost_create_rate=0.5, seed=2)
    rows = [f"https://m.example/{i}.mp4,edit {i}" for i in range(6)]
    manifest = _manifest(tmp_path / "m.csv", rows)
    flags = [] if replay else ["--no-replay-creates"]
    code, stdout, _ = await _run(
        "batch", str(manifest), "--no-preflight", "--json", *flags, env=_env(emu)
    )
    summary = json.loads(stdout.splitlines()[-1])
    assert len(emu.tasks) == 6  # one task per row, whatever was lost
    if replay:
        # Each lost answer was resolved by sending the same key again.
        assert (code, summary["completed"], summary["uncertain"]) == (0, 6, 0)
        assert emu.stats.replays >= 1
    else:
        assert code == 1
        assert summary["uncertain"] >= 1
        assert summary["completed"] + summary["uncertain"] == 6
        assert emu.stats.replays == 0


async def test_batch_that_completes_everything_exits_0_with_plain_lines_off_a_terminal(
    emu: Emulator, tmp_path: Path
) -> None:
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"video_url": f"https://m.example/{i}.mp4", "prompt": f"edit {i}"}) + "\n"
            for i in range(6)
        )
    )
    report = tmp_path / "report.jsonl"
    out_dir = tmp_path / "out"
    code, stdout, stderr = await _run(
        "batch", str(manifest), "--no-preflight", "--out-dir", str(out_dir),
        "--report", str(report), env=_env(emu),
    )  # fmt: skip
    assert code == 0, stderr
    assert "\r" not in stderr
    assert stderr.splitlines()[-1].startswith("6/6 done, 0 failed, 0 running,")
    assert "credits" in stderr.splitlines()[-1]
    assert "6 of 6 inputs completed" in stdout
    assert len(list(out_dir.iterdir())) == 6
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == list(range(6))
    assert {r["status"] for r in rows} == {"completed"}


async def test_the_report_is_in_input_order_not_completion_order(tmp_path: Path) -> None:
    rows = [f"https://m.example/{i}.mp4,edit {i}" for i in range(6)]
    rows.insert(3, "https://m.example/bad.mp4,")  # invalid: its outcome comes first
    manifest = _manifest(tmp_path / "m.csv", rows)
    report = tmp_path / "report.csv"
    args = ["batch", str(manifest), "--no-preflight", "--report", str(report)]

    async def finish_in_reverse(emu: Emulator) -> None:
        with anyio.fail_after(20):
            while len(emu.tasks) < 6:
                await anyio.sleep(0.01)
        for task_id in reversed(list(emu.tasks)):
            emu.complete(task_id)
            await anyio.sleep(0.05)

    async with (
        Emulator(processing_time=(600, 600), estimated_time=0.2, seed=4) as emu,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(finish_in_reverse, emu)
        code, _, stderr = await _run(*args, env=_env(emu))
    assert code == 1, stderr
    with open(report, newline="") as file:
        written = list(csv.DictReader(file))
    assert [row["index"] for row in written] == [str(i) for i in range(7)]
    assert [row["line"] for row in written] == [str(i) for i in range(2, 9)]
    assert written[3]["status"] == "invalid"


async def test_batch_json_prints_an_object_per_outcome_and_a_summary(
    emu: Emulator, tmp_path: Path
) -> None:
    manifest = _manifest(
        tmp_path / "m.csv", ["https://m.example/a.mp4,Warmer", "https://m.example/b.mp4,"]
    )
    code, stdout, stderr = await _run(
        "--json", "batch", str(manifest), "--no-preflight", env=_env(emu)
    )
    assert code == 1
    events = [json.loads(line) for line in stdout.splitlines()]
    outcomes = {e["line"]: e for e in events if e["event"] == "outcome"}
    assert outcomes[2]["status"] == "completed"
    assert outcomes[3]["status"] == "invalid"
    assert events[-1]["event"] == "summary"
    assert events[-1]["completed"] == 1
    assert events[-1]["invalid"] == 1
    assert events[-1]["exit_code"] == 1
    assert "done," not in stderr  # no progress display in JSON mode


async def test_batch_without_an_api_key_exits_2(emu: Emulator, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "m.csv", ["https://m.example/a.mp4,Warmer"])
    env = _env(None, OMNI_EDIT_BASE_URL=emu.base_url)
    code, _stdout, stderr = await _run("batch", str(manifest), env=env)
    assert code == 2
    assert stderr == (
        "omni-edit: error: no API key: pass --api-key or set $OMNI_EDIT_API_KEY"
        " (`omni-edit demo` runs without one)\n"
    )
    assert not emu.stats.requests


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the manifest"),
        ("url,text\nhttps://m.example/a.mp4,x\n", "must start with a header row"),
        (b"video_url,prompt\n\xff\xfe,x\n", "not UTF-8"),
        ("video_url,prompt\n", "has no data rows"),
        ("", "is empty"),
        (" \n\n\t\n", "is empty"),
    ],
)
async def test_batch_of_an_unusable_manifest_exits_2(
    emu: Emulator, tmp_path: Path, content: str | bytes | None, message: str
) -> None:
    manifest = tmp_path / "m.csv"
    if isinstance(content, bytes):
        manifest.write_bytes(content)
    elif content is not None:
        manifest.write_text(content)
    code, _, stderr = await _run("batch", str(manifest), env=_env(emu))
    assert code == 2
    assert message in stderr
    assert len(stderr.splitlines()) == 1
    assert not emu.stats.requests


async def test_dry_run_totals_the_durations_and_submits_nothing(
    emu: Emulator, media: str, tmp_path: Path
) -> None:
    manifest = _manifest(
        tmp_path / "m.csv",
        [f"{media}/clip_9_9s.mp4,Warmer", f"{media}/clip_10_1s.mp4,Warmer"],
    )
    argv = ["batch", str(manifest), "--dry-run", "--no-split"]
    code, stdout, stderr = await _run(*argv, env=_env(emu))
    assert code == 1  # one clip would be refused
    assert "manifest line 3: the clip is 10.10 s long" in stderr
    assert "accepted   1, with 9.9 s of input video in all" in stdout
    assert "tokens     about 114,682 (57,341 in + 57,341 out" in stdout
    assert "roughly 202.6" in stdout
    assert "rough estimate" in stdout
    # With a key, the balance is read (and nothing else sent) and shown beside it.
    assert "balance    1,000,000,000.0 credits available: covers the estimate" in stdout
    assert [(r.method, r.path) for r in emu.stats.requests] == [("GET", "/v1/credits")]

    code, stdout, _ = await _run(
        "batch", str(manifest), "--dry-run", "--no-split", "--json",
        "--credits-per-1k-tokens", "2", env=_env(None),  # no key needed: nothing goes to the API
    )  # fmt: skip
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["input_seconds"] == pytest.approx(9.9)
    assert summary["credits_estimate"] == pytest.approx(114_682 * 2 / 1000, abs=0.01)
    assert summary["balance_available"] is None
    assert len(emu.stats.requests) == 1


async def test_messages_about_one_input_say_input_not_inputs(
    emu: Emulator, media: str, tmp_path: Path
) -> None:
    manifest = _manifest(tmp_path / "m.csv", [f"{media}/clip_9_9s.mp4,Warmer"])
    code, stdout, stderr = await _run("batch", str(manifest), "--dry-run", env=_env(emu))
    assert code == 0, stderr
    assert "Dry run of 1 input: nothing was submitted." in stdout
    code, stdout, stderr = await _run("batch", str(manifest), env=_env(emu))
    assert code == 0, stderr
    assert "1 of 1 input completed" in stdout


async def test_ctrl_c_keeps_the_journal_and_the_same_command_resumes(tmp_path: Path) -> None:
    n = 16
    manifest = _manifest(
        tmp_path / "m.csv", [f"https://m.example/{i}.mp4,edit {i}" for i in range(n)]
    )
    args = ["batch", str(manifest), "--no-preflight", "--concurrency", "4", "--json"]
    # Tasks that would run for ten minutes, finished by hand: however slow the machine,
    # the batch is still running when the signal comes.
    async with Emulator(processing_time=(600, 600), estimated_time=0.4, seed=3) as emu:
        env = _env(None, OMNI_EDIT_BASE_URL=emu.base_url)
        command = [*_DEFAULT_SIGINT, *OMNI_EDIT, *args, "--api-key", KEY]
        async with await anyio.open_process(command, env=env) as proc:
            assert proc.stdout is not None
            assert proc.stderr is not None
            seen = b""
            with anyio.fail_after(20):
                while len(emu.tasks) < 3:
                    await anyio.sleep(0.01)
                for task_id in list(emu.tasks)[:3]:
                    emu.complete(task_id)
                while seen.count(b'"event": "outcome"') < 3:
                    seen += await proc.stdout.receive()
            proc.send_signal(signal.SIGINT)
            try:
                with anyio.fail_after(20):
                    await proc.wait()
            except TimeoutError:
                proc.kill()  # fail now, rather than hang in the process's own aclose
                raise
            errors = b"".join([chunk async for chunk in proc.stderr]).decode()
        assert proc.returncode == 130
        assert "Interrupted; the journal is kept. Resume with: omni-edit batch" in errors
        assert "--concurrency 4" in errors
        assert KEY not in errors  # the hint never repeats the key
        assert "Traceback" not in errors
        assert (tmp_path / "m.csv.journal.sqlite").exists()
        created_before = len(emu.tasks)
        assert created_before < n

        async with anyio.create_task_group() as tg:
            tg.start_soon(finish_tasks_by_hand, emu)
            code, stdout, stderr = await _run(*args, "--api-key", KEY, env=env)
            tg.cancel_scope.cancel()
        assert code == 0, stderr
        assert json.loads(stdout.splitlines()[-1])["completed"] == n
        created = Counter(t.prompt for t in emu.tasks.values())
        assert sorted(created) == sorted(f"edit {i}" for i in range(n))
        assert max(created.values()) == 1


async def test_a_closed_stdout_ends_the_output_quietly_and_the_batch_completes(
    tmp_path: Path,
) -> None:
    """`omni-edit --json batch ... | head -5`: the reader goes after five lines."""
    n = 30
    manifest = _manifest(
        tmp_path / "m.csv", [f"https://m.example/{i}.mp4,edit {i}" for i in range(n)]
    )
    report = tmp_path / "report.jsonl"
    args = ["--json", "batch", str(manifest), "--no-preflight", "--report", str(report)]
    # Tasks end only when the test says, so the pipe is closed while most are running.
    async with Emulator(processing_time=(600, 600), estimated_time=0.2, seed=5) as emu:
        # Popen, not anyio's process: closing its stdout closes the pipe for real (and
        # starting it is quick, so it may block the loop a moment).
        proc = subprocess.Popen(  # noqa: ASYNC220
            [*OMNI_EDIT, *args], env=_env(emu), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            with anyio.fail_after(20):
                while len(emu.tasks) < 5:
                    await anyio.sleep(0.01)
                for task_id in list(emu.tasks)[:5]:
                    emu.complete(task_id)
                for _ in range(5):
                    await anyio.to_thread.run_sync(proc.stdout.readline)
            proc.stdout.close()
            async with anyio.create_task_group() as tg:
                tg.start_soon(finish_tasks_by_hand, emu)
                with anyio.fail_after(20):
                    await anyio.to_thread.run_sync(proc.wait)
                tg.cancel_scope.cancel()
        finally:
            proc.kill()
            proc.wait()
        errors = proc.stderr.read().decode()
        proc.stderr.close()
    assert proc.returncode == 0, errors
    assert errors == ""  # no traceback, no "Exception ignored ... BrokenPipeError"
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(row["index"] for row in rows) == list(range(n))
    assert {row["status"] for row in rows} == {"completed"}


async def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    manifest = _manifest(
        tmp_path / "m.csv", [f"https://m.example/{i}.mp4,edit {i}" for i in range(8)]
    )
    args = ["batch", str(manifest), "--no-preflight", "--concurrency", "4"]
    async with (
        Emulator(processing_time=(600, 600), estimated_time=0.4, seed=3) as emu,
        await anyio.open_process([*OMNI_EDIT, *args], env=_env(emu)) as proc,
    ):
        assert proc.stderr is not None
        with anyio.fail_after(20):
            while len(emu.tasks) < 4:
                await anyio.sleep(0.01)
        proc.terminate()
        try:
            with anyio.fail_after(20):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            raise
        errors = b"".join([chunk async for chunk in proc.stderr]).decode()
    assert proc.returncode == 143, errors
    assert errors.splitlines()[-1] == (
        "Interrupted; the journal is kept. Resume with: omni-edit " + " ".join(args)
    )
    assert "Traceback" not in errors
    assert (tmp_path / "m.csv.journal.sqlite").exists()


# --- the rest ----------------------------------------------------------------------------


def test_import_omni_edit_does_not_import_the_progress_bar() -> None:
    code = "import omni_edit, omni_edit._cli, sys; assert 'tqdm' not in sys.modules"
    assert os.spawnv(os.P_WAIT, sys.executable, [sys.executable, "-c", code]) == 0


async def test_global_options_work_after_the_command(emu: Emulator) -> None:
    env = _env(None)
    code, stdout, stderr = await _run(
        "status", "task-unified-1-nosuch", "--json", "--api-key", KEY, "--base-url", emu.base_url,
        env=env,
    )  # fmt: skip
    assert code == 1
    assert json.loads(stdout)["event"] == "error"
    assert KEY not in stdout + stderr


async def test_batch_with_a_refused_key_exits_2_with_one_line(tmp_path: Path) -> None:
    manifest = _manifest(
        tmp_path / "m.csv", [f"https://m.example/{i}.mp4,edit {i}" for i in range(3)]
    )
    async with Emulator(api_keys={"the-right-key"}) as emu:
        code, stdout, stderr = await _run("batch", str(manifest), "--no-preflight", env=_env(emu))
    assert code == 2
    assert stderr.count("HTTP 401") == 1
    assert stderr.splitlines()[-1].startswith(
        "omni-edit: error: the API refused the key (HTTP 401):"
        " check --api-key or $OMNI_EDIT_API_KEY (request id req-"
    )
    assert "0 of 3 inputs completed; 3 failed" in stdout
