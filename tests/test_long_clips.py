"""Long clips: split into segments of at most 10 s, each edited, stitched back into one
file; a kill -9 mid-clip and a rerun that submits only the segments not done
(docs/media.md#long-clips)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from aiohttp import web
from without_av import env_without_av

import omni_edit as oe
from omni_edit._media.render import make_clip
from omni_edit._media.segments import split_clip, stitch_clips
from omni_edit.emulator import Emulator, Fault

if TYPE_CHECKING:
    from conftest import EmulatorFactory, S3Server

av = pytest.importorskip("av", reason="needs the media extra: pip install -e '.[media]'")

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parents[1]
FPS = 24  # make_clip's frame rate
FAST = oe.PollPolicy(min_interval=0.02, max_interval=0.1)
PROMPT = "make it warm"

CHILD = """
import asyncio, sys
import omni_edit as oe

async def main() -> None:
    base_url, clip, out, journal = sys.argv[1:5]
    policy = oe.PollPolicy(min_interval=0.02, max_interval=0.1)
    async with oe.Client("long-key", base_url=base_url, poll=policy) as client:
        async for o in client.edit_many(
            [(clip, "make it warm")], download_dir=out, journal=journal
        ):
            print(o.ok, o.error, flush=True)

asyncio.run(main())
"""


def _facts(path: Path) -> tuple[float, bool]:
    """Duration (the video track's, from its frames) and whether there is sound."""
    with av.open(str(path)) as clip:
        video = clip.streams.video[0]
        end = 0.0
        for packet in clip.demux(video):
            if packet.pts is not None and packet.time_base is not None:
                duration = packet.duration or 0
                end = max(end, float((packet.pts + duration) * packet.time_base))
        return end, bool(clip.streams.audio)


@pytest.mark.parametrize(("mode", "seconds"), [("copy", 25.0), ("encode", 10.5)])
def test_split_and_stitch_keep_the_length_within_a_frame_per_cut(
    tmp_path: Path, mode: str, seconds: float
) -> None:
    source = tmp_path / "long.mp4"
    source.write_bytes(make_clip(seconds, width=96, height=64))
    (tmp_path / "parts").mkdir()
    parts = split_clip(source, tmp_path / "parts", mode=mode)  # type: ignore[arg-type]
    assert len(parts) == (3 if seconds == 25.0 else 2)
    lengths = [_facts(p) for p in parts]
    assert all(length <= 10.0 and sound for length, sound in lengths)
    joined = stitch_clips(parts, tmp_path / "joined.mp4", mode=mode)  # type: ignore[arg-type]
    length, sound = _facts(joined)
    assert sound
    assert abs(length - seconds) <= (len(parts) - 1) / FPS + 1e-6
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


async def test_without_storage_a_long_clip_fails_at_once_saying_so(
    make_emulator: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMNI_EDIT_STORAGE", raising=False)
    emu = await make_emulator()
    clip = tmp_path / "long.mp4"
    clip.write_bytes(make_clip(10.5, width=96, height=64))
    async with oe.Client("k", base_url=emu.base_url) as client:
        outcomes = [o async for o in client.edit_many([(str(clip), PROMPT)], download_dir=tmp_path)]
        refused = [
            o
            async for o in client.edit_many(
                [(str(clip), PROMPT)], download_dir=tmp_path, split=False
            )
        ]
    assert isinstance(outcomes[0].error, oe.ValidationError)
    assert outcomes[0].error.field == "storage"
    assert str(outcomes[0].error).startswith("the clip is over 10 s, so it is edited in segments")
    assert "over 10 s" not in str(refused[0].error)
    assert emu.tasks == {}


def _env(s3_server: S3Server, bucket: str) -> dict[str, str]:
    return {
        **os.environ,
        "OMNI_EDIT_STORAGE": f"s3://{bucket}/segments",
        "OMNI_EDIT_STORAGE_ENDPOINT": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": "AKIDLONG",
        "AWS_SECRET_ACCESS_KEY": "long-secret",
        # The killed run's leases lapse in 1.5 s: its rerun takes the clip over at once.
        "OMNI_EDIT_JOURNAL_LEASE_SECONDS": "1.5",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }


def _creates(emu: Emulator) -> int:
    return sum(1 for r in emu.stats.requests if r.method == "POST")


async def _finish_two_then_hold_the_third(emu: Emulator) -> None:
    """Complete the first two segments' tasks; hold the third's create unanswered."""
    done: set[str] = set()
    while len(done) < 2:
        for task in list(emu.tasks.values()):
            if task.id not in done and task.status in ("pending", "processing"):
                if len(done) == 1:
                    # Queued before the second completes: the third create comes after.
                    emu.inject(Fault.delay(60), method="POST")
                emu.complete(task.id)
                done.add(task.id)
        await anyio.sleep(0.01)
    # The third create is handled (its task made), its answer held: the kill lands then.
    while _creates(emu) < 3 or len(emu.tasks) < 3:
        await anyio.sleep(0.01)


async def _finish_all(emu: Emulator) -> None:
    while True:
        for task in list(emu.tasks.values()):
            if task.status in ("pending", "processing"):
                emu.complete(task.id)
        await anyio.sleep(0.01)


async def test_a_25s_clip_is_edited_in_three_segments_and_resumed_after_kill_9(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.bucket("long-clips")
    clip = tmp_path / "long.mp4"
    clip.write_bytes(make_clip(25.0))
    out, journal = tmp_path / "out", tmp_path / "journal.sqlite"
    env = _env(s3_server, bucket)
    for name in ("OMNI_EDIT_STORAGE", "OMNI_EDIT_STORAGE_ENDPOINT", "AWS_ACCESS_KEY_ID"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", env["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("OMNI_EDIT_JOURNAL_LEASE_SECONDS", "1.5")
    # Tasks end only when the test says: the kill lands after the second segment.
    async with Emulator(real_results=True, processing_time=(600, 600)) as emu:
        argv = [sys.executable, "-c", CHILD, emu.base_url, str(clip), str(out), str(journal)]
        async with await anyio.open_process(argv, env=env) as child:
            with anyio.fail_after(60):
                await _finish_two_then_hold_the_third(emu)
            child.send_signal(signal.SIGKILL)
            await child.wait()
        assert len(emu.tasks) == 3  # the held create was handled; its answer never came
        assert len(s3_server.object_names(bucket)) == 3
        before = _creates(emu)

        uploaded: list[int] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_finish_all, emu)
            async with oe.Client("long-key", base_url=emu.base_url, poll=FAST) as client:
                with anyio.fail_after(60):
                    outcomes = [
                        o
                        async for o in client.edit_many(
                            [(str(clip), PROMPT)],
                            download_dir=out,
                            journal=journal,
                            on_progress=lambda p: uploaded.append(p.uploaded),
                        )
                    ]
            tg.cancel_scope.cancel()

        # The rerun sent one create, the third segment's (its recorded key, replayed),
        # uploaded nothing, and made no task.
        assert _creates(emu) - before == 1
        assert len(emu.tasks) == 3
        assert max(uploaded, default=0) == 0
        assert len(s3_server.object_names(bucket)) == 3
        [outcome] = outcomes
        assert outcome.path is not None

        # The stitched file lost: a rerun stitches it again from the segments' tasks,
        # submitting nothing.
        stitched = outcome.path.read_bytes()
        outcome.path.unlink()
        async with oe.Client("long-key", base_url=emu.base_url, poll=FAST) as client:
            with anyio.fail_after(60):
                again = [
                    o
                    async for o in client.edit_many(
                        [(str(clip), PROMPT)], download_dir=out, journal=journal
                    )
                ]
        assert _creates(emu) - before == 1
        assert again[0].ok, again[0].error
        assert again[0].path == outcome.path
        assert outcome.path.read_bytes() == stitched
    [outcome] = outcomes
    assert outcome.ok, outcome.error
    assert len(outcome.segments) == 3
    assert outcome.task is not None
    assert outcome.task.id == outcome.segments[-1].id
    assert outcome.path is not None
    assert outcome.path.parent == out
    length, sound = _facts(outcome.path)
    assert sound
    assert abs(length - 25.0) <= 2 / FPS + 1e-6
    # The segments' working folder is gone once the clip is stitched.
    assert [p.name for p in out.iterdir()] == [outcome.path.name]


_REFUSED = """
import asyncio, sys
import omni_edit as oe

async def main() -> None:
    # Nothing listens there: the refusal comes before any request.
    async with oe.Client("k", base_url="http://127.0.0.1:9") as client:
        async for o in client.edit_many([(sys.argv[1], "warm")], download_dir=sys.argv[2]):
            print(type(o.error).__name__, o.error)

asyncio.run(main())
"""


async def test_without_the_extra_a_long_clip_is_refused_naming_it(tmp_path: Path) -> None:
    clip = tmp_path / "long.mp4"
    clip.write_bytes(make_clip(10.5, width=96, height=64))
    env = env_without_av(tmp_path)
    with anyio.fail_after(30):
        done = await anyio.run_process(
            [sys.executable, "-c", _REFUSED, str(clip), str(tmp_path)], env=env
        )
    line = done.stdout.decode().strip()
    assert line.startswith("ValidationError editing a clip over 10 s in segments needs the media")
    assert "pip install 'omni-edit[media]'" in line


async def test_the_dry_run_counts_the_segments_a_long_clip_makes(
    make_emulator: EmulatorFactory, s3_server: S3Server, tmp_path: Path
) -> None:
    emu = await make_emulator()
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "long.mp4").write_bytes(make_clip(25.0, width=96, height=64))
    (clips / "short.mp4").write_bytes(make_clip(2.0, width=96, height=64))
    env = {
        **_env(s3_server, "unused"),
        "OMNI_EDIT_API_KEY": "k",
        "OMNI_EDIT_BASE_URL": emu.base_url,
    }
    argv = [sys.executable, "-m", "omni_edit", "batch", str(clips), "--prompt", "warm"]
    with anyio.fail_after(30):
        done = await anyio.run_process([*argv, "--dry-run"], env=env, check=False)
        refused = await anyio.run_process([*argv, "--dry-run", "--no-split"], env=env, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert "accepted   2, with 27.0 s of input video in all" in out
    assert "tasks      4: clips over 10 s are edited in segments" in out
    assert refused.returncode == 1
    assert "the clip is 25.00 s long" in refused.stderr.decode()
    assert emu.tasks == {}


async def test_the_edit_command_edits_a_long_clip_in_segments(
    make_emulator: EmulatorFactory, s3_server: S3Server, tmp_path: Path
) -> None:
    emu = await make_emulator(real_results=True, processing_time=(0.05, 0.1))
    clip = tmp_path / "long.mp4"
    clip.write_bytes(make_clip(10.5, width=96, height=64))
    env = {
        **_env(s3_server, s3_server.bucket("long-edit")),
        "OMNI_EDIT_API_KEY": "k",
        "OMNI_EDIT_BASE_URL": emu.base_url,
    }
    argv = [sys.executable, "-m", "omni_edit", "--json", "edit", str(clip), "--prompt", "warm"]
    with anyio.fail_after(60):
        done = await anyio.run_process([*argv, "--out", str(tmp_path / "o.mp4")], env=env)
    printed = json.loads(done.stdout)
    assert printed["output"] == str(tmp_path / "o.mp4")
    assert len(printed["segments"]) == 2
    assert printed["task_id"] == printed["segments"][-1]
    length, sound = _facts(tmp_path / "o.mp4")
    assert sound
    assert abs(length - 10.5) <= 1 / FPS + 1e-6


@contextlib.asynccontextmanager
async def _serve_clip(clip: Path) -> AsyncIterator[tuple[str, list[str | None]]]:
    """The clip at a loopback URL (Range requests honoured); each request's Range
    header, or None for a whole-file GET, is listed."""
    ranges: list[str | None] = []

    async def serve(request: web.Request) -> web.StreamResponse:
        # No API key ever reaches the clip's host.
        assert "Authorization" not in request.headers
        ranges.append(request.headers.get("Range"))
        return web.FileResponse(clip)

    app = web.Application()
    app.router.add_get("/long.mp4", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/long.mp4", ranges
    finally:
        await runner.cleanup()


async def test_a_25s_clip_at_a_url_is_downloaded_split_and_stitched_and_never_fetched_again(
    make_emulator: EmulatorFactory,
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = await make_emulator(real_results=True, processing_time=(0.05, 0.1))
    source = tmp_path / "long.mp4"
    source.write_bytes(make_clip(25.0, width=96, height=64))
    out, journal = tmp_path / "out", tmp_path / "journal.sqlite"

    async def edit(url: str, max_download_bytes: int = 10**8) -> oe.EditOutcome:
        async with oe.Client(
            "url-key", base_url=emu.base_url, poll=FAST, max_download_bytes=max_download_bytes
        ) as client:
            with anyio.fail_after(30):
                [outcome] = [
                    o
                    async for o in client.edit_many(
                        # Preflight reads the clip's header: that is how its length is
                        # known before anything is billed.
                        [(url, PROMPT)],
                        download_dir=out,
                        journal=journal,
                        preflight=True,
                    )
                ]
        return outcome

    async with _serve_clip(source) as (url, ranges):
        # Without a storage: refused at once, having read only the clip's header.
        monkeypatch.delenv("OMNI_EDIT_STORAGE", raising=False)
        refused = await edit(url)
        assert isinstance(refused.error, oe.ValidationError)
        assert refused.error.field == "storage"
        assert emu.tasks == {}
        assert None not in ranges

        env = _env(s3_server, s3_server.bucket("long-urls"))
        for name in ("OMNI_EDIT_STORAGE", "OMNI_EDIT_STORAGE_ENDPOINT", "AWS_ACCESS_KEY_ID"):
            monkeypatch.setenv(name, env[name])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", env["AWS_SECRET_ACCESS_KEY"])
        # A clip over the client's download cap: stopped, nothing billed.
        capped = await edit(url, max_download_bytes=4096)
        assert isinstance(capped.error, oe.DownloadError)
        assert "could not download the clip http://127.0.0.1:" in str(capped.error)
        assert emu.tasks == {}
        assert ranges.count(None) == 1

        # The failures were free to retry: this run edits it.
        outcome = await edit(url)
        assert outcome.ok, outcome.error
        assert ranges.count(None) == 2  # downloaded once, to split it
        assert len(outcome.segments) == 3
        assert len(emu.tasks) == 3
        assert outcome.path is not None
        length, sound = _facts(outcome.path)
        assert sound
        assert abs(length - 25.0) <= 2 / FPS + 1e-6
        # The download and the segments are gone with the working folder.
        assert [p.name for p in out.iterdir()] == [outcome.path.name]

        # A rerun finds it done: nothing created, nothing read from the clip's host.
        seen = len(ranges)
        again = await edit(url)
        assert again.ok, again.error
        assert again.resumed
        assert len(ranges) == seen
        # The stitched file lost: stitched again from the segments' results, the clip
        # itself not downloaded again (its header is read, to count the segments).
        stitched = outcome.path.read_bytes()
        outcome.path.unlink()
        restored = await edit(url)
        assert restored.ok, restored.error
        assert outcome.path.read_bytes() == stitched
        assert ranges.count(None) == 2
        assert len(emu.tasks) == 3


async def test_the_dry_run_counts_the_segments_of_a_long_clip_at_a_url(
    make_emulator: EmulatorFactory, s3_server: S3Server, tmp_path: Path
) -> None:
    emu = await make_emulator()
    source = tmp_path / "long.mp4"
    source.write_bytes(make_clip(25.0, width=96, height=64))
    manifest = tmp_path / "manifest.csv"
    env = {
        **_env(s3_server, "unused"),
        "OMNI_EDIT_API_KEY": "k",
        "OMNI_EDIT_BASE_URL": emu.base_url,
    }
    async with _serve_clip(source) as (url, ranges):
        manifest.write_text(f"video_url,prompt\n{url},warm\n")
        argv = [sys.executable, "-m", "omni_edit", "batch", str(manifest), "--dry-run"]
        with anyio.fail_after(30):
            done = await anyio.run_process(argv, env=env, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert "accepted   1, with 25.0 s of input video in all" in out
    assert "tasks      3: clips over 10 s are edited in segments" in out
    assert None not in ranges  # the header only: nothing downloaded
    assert emu.tasks == {}
