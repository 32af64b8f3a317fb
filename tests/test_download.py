"""download(): streamed, resumed, verified, atomic, and credential-free at the result host."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import anyio
import pytest

import omni_edit as oe
from omni_edit._http import download
from omni_edit.emulator import Emulator, Fault

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory

pytestmark = pytest.mark.anyio

KEY = "sk-test-download-SECRET"
CLIP = "https://media.example.com/clip.mp4"
SIZE = 200_000
FAST = oe.PollPolicy(min_interval=0.02, max_interval=0.2)


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator(processing_time=(0.05, 0.1), result_size=SIZE, seed=5)


@pytest.fixture
async def client(make_client: ClientFactory, emu: Emulator) -> oe.Client:
    return await make_client(emu, KEY, poll=FAST)


@pytest.fixture
async def done(client: oe.Client) -> oe.Task:
    return await client.wait(await client.submit(CLIP, "warmer"))


async def _expected(emu: Emulator, task: oe.Task) -> bytes:
    assert task.result_url is not None
    async with aiohttp.ClientSession() as s, s.get(task.result_url) as r:
        return await r.read()


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


async def test_download_saves_the_whole_file(
    client: oe.Client, emu: Emulator, done: oe.Task, tmp_path: Path
) -> None:
    path = await client.download(done, tmp_path / "out" / "clip.mp4")
    assert path == tmp_path / "out" / "clip.mp4"
    data = path.read_bytes()
    assert len(data) == SIZE
    assert data == await _expected(emu, done)
    assert _leftovers(path.parent) == []


async def test_download_into_a_directory_names_the_file_after_the_task(
    client: oe.Client, done: oe.Task, tmp_path: Path
) -> None:
    path = await client.download(done, tmp_path)
    assert path == tmp_path / f"{done.id}.mp4"


async def test_no_credentials_reach_the_result_host(emu: Emulator, tmp_path: Path) -> None:
    # Even a caller's session with an Authorization header and cookies set must not leak.
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(
            headers={"Authorization": "Bearer leaked", "Cookie": "session=leaked"}, cookie_jar=jar
        ) as session,
        oe.Client(KEY, base_url=emu.base_url, poll=FAST, session=session) as c,
    ):
        task = await c.wait(await c.submit(CLIP, "warmer"))
        await c.download(task, tmp_path / "a.mp4")
    assert emu.stats.result_requests
    for record in emu.stats.result_requests:
        headers = {k.lower(): v for k, v in record.headers.items()}
        assert "authorization" not in headers
        assert "cookie" not in headers
        assert KEY not in repr(record)


async def test_no_credentials_follow_a_redirect(
    client: oe.Client, emu: Emulator, done: oe.Task, tmp_path: Path
) -> None:
    assert done.result_url is not None
    emu.inject_result(Fault.redirect(done.result_url.replace("127.0.0.2", "localhost")))
    path = await client.download(done, tmp_path / "r.mp4")
    assert path.stat().st_size == SIZE
    assert len(emu.stats.result_requests) == 2
    for record in emu.stats.result_requests:
        assert "authorization" not in {k.lower() for k in record.headers}


async def test_a_dropped_download_resumes_with_a_range_request(
    client: oe.Client, emu: Emulator, done: oe.Task, tmp_path: Path
) -> None:
    emu.inject_result(Fault.drop_after_bytes(70_000))
    path = await client.download(done, tmp_path / "clip.mp4")
    assert path.read_bytes() == await _expected(emu, done)
    ranges = [r.range for r in emu.stats.result_requests[:2]]
    assert ranges[0] is None
    assert ranges[1] is not None
    assert ranges[1].startswith("bytes=")
    assert int(ranges[1].split("=")[1].rstrip("-")) > 0


async def test_a_host_that_ignores_range_restarts_from_zero(
    client: oe.Client, emu: Emulator, done: oe.Task, tmp_path: Path
) -> None:
    emu.inject_result(Fault.drop_after_bytes(50_000))
    emu.inject_result(Fault.ignore_range())
    path = await client.download(done, tmp_path / "clip.mp4")
    assert path.read_bytes() == await _expected(emu, done)


async def test_repeated_drops_fail_without_leaving_any_file(
    client: oe.Client,
    emu: Emulator,
    done: oe.Task,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu.inject_result(Fault.drop_after_bytes(0), times=20)
    monkeypatch.setattr(download, "BACKOFF_CAP_SECONDS", 0.05)
    dest = tmp_path / "clip.mp4"
    with pytest.raises(oe.DownloadError, match="after 6 attempts"):
        await client.download(done, dest)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


async def test_an_expired_link_says_so(
    client: oe.Client, emu: Emulator, done: oe.Task, tmp_path: Path
) -> None:
    emu.expire_results(done.id)
    gets_before = sum(1 for r in emu.stats.requests if r.method == "GET")
    dest = tmp_path / "clip.mp4"
    with pytest.raises(oe.ResultExpiredError, match="24 hours"):
        await client.download(done, dest)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []
    # The task was re-read once for a fresh link, then the error: no loop.
    assert sum(1 for r in emu.stats.requests if r.method == "GET") == gets_before + 1
    assert len(emu.stats.result_requests) == 1


async def test_cancelling_a_download_leaves_no_temporary_file(
    client: oe.Client, emu: Emulator, done: oe.Task, tmp_path: Path
) -> None:
    emu.inject_result(Fault.drop_after_bytes(0), times=100)
    with anyio.move_on_after(0.3):
        await client.download(done, tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []


async def test_a_task_that_has_not_completed_cannot_be_downloaded(
    client: oe.Client, tmp_path: Path
) -> None:
    task = await client.submit(CLIP, "warmer")
    with pytest.raises(oe.ValidationError, match="wait"):
        await client.download(task, tmp_path / "x.mp4")
