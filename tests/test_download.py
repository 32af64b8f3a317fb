"""download(): streamed, resumed, verified, atomic, and credential-free at the result host."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import anyio
import pytest
from aiohttp import web

import omni_edit as oe
from omni_edit._http import download
from omni_edit.emulator import Emulator, Fault

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory

pytestmark = pytest.mark.anyio

KEY = "sk-test-download-SECRET"
CLIP = "https://media.example.com/clip.mp4"
SIZE = 200_000
REPO_ROOT = Path(__file__).resolve().parents[1]
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


# --- hostile result hosts: a purpose-built server ------------------------------------------

MP4_START = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    """A result host misbehaving in the way each path names; its base URL."""

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = 4096
        await response.prepare(request)
        await response.write(MP4_START)
        while True:
            await asyncio.sleep(0.05)
            await response.write(b"..")

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        await response.prepare(request)  # no length: chunked, and never ends
        await response.write(MP4_START)
        block = bytes(64 * 1024)
        while True:
            await response.write(block)

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = 50 * 1024**3
        await response.prepare(request)
        await response.write(MP4_START)
        await asyncio.sleep(10)
        return response

    async def html(request: web.Request) -> web.Response:
        return web.Response(
            text="<html><body>Please log in</body></html>", content_type="text/html"
        )

    async def html_as_binary(request: web.Request) -> web.Response:
        page = b"<!DOCTYPE html><html><body>Access denied</body></html>"
        return web.Response(body=page, content_type="application/octet-stream")

    async def to_file(request: web.Request) -> web.Response:
        raise web.HTTPFound("file:///etc/passwd")

    async def video(request: web.Request) -> web.Response:
        return web.Response(body=MP4_START + bytes(1000), content_type="video/mp4")

    app = web.Application()
    for name, handler in (
        ("drip", drip),
        ("endless", endless),
        ("huge", huge),
        ("html", html),
        ("html-as-binary", html_as_binary),
        ("to-file", to_file),
        ("video", video),
    ):
        app.router.add_get(f"/{name}.mp4", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
async def bare(make_emulator: EmulatorFactory, make_client: ClientFactory) -> oe.Client:
    # No API request is made: downloads of bare URLs go to the result host only.
    emu = await make_emulator()
    return await make_client(emu, KEY, download_timeout=0.5, max_download_bytes=300_000)


async def test_a_host_dripping_bytes_is_cut_off_at_the_deadline(
    bare: oe.Client, hostile: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(oe.DownloadError, match=r"not finished within 0\.5 s"):
        await bare.download(f"{hostile}/drip.mp4", tmp_path / "clip.mp4")
    assert time.monotonic() - started < 2
    assert list(tmp_path.iterdir()) == []


async def test_an_endless_body_stops_at_the_size_cap(
    bare: oe.Client, hostile: str, tmp_path: Path
) -> None:
    with pytest.raises(oe.DownloadError, match="over 300000 bytes"):
        await bare.download(f"{hostile}/endless.mp4", tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []


async def test_an_announced_length_over_the_cap_is_refused_before_reading(
    bare: oe.Client, hostile: str, tmp_path: Path
) -> None:
    with pytest.raises(oe.DownloadError, match="over 300000 bytes"):
        await bare.download(f"{hostile}/huge.mp4", tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["html", "html-as-binary"])
async def test_an_html_page_is_not_saved_as_a_video(
    bare: oe.Client, hostile: str, tmp_path: Path, path: str
) -> None:
    with pytest.raises(oe.DownloadError, match="not a video") as caught:
        await bare.download(f"{hostile}/{path}.mp4", tmp_path / "clip.mp4")
    assert "attempts" not in str(caught.value)  # refused at once, not retried
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "link",
    ["file:///etc/passwd", "javascript:alert(1)", "data:video/mp4;base64,AAAA", "ftp://x/y.mp4"],
)
async def test_a_result_link_that_is_not_http_fails_at_once(
    bare: oe.Client, tmp_path: Path, link: str
) -> None:
    task = oe.Task(id="task-unified-1-hostile", status=oe.TaskStatus.COMPLETED, results=(link,))
    started = time.monotonic()
    with pytest.raises(oe.DownloadError, match="not an http"):
        await bare.download(task, tmp_path / "clip.mp4")
    assert time.monotonic() - started < 0.2
    assert list(tmp_path.iterdir()) == []


async def test_a_redirect_to_a_file_url_fails_at_once(
    bare: oe.Client, hostile: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(oe.DownloadError, match="not http"):
        await bare.download(f"{hostile}/to-file.mp4", tmp_path / "clip.mp4")
    assert time.monotonic() - started < 0.2


async def test_a_video_from_the_same_host_is_saved(
    bare: oe.Client, hostile: str, tmp_path: Path
) -> None:
    path = await bare.download(f"{hostile}/video.mp4", tmp_path / "clip.mp4")
    assert path.read_bytes().startswith(MP4_START)


async def test_a_rerun_after_kill_9_mid_download_leaves_no_part_file(
    bare: oe.Client, hostile: str, tmp_path: Path
) -> None:
    dest = tmp_path / "clip.mp4"
    script = (
        "import asyncio, sys, omni_edit\n"
        "async def main():\n"
        "    async with omni_edit.Client('k', base_url='http://127.0.0.1:9') as c:\n"
        "        await c.download(sys.argv[1], sys.argv[2])\n"
        "asyncio.run(main())\n"
    )
    command = [sys.executable, "-c", script, f"{hostile}/drip.mp4", str(dest)]
    async with await anyio.open_process(command, cwd=REPO_ROOT) as process:
        try:
            with anyio.fail_after(10):
                while not _leftovers(tmp_path):
                    await anyio.sleep(0.02)
        finally:
            process.kill()  # SIGKILL: no cleanup of any kind runs
            await process.wait()
    assert _leftovers(tmp_path) == [".clip.mp4.part"]
    await bare.download(f"{hostile}/video.mp4", dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
