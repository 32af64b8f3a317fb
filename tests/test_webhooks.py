"""Callbacks: handle_callback and the aiohttp receiver, with the emulator delivering."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
import anyio
import pytest
from aiohttp import web

import omni_edit as oe
from omni_edit.emulator import Emulator
from omni_edit.webhooks import CallbackReceiver

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory

pytestmark = pytest.mark.anyio

KEY = "sk-test-hooks"
CLIP = "https://media.example.com/clip.mp4"
# Polls so rare that only a callback can end a wait within the tests' time.
RARE = oe.PollPolicy(min_interval=30, max_interval=60, callback_interval=60)


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator(
        processing_time=(30, 30),
        allow_http_callbacks=True,
        callback_retry_delays=(0.05, 0.1, 0.2),
    )


@pytest.fixture
async def client(make_client: ClientFactory, emu: Emulator) -> oe.Client:
    return await make_client(emu, KEY, poll=RARE)


@pytest.fixture
async def hook_url(client: oe.Client) -> AsyncIterator[str]:
    app = web.Application()
    CallbackReceiver(client).setup(app, "/hook")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


def _gets(emu: Emulator, task_id: str) -> int:
    return sum(1 for r in emu.stats.requests if r.method == "GET" and task_id in r.path)


async def test_a_callback_wakes_a_waiter_within_100_ms(
    client: oe.Client, emu: Emulator, hook_url: str
) -> None:
    task = await client.submit(CLIP, "warmer", callback_url=hook_url)
    finished_at: list[float] = []

    async def finish_soon() -> None:
        await anyio.sleep(0.2)
        finished_at.append(time.monotonic())
        emu.complete(task.id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(finish_soon)
        with anyio.fail_after(5):
            done = await client.wait(task)
        woke = time.monotonic()
    assert done.status is oe.TaskStatus.COMPLETED
    assert woke - finished_at[0] < 0.1
    assert _gets(emu, task.id) == 1  # the verification; no poll was needed


async def test_a_forged_callback_changes_nothing(
    client: oe.Client, emu: Emulator, hook_url: str
) -> None:
    task = await client.submit(CLIP, "warmer", callback_url=hook_url)
    forged = {
        "id": task.id,
        "status": "completed",
        "progress": 100,
        "results": ["https://evil.example/planted.mp4"],
    }
    async with anyio.create_task_group() as tg:
        seen: list[oe.Task] = []

        async def waiter() -> None:
            seen.append(await client.wait(task))

        tg.start_soon(waiter)
        async with aiohttp.ClientSession() as s, s.post(hook_url, json=forged) as r:
            assert r.status == 200
        verified = await client.handle_callback(json.dumps(forged))
        assert verified.status is not oe.TaskStatus.COMPLETED
        assert "https://evil.example/planted.mp4" not in verified.results
        await anyio.sleep(0.1)
        assert seen == []
        tg.cancel_scope.cancel()


async def test_duplicate_callbacks_are_verified_once(client: oe.Client, emu: Emulator) -> None:
    task = await client.submit(CLIP, "warmer")
    emu.complete(task.id)
    body = json.dumps({"id": task.id, "status": "completed", "progress": 100}).encode()
    first = await client.handle_callback(body)
    for _ in range(3):
        assert await client.handle_callback(body) == first
    assert _gets(emu, task.id) == 1


async def test_unverified_callbacks_are_taken_as_given(client: oe.Client, emu: Emulator) -> None:
    body = {"id": "task-unified-1-trusted", "status": "processing", "progress": 40}
    task = await client.handle_callback(body, verify=False)
    assert task.progress == 40
    assert emu.stats.requests == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b'{"status": "completed"}', 400),
        (b"[1, 2]", 400),
        (b'{"id": "task-unified-1-x", "status": "pending", "pad": "' + b"x" * 70_000 + b'"}', 413),
        (b"[" * 10_000 + b"]" * 10_000, 400),
        (b'{"id": "task-unified-1-x", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", 400),
    ],
)
async def test_the_receiver_refuses_bad_bodies(hook_url: str, body: bytes, status: int) -> None:
    async with aiohttp.ClientSession() as s, s.post(hook_url, data=body) as r:
        assert r.status == status


async def test_the_emulator_retries_a_failing_receiver(emu: Emulator, client: oe.Client) -> None:
    calls: list[int] = []

    async def flaky(request: web.Request) -> web.Response:
        calls.append(1)
        if len(calls) < 3:
            return web.Response(status=500)
        await client.handle_callback(await request.read())
        return web.Response()

    app = web.Application()
    app.router.add_post("/flaky", flaky)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        task = await client.submit(CLIP, "warmer", callback_url=f"http://127.0.0.1:{port}/flaky")
        emu.complete(task.id)
        with anyio.fail_after(5):
            done = await client.wait(task)
        assert done.status is oe.TaskStatus.COMPLETED
        assert len(calls) == 3
    finally:
        await runner.cleanup()


async def _post_all(url: str, bodies: list[bytes], *, at_once: int = 50) -> list[int]:
    """POST every body, ``at_once`` at a time; the statuses in order."""
    statuses: list[int] = []
    async with aiohttp.ClientSession() as s:

        async def post(body: bytes) -> int:
            async with s.post(url, data=body) as r:
                return r.status

        for start in range(0, len(bodies), at_once):
            async with anyio.create_task_group() as tg:
                batch: list[int] = [0] * len(bodies[start : start + at_once])

                async def one(i: int, body: bytes, batch: list[int] = batch) -> None:
                    batch[i] = await post(body)

                for i, body in enumerate(bodies[start : start + at_once]):
                    tg.start_soon(one, i, body)
            statuses += batch
    return statuses


async def test_forged_callbacks_for_ids_the_client_never_made_cost_no_request(
    client: oe.Client, emu: Emulator, hook_url: str
) -> None:
    bodies = [
        json.dumps({"id": f"task-unified-1-forged{i:05d}", "status": "completed"}).encode()
        for i in range(2_000)
    ]
    statuses = await _post_all(hook_url, bodies)
    assert set(statuses) == {200}
    await anyio.sleep(0.05)
    assert emu.stats.requests == []


async def test_repeats_of_one_callback_are_coalesced_into_a_few_reads(
    client: oe.Client, emu: Emulator, hook_url: str
) -> None:
    task = await client.submit(CLIP, "warmer")
    forged = json.dumps({"id": task.id, "status": "completed", "progress": 100}).encode()
    statuses = await _post_all(hook_url, [forged] * 500)
    assert set(statuses) == {200}  # no 503: repeats join the task's job
    await anyio.sleep(1.2)  # past the one-a-second limit: the trailing read is done
    assert 1 <= _gets(emu, task.id) <= 3


async def test_a_newline_in_a_callback_id_is_logged_escaped(
    hook_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"id": "task-unified-1-x\nCRITICAL forged record", "status": "completed"}
    with caplog.at_level(logging.DEBUG, logger="omni_edit"):
        async with aiohttp.ClientSession() as s, s.post(hook_url, json=body) as r:
            # A newline is not in a task id: refused as malformed, and logged escaped.
            assert r.status == 400
        await anyio.sleep(0.05)
    logged = [record.getMessage() for record in caplog.records]
    assert any("forged record" in message for message in logged)
    assert not any("\n" in message for message in logged)


async def test_handle_callback_refuses_a_task_it_does_not_know_without_a_request(
    client: oe.Client, emu: Emulator
) -> None:
    body = {"id": "task-unified-1-stranger", "status": "completed"}
    with pytest.raises(oe.ValidationError, match="did not create"):
        await client.handle_callback(body)
    assert emu.stats.requests == []
