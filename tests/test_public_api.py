"""The public seams the command line and users build on: read-only settings,
``preflight``, per-input destinations, callback polling, the journal's version check."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest

import omni_edit as oe
from omni_edit.emulator import Emulator

if TYPE_CHECKING:
    from conftest import EmulatorFactory

pytestmark = pytest.mark.anyio

KEY = "sk-test-public"
CLIP = "https://media.example.com/clip.mp4"
FAST = oe.PollPolicy(min_interval=0.02, max_interval=0.1, callback_interval=60)
MEDIA = Path(__file__).parent / "data" / "media"


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator(
        processing_time=(0.05, 0.1), estimated_time=0.05, allow_http_callbacks=True
    )


async def test_client_settings_are_read_only(emu: Emulator) -> None:
    async with oe.Client(KEY, base_url=emu.base_url, poll=FAST, max_concurrency=3) as client:
        assert (client.max_concurrency, client.poll, client.timeout) == (3, FAST, 30.0)
        assert client.base_url == emu.base_url
        for name, value in [("poll", oe.PollPolicy()), ("max_concurrency", 9), ("timeout", 1.0)]:
            with pytest.raises(AttributeError):
                setattr(client, name, value)


async def test_requests_sent_counts_api_requests(emu: Emulator) -> None:
    async with oe.Client(KEY, base_url=emu.base_url, poll=FAST) as client:
        assert client.requests_sent == 0
        task = await client.submit(CLIP, "warmer")
        await client.get(task.id)
        assert client.requests_sent == 2 == len(emu.stats.requests)


async def test_callback_tasks_poll_as_usual_when_callbacks_go_elsewhere(emu: Emulator) -> None:
    hook = "http://127.0.0.1:9/elsewhere"  # nobody feeds these callbacks to the client
    async with oe.Client(KEY, base_url=emu.base_url, poll=FAST, receives_callbacks=False) as client:
        task = await client.submit(CLIP, "warmer", callback_url=hook)
        done = await client.wait(task, timeout=5)  # polled at FAST, not every 60 s
    assert done.status is oe.TaskStatus.COMPLETED


async def test_callback_tasks_are_a_slow_safety_net_when_callbacks_come_here(
    emu: Emulator,
) -> None:
    hook = "http://127.0.0.1:9/nobody-listens"
    async with oe.Client(KEY, base_url=emu.base_url, poll=FAST) as client:
        task = await client.submit(CLIP, "warmer", callback_url=hook)
        with pytest.raises(oe.WaitTimeoutError):
            await client.wait(task, timeout=0.5)  # only a callback would end it this soon


async def test_preflight_returns_the_clip_facts_and_refuses_long_clips() -> None:
    async with oe.Client(KEY, base_url="http://127.0.0.1:9") as client:
        info = await client.preflight(str(MEDIA / "clip_9_9s.mp4"))
        assert info.duration == pytest.approx(9.9, abs=0.05)
        with pytest.raises(oe.ValidationError, match="10 s"):
            await client.preflight(str(MEDIA / "clip_10_1s.mp4"))
    # Nothing was sent to the API: the base URL above has no server at all.


async def test_edit_many_saves_each_result_where_destination_says(
    emu: Emulator, tmp_path: Path
) -> None:
    requests: list[oe.EditInput] = [
        oe.EditRequest(CLIP, "warmer"),
        (CLIP, "cooler"),
        {"video_url": CLIP, "prompt": "brighter"},
    ]

    def destination(index: int, request: oe.EditRequest, occurrence: int) -> Path:
        return tmp_path / f"row-{index}-{request.prompt}-{occurrence}.mp4"

    async with oe.Client(KEY, base_url=emu.base_url, poll=FAST) as client:
        outcomes = [o async for o in client.edit_many(requests, destination=destination)]
    assert sorted(str(o.path) for o in outcomes) == sorted(
        str(tmp_path / name)
        for name in ("row-0-warmer-0.mp4", "row-1-cooler-0.mp4", "row-2-brighter-0.mp4")
    )
    assert all(o.path is not None and o.path.stat().st_size > 0 for o in outcomes)


async def test_a_destination_that_cannot_be_called_so_is_refused_before_anything_is_sent(
    emu: Emulator, tmp_path: Path
) -> None:
    def two_arguments(index: int, request: oe.EditRequest) -> Path:
        return tmp_path / f"{index}.mp4"

    async with oe.Client(KEY, base_url=emu.base_url, poll=FAST) as client:
        with pytest.raises(oe.ValidationError, match="destination"):
            client.edit_many([(CLIP, "warmer")], destination=two_arguments)  # type: ignore[arg-type]
    assert not emu.tasks


async def test_a_destination_name_no_file_system_takes_fails_that_input_before_billing(
    emu: Emulator, tmp_path: Path
) -> None:
    def destination(index: int, request: oe.EditRequest, occurrence: int) -> Path:
        if index == 0:
            return tmp_path / ("x" * 300 + ".mp4")
        if index == 1:
            return tmp_path / "nul\0byte.mp4"
        return tmp_path / "fine.mp4"

    requests = [(CLIP, "warmer"), (CLIP, "cooler"), (CLIP, "brighter")]
    async with oe.Client(KEY, base_url=emu.base_url, poll=FAST) as client:
        outcomes = {o.index: o async for o in client.edit_many(requests, destination=destination)}
    assert isinstance(outcomes[0].error, oe.ValidationError)
    assert isinstance(outcomes[1].error, oe.ValidationError)
    assert outcomes[2].ok
    assert len(emu.tasks) == 1  # the two bad names cost nothing


async def test_batch_progress_is_a_frozen_snapshot(emu: Emulator) -> None:
    seen: list[oe.BatchProgress] = []
    async with oe.Client(KEY, base_url=emu.base_url, poll=FAST) as client:
        async for _ in client.edit_many([(CLIP, "warmer")] * 2, on_progress=seen.append):
            pass
    assert seen[-1] == oe.BatchProgress(
        submitted=2, running=0, done=2, failed=0, credits_reserved=seen[-1].credits_reserved
    )
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        seen[-1].done = 5  # type: ignore[misc]


async def test_a_journal_of_another_schema_version_is_refused(
    emu: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "run.sqlite"
    async with oe.Client(KEY, base_url=emu.base_url, poll=FAST) as client:
        [outcome] = [o async for o in client.edit_many([(CLIP, "warmer")], journal=journal)]
        assert outcome.ok
        with sqlite3.connect(journal) as conn:
            conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        with pytest.raises(oe.ValidationError, match="schema version '99'"):
            async for _ in client.edit_many([(CLIP, "warmer")], journal=journal):
                pass
    assert len(emu.tasks) == 1


async def test_a_hostile_journal_version_is_shown_bounded(emu: Emulator, tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    async with oe.Client(KEY, base_url=emu.base_url, poll=FAST) as client:
        async for _ in client.edit_many([(CLIP, "warmer")], journal=journal):
            pass
        with sqlite3.connect(journal) as conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", ("\n" * 10**5,))
        with pytest.raises(oe.ValidationError) as info:
            async for _ in client.edit_many([(CLIP, "warmer")], journal=journal):
                pass
    assert len(str(info.value)) < 500
    assert "\n" not in str(info.value)


async def test_a_file_that_is_not_a_journal_is_refused(emu: Emulator, tmp_path: Path) -> None:
    journal = tmp_path / "notes.txt"
    journal.write_text("these are my notes, not a database\n" * 100)
    async with oe.Client(KEY, base_url=emu.base_url, poll=FAST) as client:
        with pytest.raises(oe.ValidationError, match="not an omni_edit journal"):
            async for _ in client.edit_many([(CLIP, "warmer")], journal=journal):
                pass
    assert journal.read_text().startswith("these are my notes")
    assert len(emu.tasks) == 0
