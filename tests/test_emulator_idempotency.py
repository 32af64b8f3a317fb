"""The emulator's idempotency ledger, over plain HTTP: what the gateway does with keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from omni_edit.emulator import Emulator
from omni_edit.emulator._idempotency import Conflict, IdempotencyLedger, InProgress, Replay

if TYPE_CHECKING:
    from conftest import EmulatorFactory

pytestmark = pytest.mark.anyio

CREATE = "/v1/videos/generations"
BODY = {
    "model": "gemini-omni-flash-video-edit",
    "prompt": "warmer",
    "video_urls": ["https://media.example.com/clip.mp4"],
}
KEY = "key-0123456789abcdef"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _create(
    http: aiohttp.ClientSession,
    emu: Emulator,
    body: dict[str, Any] = BODY,
    key: str | None = KEY,
    api_key: str = "sk-one",
) -> tuple[int, dict[str, Any], str | None]:
    headers = {"Authorization": f"Bearer {api_key}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with http.post(emu.base_url + CREATE, json=body, headers=headers) as r:
        return r.status, await r.json(), r.headers.get("idempotency-replayed")


async def test_a_repeated_key_gets_the_original_task_marked_replayed(
    http: aiohttp.ClientSession, make_emulator: EmulatorFactory
) -> None:
    emu = await make_emulator()
    status, first, replayed = await _create(http, emu)
    assert (status, replayed) == (200, None)
    status, again, replayed = await _create(http, emu)
    assert (status, replayed) == (200, "true")
    assert again["id"] == first["id"]
    assert (emu.stats.creates, emu.stats.replays, len(emu.tasks)) == (1, 1, 1)


async def test_the_same_key_with_another_body_is_a_409_conflict(
    http: aiohttp.ClientSession, make_emulator: EmulatorFactory
) -> None:
    emu = await make_emulator()
    await _create(http, emu)
    status, body, _ = await _create(http, emu, body={**BODY, "prompt": "cooler"})
    assert status == 409
    assert body["error"]["code"] == "idempotency_conflict"
    assert len(emu.tasks) == 1


async def test_keys_belong_to_one_api_key(
    http: aiohttp.ClientSession, make_emulator: EmulatorFactory
) -> None:
    emu = await make_emulator()
    _, mine, _ = await _create(http, emu, api_key="sk-one")
    _, theirs, replayed = await _create(http, emu, api_key="sk-two")
    assert theirs["id"] != mine["id"]
    assert replayed is None


@pytest.mark.parametrize("key", ["short", "x" * 97, "has space-0123456789", "key/0123456789abc"])
async def test_a_malformed_key_is_a_400(
    http: aiohttp.ClientSession, make_emulator: EmulatorFactory, key: str
) -> None:
    emu = await make_emulator()
    status, body, _ = await _create(http, emu, key=key)
    assert status == 400
    assert body["error"]["param"] == "Idempotency-Key"
    assert not emu.tasks


async def test_a_refused_create_leaves_its_key_free(
    http: aiohttp.ClientSession, make_emulator: EmulatorFactory
) -> None:
    emu = await make_emulator(concurrency_limit=1, processing_time=(60, 60))
    await _create(http, emu, key="first-key-0123456789")
    status, _, _ = await _create(http, emu)  # refused: one unfinished task at most
    assert status == 429
    emu.complete(next(iter(emu.tasks)))
    status, body, replayed = await _create(http, emu)
    assert (status, replayed) == (200, None)  # created now, not "replayed" of nothing
    assert body["id"] in emu.tasks


async def test_a_deployment_that_ignores_keys_creates_every_time(
    http: aiohttp.ClientSession, make_emulator: EmulatorFactory
) -> None:
    emu = await make_emulator(idempotency_keys=False)
    await _create(http, emu)
    await _create(http, emu)
    assert len(emu.tasks) == 2


def test_the_ledger_forgets_keys_after_its_retention() -> None:
    ledger = IdempotencyLedger(retention=100.0)
    assert ledger.begin("o", KEY, b"body", now=0.0) is None
    assert ledger.begin("o", KEY, b"body", now=1.0) == InProgress()
    ledger.created("o", KEY, "task-1")
    assert ledger.begin("o", KEY, b"body", now=50.0) == Replay("task-1")
    assert ledger.begin("o", KEY, b"other", now=50.0) == Conflict()
    assert ledger.begin("o", KEY, b"other", now=101.0) is None  # forgotten: a new request
    assert len(ledger) == 1


def test_an_abandoned_key_is_free_but_a_created_one_stays() -> None:
    ledger = IdempotencyLedger(retention=100.0)
    ledger.begin("o", "a" * 16, b"x", now=0.0)
    ledger.abandon("o", "a" * 16)
    assert ledger.begin("o", "a" * 16, b"y", now=1.0) is None
    ledger.created("o", "a" * 16, "task-2")
    ledger.abandon("o", "a" * 16)
    assert ledger.begin("o", "a" * 16, b"y", now=2.0) == Replay("task-2")
