"""Answers a hostile or broken API host may send, from a small scripted server on 127.0.0.1.

Each test scripts the server's answers per path and checks that the client refuses what
is not an API answer, with a ``MalformedResponseError`` (or the error for the status),
without holding more than the answer bound in memory, without hanging a wait, and
without ever showing the API key the server echoed back.
"""

from __future__ import annotations

import json
import logging
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

import omni_edit as oe
from omni_edit._constants import MAX_RESPONSE_BYTES

pytestmark = pytest.mark.anyio

KEY = "sk-hostile-test-SECRET-0123456789"
CLIP = "https://media.example.com/clip.mp4"
PROMPT = "Make the lighting warmer and keep everything else unchanged"
MEDIA = Path(__file__).parent / "data" / "media"
TID = "task-unified-1757169743-7cvnl5zw"
UUID_ID = "3f6c1d2e-8b4a-4f0e-9c57-2a1b0e9d7c44"
FAST = oe.PollPolicy(min_interval=0.01, max_interval=0.05, jitter=0.1)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HostileApi:
    """An API host whose answers each test scripts: ``routes`` maps a request path to a
    handler; every request's method and raw path is recorded in ``requests``."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[str, str]] = []
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.raw_path))
        handler = self.routes.get(request.path)
        if handler is None:
            return web.json_response({"error": {"message": "no such route"}}, status=404)
        return await handler(request)


@pytest.fixture
async def api() -> AsyncIterator[HostileApi]:
    host = HostileApi()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", host.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield host
    await runner.cleanup()


@pytest.fixture
async def client(api: HostileApi) -> AsyncIterator[oe.Client]:
    async with oe.Client(KEY, base_url=api.base_url, max_retries=1, poll=FAST) as c:
        yield c


def _json(body: Any, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    return handler


def _raw(body: bytes, status: int = 200, content_type: str = "application/json") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, status=status, headers={"Content-Type": content_type})

    return handler


def _task(task_id: str, status: str = "pending", **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "status": status, **fields}


# --- 1. Decompression bombs --------------------------------------------------------------------


def _gzip_bomb(inflated: int) -> bytes:
    """A gzip body that inflates to a task object followed by ``inflated`` spaces."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(json.dumps(_task(TID)).encode())]
    spaces = b" " * (1 << 20)
    for _ in range(inflated >> 20):
        parts.append(packer.compress(spaces))
    parts.append(packer.flush())
    return b"".join(parts)


async def test_a_compressed_answer_is_capped_after_decoding_not_at_its_length(
    api: HostileApi, client: oe.Client
) -> None:
    bomb = _gzip_bomb(64 << 20)
    assert len(bomb) < MAX_RESPONSE_BYTES // 16  # announced far below the bound

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )

    api.routes[f"/v1/tasks/{TID}"] = answer
    tracemalloc.start()
    try:
        with pytest.raises(oe.MalformedResponseError, match="over"):
            await client.get(TID)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Reading stops at the bound: memory holds the bound and a chunk, not 64 MiB.
    assert peak < 3 * MAX_RESPONSE_BYTES


async def test_a_compressed_answer_within_the_bound_is_read(
    api: HostileApi, client: oe.Client
) -> None:
    body = zlib.compress(json.dumps(_task(TID, "processing", progress=40)).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "deflate"}

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers=headers)

    api.routes[f"/v1/tasks/{TID}"] = answer
    task = await client.get(TID)
    assert (task.status, task.progress) == (oe.TaskStatus.PROCESSING, 40)


# --- 2. Deep or odd JSON ---------------------------------------------------------------------


async def test_a_deeply_nested_answer_is_malformed_and_ends_the_wait(
    api: HostileApi, client: oe.Client
) -> None:
    """The issue's case: a wait with an async ``on_progress``, whose later poll gets a
    10,000-deep answer. It ends with ``MalformedResponseError``; it does not hang."""
    gets = 0

    async def answer(request: web.Request) -> web.StreamResponse:
        nonlocal gets
        gets += 1
        if gets == 1:
            return web.json_response(_task(TID, "processing", progress=10))
        return web.Response(body=b"[" * 10_000 + b"]" * 10_000, content_type="application/json")

    async def on_progress(task: oe.Task) -> None:
        await anyio.sleep(0.05)

    api.routes[f"/v1/tasks/{TID}"] = answer
    with anyio.fail_after(5), pytest.raises(oe.MalformedResponseError, match="nested"):
        await client.wait(TID, on_progress=on_progress)


