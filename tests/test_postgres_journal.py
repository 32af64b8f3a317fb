"""The shared journal on a real PostgreSQL server: the queue, leases and takeover, the
schema's version, secrets kept out of messages, and batches of many workers."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import asyncpg
import pytest

import omni_edit as oe
from omni_edit._batch.journal import ClaimKind, Identity, JournalState, fingerprint
from omni_edit._batch.postgres_journal import PostgresJournal, redact_dsn

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory

pytestmark = pytest.mark.anyio

KEY = "sk-postgres-test"
FAST = oe.PollPolicy(min_interval=0.02, max_interval=0.1, jitter=0)


def _rows(n: int) -> list[tuple[int, Identity, tuple[str, str, str | None]]]:
    rows: list[tuple[int, Identity, tuple[str, str, str | None]]] = []
    for i in range(n):
        url = f"https://media.example.com/{i}.mp4"
        request: tuple[str, str, str | None] = (url, f"prompt {i}", None)
        rows.append((i, Identity(fingerprint(*request), 0), request))
    return rows


async def test_the_queue_gives_each_input_to_one_worker_and_loading_twice_adds_nothing(
    postgres_url: str,
) -> None:
    first = await PostgresJournal.open(postgres_url, lease_seconds=60)
    second = await PostgresJournal.open(postgres_url, lease_seconds=60)
    try:
        assert await first.load(_rows(30)) == 30
        assert await second.load(_rows(30)) == 0  # the same inputs: nothing new
        a, b = await asyncio.gather(
            first.claim_next(20, submit=True), second.claim_next(20, submit=True)
        )
        seqs_a = {seq for seq, _, _ in a}
        seqs_b = {seq for seq, _, _ in b}
        assert not seqs_a & seqs_b
        assert seqs_a | seqs_b == set(range(30))
        for _, _, claim in a:
            # Taken as "submitting" with its first key: the create may follow at once.
            assert claim.kind is ClaimKind.CLAIMED
            assert claim.fresh
            assert claim.entry.state is JournalState.SUBMITTING
            assert claim.entry.idempotency_key == first.key_for(claim.entry.identity, 1)
        assert await first.claim_next(5, submit=True) == []
        assert (await first.batch_left())[0] == 30
        await asyncio.gather(
            *(first.completed(c.entry.identity, f"task-{seq}", None, None) for seq, _, c in a)
        )
        counts = await second.counts()
        assert counts.total == 30
        assert counts.by_state["completed"] == len(a)
        assert counts.queued == 30 - len(a)
        # Loaded again in reverse order: positions follow, nothing done is queued again.
        reverse = [(29 - i, identity, request) for i, identity, request in _rows(30)]
        assert await second.load(reverse) == 0
        assert (await second.counts()).queued == 30 - len(a)
        moved = {e.identity: seq for seq, _, e in await second.entries(-1, 100)}
        assert moved == {c.entry.identity: 29 - seq for seq, _, c in a}
    finally:
        await first.close()
        await second.close()


async def test_a_dead_workers_inputs_are_taken_over_with_their_keys_and_task_ids(
    postgres_url: str,
) -> None:
    dead = await PostgresJournal.open(postgres_url, lease_seconds=0.3)
    heir = await PostgresJournal.open(postgres_url, lease_seconds=60)
    try:
        await dead.load(_rows(3))
        taken = await dead.claim_next(3, submit=True)
        (_, _, sent), (_, _, answered), (_, _, never) = taken
        await dead.submitted(answered.entry.identity, "task-1", 2.0)
        await dead.renew()
        assert await heir.claim_next(3, submit=True) == []  # a live worker holds them
        await anyio.sleep(0.45)  # no renewal: the worker is as good as dead
        found = {c.entry.identity: c for _, _, c in await heir.claim_next(3, submit=True)}
        assert len(found) == 3
        # What the dead worker recorded: the key to replay, the task id to wait on.
        again = found[sent.entry.identity]
        assert not again.fresh
        assert again.entry.state is JournalState.SUBMITTING
        assert again.entry.idempotency_key == sent.entry.idempotency_key
        waited = found[answered.entry.identity]
        assert waited.entry.state is JournalState.SUBMITTED
        assert waited.entry.task_id == "task-1"
        assert found[never.entry.identity].entry.idempotency_key == (never.entry.idempotency_key)
    finally:
        await dead.close()
        await heir.close()


async def test_claims_by_identity_are_held_until_the_lease_lapses(postgres_url: str) -> None:
    request = ("https://media.example.com/a.mp4", "warmer", None)
    identity = Identity(fingerprint(*request), 0)
    first = await PostgresJournal.open(postgres_url, lease_seconds=0.3)
    second = await PostgresJournal.open(postgres_url, lease_seconds=0.3)
    try:
        mine = await first.claim(identity, request, submit=True)
        assert mine.kind is ClaimKind.CLAIMED
        assert mine.fresh
        theirs = await second.claim(identity, request, submit=True)
        assert theirs.kind is ClaimKind.BUSY
        assert 0 < theirs.lease_left <= 0.3
        await anyio.sleep(0.45)
        taken = await second.reclaim(identity)
        assert taken.kind is ClaimKind.CLAIMED
        assert taken.entry.idempotency_key == mine.entry.idempotency_key
    finally:
        await first.close()
        await second.close()


async def test_another_schema_version_and_a_wrong_password_are_clear_and_secret(
    postgres_url: str,
) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("CREATE TABLE omni_edit_meta (key text PRIMARY KEY, value text)")
        await conn.execute("INSERT INTO omni_edit_meta VALUES ('schema_version', '7')")
    finally:
        await conn.close()
    with pytest.raises(oe.ValidationError, match="schema version '7'") as refused:
        await PostgresJournal.open(postgres_url)
    password = postgres_url.split("//", 1)[1].split("@", 1)[0].partition(":")[2]
    assert password
    assert password not in str(refused.value)
    wrong = postgres_url.replace(f":{password}@", ":not-the-password-123@", 1)
    with pytest.raises(oe.JournalError) as failed:
        await PostgresJournal.open(wrong)
    assert "not-the-password-123" not in str(failed.value)
    assert redact_dsn(wrong).count("***") == 1
    assert "not-the-password" not in redact_dsn(wrong + "&password=not-the-password-4")


async def test_without_the_driver_a_postgres_journal_names_the_extra(
    make_emulator: EmulatorFactory,
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = await make_emulator()
    client = await make_client(emu, KEY)
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # import asyncpg fails
    with pytest.raises(oe.ValidationError, match=r"omni-edit\[postgres\]"):
        client.edit_many([], journal="postgresql://u:secret-pw@127.0.0.1/db")


async def test_a_loader_and_a_joiner_work_one_batch_once_within_the_accounts_cap(
    make_emulator: EmulatorFactory,
    make_client: ClientFactory,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    emu = await make_emulator(processing_time=(0.05, 0.2), estimated_time=0.1, latency=0.02)
    inputs = [(f"https://media.example.com/c{i}.mp4", f"prompt {i}") for i in range(60)]
    inputs += [inputs[0], ("not a url", "bad")]  # a second take, and an input refused

    async def work(
        requests: list[tuple[str, str]] | None, seen: list[oe.EditOutcome]
    ) -> list[oe.EditOutcome]:
        client = await make_client(emu, KEY, poll=FAST, max_concurrency=6)
        seen.extend(
            [
                o
                async for o in client.edit_many(
                    requests,
                    journal=postgres_url,
                    concurrency=12,
                    download_dir=tmp_path,
                    account_concurrency=8 if requests else None,
                )
            ]
        )
        return seen

    loaded: list[oe.EditOutcome] = []
    joined: list[oe.EditOutcome] = []
    async with anyio.create_task_group() as group:
        group.start_soon(work, inputs, loaded)
        await anyio.sleep(0.3)  # the joiner comes once the batch is being loaded
        group.start_soon(work, None, joined)
    everything = loaded + joined
    assert len(everything) == 62
    assert len({o.index for o in everything}) == 62
    assert [o.index for o in everything if not o.ok] == [61]
    assert joined  # the joiner did a share
    created = Counter(t.prompt for t in emu.tasks.values())
    assert len(emu.tasks) == 61
    assert created["prompt 0"] == 2
    # One cap for the account: the two workers (six each) together held eight.
    assert emu.stats.max_in_flight <= 8


async def test_a_pause_seen_by_one_worker_reaches_the_others(postgres_url: str) -> None:
    first = await PostgresJournal.open(postgres_url, lease_seconds=60)
    second = await PostgresJournal.open(postgres_url, lease_seconds=60)
    heard: list[float] = []
    try:
        await second.listen(heard.append)
        first.publish_pause(7.0)
        with anyio.fail_after(5):
            while not heard:
                await anyio.sleep(0.01)
        assert heard == [7.0]
        # The account's cap of four: all of it to the one worker that wants any...
        await second.set_account_cap(4)
        change, held, pause = await second.share_slots(0, 16)
        assert (change, held) == (4, 4)
        assert 5 < pause <= 7  # a worker that looks later pauses too
        # ...then half each once the other wants some: taken only when given back.
        assert (await first.share_slots(0, 16))[:2] == (0, 0)
        assert (await second.share_slots(4, 16))[:2] == (-2, 4)
        await second.give_slots(2)
        assert (await first.share_slots(0, 16))[:2] == (2, 2)
        # A worker that needs less leaves the rest to the other.
        assert (await first.share_slots(2, 1))[:2] == (-1, 2)
        await first.give_slots(1)
        assert (await second.share_slots(2, 16))[:2] == (1, 3)
        await first.close()  # its slots are free again
        assert (await second.share_slots(3, 16))[:2] == (1, 4)
    finally:
        await first.close()
        await second.close()


async def test_a_local_clip_in_a_shared_batch_is_refused_alone_before_anything_is_sent(
    make_emulator: EmulatorFactory,
    make_client: ClientFactory,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    emu = await make_emulator(processing_time=(0.01, 0.02), estimated_time=0.02)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0\0\0\x18ftypisom" + bytes(100))
    client = await make_client(emu, KEY, poll=FAST)
    inputs = [(str(clip), "warmer"), ("https://media.example.com/ok.mp4", "warmer")]
    outcomes = {o.index: o async for o in client.edit_many(inputs, journal=postgres_url)}
    assert outcomes[1].ok
    error = outcomes[0].error
    assert isinstance(error, oe.ValidationError)
    assert "local file" in str(error)
    assert [t.video_url for t in emu.tasks.values()] == ["https://media.example.com/ok.mp4"]
