"""Batch reads: the wire format, the reader that gathers polls, the emulator's endpoint,
and the client's fallback to single reads where a deployment has none."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import pytest
from aiohttp import web

import omni_edit as oe
from omni_edit._constants import TASKS_BATCH_PATH
from omni_edit._polling.reader import TaskReader
from omni_edit._wire.batch_read import BatchAnswer, parse_batch_response, tasks_batch_request
from omni_edit.emulator import Emulator

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory

pytestmark = pytest.mark.anyio

KEY = "sk-test-batch-reads"
CLIP = "https://media.example.com/clip.mp4"
FAST = oe.PollPolicy(min_interval=0.05, max_interval=0.2, batch_window=0.02)
A, B, C = "task-unified-1-a", "task-unified-1-b", "task-unified-1-c"


def _task(task_id: str, status: str = "processing", **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "status": status, **fields}


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


def _batches(emu: Emulator) -> int:
    return sum(1 for r in emu.stats.requests if r.path == TASKS_BATCH_PATH)


def _gets(emu: Emulator) -> int:
    return sum(1 for r in emu.stats.requests if r.method == "GET")


# --- The wire ----------------------------------------------------------------------------


def test_a_batch_read_is_a_post_that_is_safe_to_send_again() -> None:
    request = tasks_batch_request([A, B])
    assert (request.method, request.path) == ("POST", TASKS_BATCH_PATH)
    assert request.json == {"task_ids": [A, B]}
    assert request.idempotent  # a lost answer is read again, never "uncertain"
    for count in (0, 51):
        with pytest.raises(ValueError, match="1 to 50"):
            tasks_batch_request([f"t{i}" for i in range(count)])


@pytest.mark.parametrize(
    "body",
    [
        b"<html>gateway</html>",
        _body([_task(A)]),
        _body({"data": {"id": A}}),
        _body({"data": None}),
        _body({"tasks": [_task(A)]}),
        _body({"data": [_task(A), _task(B), _task(C)]}),  # more entries than ids asked
    ],
)
def test_a_batch_answer_of_the_wrong_shape_is_malformed(body: bytes) -> None:
    with pytest.raises(oe.MalformedResponseError):
        parse_batch_response(200, body, {A, B})


def test_entries_about_no_task_asked_for_are_ignored() -> None:
    body = _body({"data": [_task(C, "completed"), "junk", {"status": "completed"}]})
    answer = parse_batch_response(200, body, {A, B, "x", "y"})
    assert answer == BatchAnswer({}, {}, ignored=3)


def test_a_bad_entry_fails_only_its_own_task() -> None:
    body = _body({"data": [_task(A, "completed", progress=100), _task(B, "exploded")]})
    answer = parse_batch_response(200, body, {A, B})
    assert answer.tasks[A].status is oe.TaskStatus.COMPLETED
    assert set(answer.errors) == {B}
    assert answer.errors[B].field == "status"


def test_a_task_listed_twice_is_malformed_for_that_task_alone() -> None:
    body = _body({"data": [_task(A), _task(A, "completed"), _task(B)]})
    answer = parse_batch_response(200, body, {A, B, C})
    assert set(answer.tasks) == {B}
    assert "more than once" in str(answer.errors[A])


# --- The reader --------------------------------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.singles: list[str] = []
        self.batches: list[list[str]] = []

    async def one(self, task_id: str) -> oe.Task:
        self.singles.append(task_id)
        return oe.Task(id=task_id, status=oe.TaskStatus.PROCESSING)

    async def many(self, task_ids: Sequence[str]) -> BatchAnswer:
        self.batches.append(list(task_ids))
        tasks = {i: oe.Task(id=i, status=oe.TaskStatus.PROCESSING) for i in task_ids}
        return BatchAnswer(tasks, {})


async def test_reads_asked_together_go_out_in_requests_of_at_most_fifty() -> None:
    api = _Recorder()
    reader = TaskReader(api.one, api.many)
    ids = [f"task-{i}" for i in range(120)]
    tasks = await asyncio.gather(*(reader.read(i) for i in ids))
    assert [t.id for t in tasks] == ids
    assert [len(b) for b in api.batches] == [50, 50, 20]
    assert api.singles == []
    # A read alone goes as a plain read: one request either way.
    await reader.read("task-alone")
    assert api.singles == ["task-alone"]
    await reader.aclose()


# --- The emulator's endpoint -------------------------------------------------------------


async def _post(emu: Emulator, body: bytes, key: str = KEY) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(emu.base_url + TASKS_BATCH_PATH, data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_the_emulator_answers_a_keys_own_tasks_and_leaves_out_the_rest(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = await make_emulator(processing_time=(5, 5))
    mine = await (await make_client(emu, KEY)).submit(CLIP, "warmer")
    theirs = await (await make_client(emu, "sk-someone-else")).submit(CLIP, "warmer")
    ids = [mine.id, theirs.id, "task-unified-1-nosuch", "../etc", mine.id]
    status, body = await _post(emu, _body({"task_ids": ids}))
    assert status == 200
    assert [t["id"] for t in body["data"]] == [mine.id]
    for bad in (b"{", _body({"task_ids": A}), _body({"task_ids": [1]}), _body({"task_ids": []})):
        status, body = await _post(emu, bad)
        assert (status, body["error"]["param"]) == (400, "task_ids")
    status, _ = await _post(emu, _body({"task_ids": [f"t{i}" for i in range(51)]}))
    assert status == 400


@pytest.mark.parametrize("mode", ["given", "zero", "absent"])
async def test_the_emulator_reports_estimates_as_told(
    make_emulator: EmulatorFactory, make_client: ClientFactory, mode: str
) -> None:
    emu = await make_emulator(processing_time=(5, 5), estimated_time=5, estimate=mode)
    client = await make_client(emu, KEY)
    task = await client.submit(CLIP, "warmer")
    expected = {"given": 5, "zero": 0, "absent": None}[mode]
    assert task.estimated_time == expected
    info = emu.tasks[task.id].to_json(emu.tasks[task.id].started + 2.5)["task_info"]
    assert info.get("estimated_time", "absent") == {"given": 3, "zero": 0, "absent": "absent"}[mode]


# --- The client ---------------------------------------------------------------------------


async def test_polls_that_fall_due_together_go_out_as_one_batch_read(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = await make_emulator(processing_time=(0.3, 0.5), estimated_time=0.4, seed=5)
    client = await make_client(emu, KEY, poll=FAST)
    tasks = [await client.submit(CLIP, f"p{i}") for i in range(20)]
    done = await asyncio.gather(*(client.wait(t) for t in tasks))
    assert all(t.status is oe.TaskStatus.COMPLETED for t in done)
    reads = sum(emu.tasks[t.id].reads for t in tasks)
    requests = _batches(emu) + _gets(emu)
    assert _batches(emu) >= 1
    assert requests * 3 <= reads, (requests, reads)  # three reads or more per request


async def test_ids_absent_from_a_batch_answer_are_read_singly(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = await make_emulator(processing_time=(0.1, 0.1))
    client = await make_client(emu, KEY, poll=FAST)
    theirs = await (await make_client(emu, "sk-someone-else")).submit(CLIP, "warmer")
    mine = await client.submit(CLIP, "warmer")
    # Waits on bare ids read at once, together: one batch read of all three.
    outcomes = await asyncio.gather(
        client.wait(mine.id),
        client.wait("task-unified-1-nosuch"),
        client.wait(theirs.id),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], oe.Task)
    assert outcomes[0].status is oe.TaskStatus.COMPLETED
    assert isinstance(outcomes[1], oe.NotFoundError)
    assert isinstance(outcomes[2], oe.NotFoundError)
    first_batch = next(i for i, r in enumerate(emu.stats.requests) if r.path == TASKS_BATCH_PATH)
    singles = [r.path for r in emu.stats.requests[first_batch + 1 :] if r.method == "GET"]
    assert f"/v1/tasks/{theirs.id}" in singles
    assert "/v1/tasks/task-unified-1-nosuch" in singles


@pytest.mark.parametrize("status", [404, 405])
async def test_a_deployment_without_batch_reads_is_read_singly_from_then_on(
    make_emulator: EmulatorFactory,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    caplog.set_level(logging.WARNING, logger="omni_edit")
    emu = await make_emulator(
        processing_time=(0.1, 0.2), batch_reads=False, batch_off_status=status, seed=1
    )
    client = await make_client(emu, KEY, poll=FAST)
    for round_ in range(2):
        tasks = [await client.submit(CLIP, f"p{round_}-{i}") for i in range(5)]
        done = await asyncio.gather(*(client.wait(t.id) for t in tasks))
        assert all(t.status is oe.TaskStatus.COMPLETED for t in done)
    assert _batches(emu) == 1  # refused once, never asked again
    assert [r.status for r in emu.stats.requests if r.path == TASKS_BATCH_PATH] == [status]
    assert _gets(emu) >= 10
    switched = [r for r in caplog.records if "batch" in r.getMessage()]
    assert len(switched) == 1
    assert f"HTTP {status}" in switched[0].getMessage()


@pytest.mark.parametrize("mode", ["zero", "absent"])
async def test_a_task_with_no_estimate_is_first_polled_within_min_interval(
    make_emulator: EmulatorFactory, make_client: ClientFactory, mode: str
) -> None:
    emu = await make_emulator(processing_time=(0.1, 0.1), estimate=mode)
    policy = oe.PollPolicy(min_interval=1.0, max_interval=30.0)
    client = await make_client(emu, KEY, poll=policy)
    task = await client.submit(CLIP, "warmer")
    with anyio.fail_after(10):  # a missing estimate was once taken as 60 s: 30 s to wait
        await client.wait(task)
    record = emu.tasks[task.id]
    assert record.reads == 1
    assert record.first_read is not None
    assert record.first_read - record.started <= policy.min_interval


# --- Hostile batch answers -----------------------------------------------------------------


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """An API host whose batch answer each test sets (``script["batch"]``); single reads
    answer the task completed."""
    script: dict[str, Any] = {}

    async def batch(request: web.Request) -> web.StreamResponse:
        return web.Response(body=script["batch"], content_type="application/json")

    async def one(request: web.Request) -> web.StreamResponse:
        return web.json_response(_task(request.match_info["id"], "completed", progress=100))

    app = web.Application()
    app.router.add_post(TASKS_BATCH_PATH, batch)
    app.router.add_get("/v1/tasks/{id}", one)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", script
    await runner.cleanup()


async def test_a_malformed_batch_answer_ends_the_waits_it_answered(
    scripted: tuple[str, dict[str, Any]],
) -> None:
    base_url, script = scripted
    script["batch"] = _body({"data": "nope"})
    async with oe.Client(KEY, base_url=base_url, poll=FAST, max_retries=0) as client:
        outcomes = await asyncio.gather(client.wait(A), client.wait(B), return_exceptions=True)
    assert all(isinstance(o, oe.MalformedResponseError) for o in outcomes), outcomes


async def test_a_batch_answer_about_other_tasks_leaves_the_asked_ones_to_single_reads(
    scripted: tuple[str, dict[str, Any]],
) -> None:
    base_url, script = scripted
    script["batch"] = _body({"data": [_task(C, "completed", progress=100)]})
    async with oe.Client(KEY, base_url=base_url, poll=FAST, max_retries=0) as client:
        done = await asyncio.gather(client.wait(A), client.wait(B))
    assert [t.id for t in done] == [A, B]