@pytest.mark.parametrize(
    ("progress", "shown"), [(250, 100), (-5, 0), (100, 100), (0, 0), (37.9, 37)]
)
async def test_progress_out_of_range_is_clamped(
    api: HostileApi, client: oe.Client, progress: float, shown: int
) -> None:
    api.routes[f"/v1/tasks/{TID}"] = _json(_task(TID, "processing", progress=progress))
    assert (await client.get(TID)).progress == shown


@pytest.mark.parametrize(
    "fields",
    [
        '"usage": {"credits_reserved": NaN}',
        '"usage": {"credits_reserved": Infinity}',
        '"usage": {"credits_reserved": 1e999}',
        '"usage": {"credits_reserved": -3.5}',
        '"task_info": {"estimated_time": -60}',
        '"progress": 1e999',
    ],
)
async def test_numbers_that_are_not_finite_or_negative_amounts_are_malformed(
    api: HostileApi, client: oe.Client, fields: str
) -> None:
    body = f'{{"id": "{TID}", "status": "pending", {fields}}}'.encode()
    api.routes[f"/v1/tasks/{TID}"] = _raw(body)
    with pytest.raises(oe.MalformedResponseError):
        await client.get(TID)


# --- 3. Task ids -------------------------------------------------------------------------------


async def test_a_server_issued_uuid_id_is_waited_on_and_downloaded(
    api: HostileApi, client: oe.Client, tmp_path: Path
) -> None:
    clip = (MEDIA / "faststart.mp4").read_bytes()
    result = f"{api.base_url}/files/{UUID_ID}.mp4"
    api.routes["/v1/videos/generations"] = _json(_task(UUID_ID))
    api.routes[f"/v1/tasks/{UUID_ID}"] = _json(
        _task(UUID_ID, "completed", progress=100, results=[result])
    )
    api.routes[f"/files/{UUID_ID}.mp4"] = _raw(clip, content_type="video/mp4")
    task = await client.submit(CLIP, PROMPT)
    done = await client.wait(task, timeout=5)
    path = await client.download(done, tmp_path)
    assert path == tmp_path / f"{UUID_ID}.mp4"
    assert path.read_bytes() == clip


async def test_an_id_with_a_colon_is_percent_encoded_into_one_path_segment(
    api: HostileApi, client: oe.Client
) -> None:
    api.routes["/v1/tasks/ns:task.1"] = _json(_task("ns:task.1", "processing"))
    task = await client.get("ns:task.1")
    assert task.id == "ns:task.1"
    assert api.requests[-1][1] in ("/v1/tasks/ns%3Atask.1", "/v1/tasks/ns:task.1")


@pytest.mark.parametrize(
    "hostile_id",
    ["../../../pwned-by-id", "a/b", "..", "x" * 129, "id with space", "id\nnewline", ""],
)
async def test_an_answer_carrying_a_hostile_id_is_malformed(
    api: HostileApi, client: oe.Client, tmp_path: Path, hostile_id: str
) -> None:
    api.routes["/v1/videos/generations"] = _json(_task(hostile_id, "completed"))
    with pytest.raises(oe.MalformedResponseError) as info:
        await client.submit(CLIP, PROMPT)
    assert info.value.field == "id"


async def test_a_hand_made_task_with_a_hostile_id_never_writes_outside_the_folder(
    api: HostileApi, client: oe.Client, tmp_path: Path
) -> None:
    folder = tmp_path / "a" / "b" / "out"
    folder.mkdir(parents=True)
    api.routes["/files/r.mp4"] = _raw((MEDIA / "faststart.mp4").read_bytes(), 200, "video/mp4")
    task = oe.Task(
        id="../../../pwned-by-id",
        status=oe.TaskStatus.COMPLETED,
        results=(f"{api.base_url}/files/r.mp4",),
    )
    with pytest.raises(oe.ValidationError):
        await client.download(task, folder)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_an_answer_about_another_task_is_malformed_and_reaches_no_waiter(
    api: HostileApi, client: oe.Client
) -> None:
    planted = _task(
        "task-unified-1-b", "completed", progress=100, results=["https://evil.example/x"]
    )
    api.routes["/v1/tasks/task-unified-1-a"] = _json(planted)
    api.routes["/v1/tasks/task-unified-1-b"] = _json(
        _task("task-unified-1-b", "processing", progress=5)
    )
    seen_by_b: list[oe.Task] = []
    async with anyio.create_task_group() as tg:
        waiting = anyio.Event()

        async def wait_b() -> None:
            def heard(task: oe.Task) -> None:
                seen_by_b.append(task)
                waiting.set()

            with anyio.move_on_after(0.5):
                await client.wait("task-unified-1-b", on_progress=heard)

        tg.start_soon(wait_b)
        await waiting.wait()
        with pytest.raises(oe.MalformedResponseError, match="task-unified-1-a") as info:
            await client.get("task-unified-1-a")
        assert info.value.field == "id"
    assert all(t.status is oe.TaskStatus.PROCESSING for t in seen_by_b)


# --- 5. Echoed secrets -----------------------------------------------------------------------


def _error(status: int, **fields: Any) -> Handler:
    return _json({"error": {"type": "x_error", **fields}}, status=status)


@pytest.mark.parametrize(
    "handler",
    [
        _error(401, code=401, message=f"Invalid API key: {KEY}"),
        _error(
            400,
            code="invalid_parameters",
            message="bad video_urls",
            param="video_urls",
            fallback_suggestion=f"retry with Authorization: Bearer {KEY} and a public URL",
        ),
        _raw(
            f"<html><body><h1>502 Bad Gateway</h1><pre>Authorization: Bearer {KEY}"
            "</pre></body></html>".encode(),
            502,
            "text/html",
        ),
        # Echoed through a JSON escape, so that the bytes on the wire do not hold it.
        _raw(
            b'{"error": {"message": "key '
            + KEY.replace("-", "\\u002d").encode()
            + b' is disabled", "code": "key_disabled"}}',
            403,
        ),
    ],
    ids=["401-message", "400-fallback_suggestion", "502-html", "403-json-escaped"],
)
async def test_an_echoed_key_is_in_no_error_text_or_log_record(
    api: HostileApi, client: oe.Client, caplog: pytest.LogCaptureFixture, handler: Handler
) -> None:
    caplog.set_level(logging.DEBUG)
    api.routes["/v1/videos/generations"] = handler
    api.routes[f"/v1/tasks/{TID}"] = handler
    errors: list[oe.OmniEditError] = []
    for call in (client.submit(CLIP, PROMPT), client.get(TID)):
        with pytest.raises(oe.OmniEditError) as info:
            await call
        errors.append(info.value)
        logging.getLogger("omni_edit").warning("failed: %s", info.value, exc_info=info.value)
    for exc in errors:
        texts = [str(exc), repr(exc), f"{exc}", str(exc.__cause__), repr(exc.__cause__)]
        for text in texts:
            assert KEY not in text
    assert "REDACTED" in str(errors[0])
    assert caplog.records
    for record in caplog.records:
        assert KEY not in record.getMessage()
    assert KEY not in caplog.text


async def test_an_echoed_key_in_a_failed_task_is_in_no_error_text(
    api: HostileApi, client: oe.Client
) -> None:
    failed = _task(TID, "failed", error={"code": "unknown_error", "message": f"bad {KEY}"})
    api.routes[f"/v1/tasks/{TID}"] = _json(failed)
    with pytest.raises(oe.TaskFailedError) as info:
        await client.wait(TID, timeout=5)
    assert info.value.task.error is not None
    for text in (str(info.value), repr(info.value), info.value.task.error.message):
        assert KEY not in text


def test_the_key_is_scrubbed_from_any_omni_edit_log_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    oe.Client(KEY)  # the key is known from here on
    caplog.set_level(logging.INFO)
    logging.getLogger("omni_edit").info("a server said %r", f"Bearer {KEY}")
    assert KEY not in caplog.text
    assert "Bearer REDACTED" in caplog.text
