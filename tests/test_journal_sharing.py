"""Several workers on one journal: claims, leases, takeover, and the keys they derive."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

import omni_edit as oe
from omni_edit._batch.inputs import OccurrenceCounter
from omni_edit._batch.journal import ClaimKind, Identity, JournalState, derive_key, fingerprint
from omni_edit._batch.sqlite_journal import SqliteJournal

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory

pytestmark = pytest.mark.anyio

KEY = "sk-sharing-test"
FAST = oe.PollPolicy(min_interval=0.02, max_interval=0.1, jitter=0)
REQUEST = ("https://media.example.com/a.mp4", "warmer", None)
DIGEST = fingerprint(*REQUEST)


async def test_a_claim_is_held_by_one_journal_until_its_lease_lapses(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    first = await SqliteJournal.open(path, lease_seconds=0.3)
    second = await SqliteJournal.open(path, lease_seconds=0.3)
    try:
        mine = await first.claim(Identity(DIGEST, 0), REQUEST, submit=True)
        assert mine.kind is ClaimKind.CLAIMED
        assert mine.fresh
        assert mine.entry.state is JournalState.SUBMITTING
        key = mine.entry.idempotency_key
        assert key == first.key_for(Identity(DIGEST, 0), 1)

        theirs = await second.claim(Identity(DIGEST, 0), REQUEST, submit=True)
        assert theirs.kind is ClaimKind.BUSY  # the same input: occurrence 0 in its stream too
        assert 0 < theirs.lease_left <= 0.3

        await first.renew()  # a live worker keeps it
        await anyio.sleep(0.2)
        assert (await second.reclaim(theirs.entry.identity)).kind is ClaimKind.BUSY

        await anyio.sleep(0.35)  # no renewal: the first worker is as good as dead
        taken = await second.reclaim(theirs.entry.identity)
        assert taken.kind is ClaimKind.CLAIMED
        assert not taken.fresh
        # Taken over with what the dead worker recorded: the key to replay, the same one.
        assert taken.entry.state is JournalState.SUBMITTING
        assert taken.entry.idempotency_key == key
        assert second.key_for(Identity(DIGEST, 0), 1) == key  # one salt per journal
    finally:
        await first.close()
        await second.close()


async def test_closing_gives_up_the_leases_at_once(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    first = await SqliteJournal.open(path, lease_seconds=60)
    second = await SqliteJournal.open(path, lease_seconds=60)
    try:
        await first.claim(Identity(DIGEST, 0), REQUEST, submit=False)
        assert (
            await second.claim(Identity(DIGEST, 0), REQUEST, submit=False)
        ).kind is ClaimKind.BUSY
        await first.close()
        claim = await second.reclaim(Identity(DIGEST, 0))
        assert claim.kind is ClaimKind.CLAIMED
        assert claim.entry.state is JournalState.PENDING
    finally:
        await second.close()


def test_identical_inputs_are_counted_in_reading_order() -> None:
    counter = OccurrenceCounter()
    other = fingerprint("https://media.example.com/b.mp4", "warmer", None)
    assert [counter.next(d) for d in (DIGEST, other, DIGEST, DIGEST, other)] == [0, 0, 1, 2, 1]
    # Past its first table (1,024 slots, grown at half full), nothing is forgotten.
    digests = [fingerprint(f"https://m.example/{i}.mp4", "p", None) for i in range(5000)]
    assert [counter.next(d) for d in digests] == [0] * 5000
    assert [counter.next(d) for d in digests[::500]] == [1] * 10
    assert counter.next("0" * 32) == 0
    assert counter.next("0" * 32) == 1


def test_keys_derive_from_identity_attempt_and_salt() -> None:
    one = Identity(DIGEST, 0)
    key = derive_key(b"salt-a", one, 1)
    assert key == derive_key(b"salt-a", one, 1)
    others = {
        derive_key(b"salt-b", one, 1),
        derive_key(b"salt-a", Identity(DIGEST, 1), 1),
        derive_key(b"salt-a", one, 2),
    }
    assert key not in others
    assert len(others) == 3
    oe_key_chars = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert 16 <= len(key) <= 96
    assert set(key) <= oe_key_chars


async def test_a_journal_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    with pytest.raises(oe.ValidationError, match="schema version '2'"):
        await SqliteJournal.open(path)


async def test_two_batches_on_one_journal_split_the_inputs_and_both_report_all(
    make_emulator: EmulatorFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(processing_time=(0.05, 0.25), estimated_time=0.1, seed=5)
    journal = tmp_path / "run.sqlite"
    inputs = [(f"https://media.example.com/c{i}.mp4", f"prompt {i}") for i in range(40)]
    inputs += [inputs[0], inputs[0]]  # two more takes of the first: 42 inputs, 42 tasks

    async def one() -> list[oe.EditOutcome]:
        client = await make_client(emu, KEY, poll=FAST)
        return [o async for o in client.edit_many(inputs, journal=journal, concurrency=6)]

    a, b = await asyncio.gather(one(), one())
    for outcomes in (a, b):
        assert len(outcomes) == 42
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    created = Counter(t.prompt for t in emu.tasks.values())
    assert len(emu.tasks) == 42
    assert created["prompt 0"] == 3
    assert max(created.values()) == 3
    # Each did its share and reported the other's: together, every input once.
    mine = {(o.request.prompt, o.occurrence) for o in a if not o.resumed and o.request}
    theirs = {(o.request.prompt, o.occurrence) for o in b if not o.resumed and o.request}
    assert not mine & theirs
    assert len(mine | theirs) == 42
    assert mine
    assert theirs
    assert emu.stats.replays == 0  # nothing was even sent twice


async def test_many_workers_opening_a_new_journal_at_once_all_get_it(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    for _ in range(3):
        journals = await asyncio.gather(*(SqliteJournal.open(path) for _ in range(6)))
        try:
            keys = {j.key_for(Identity(DIGEST, 0), 1) for j in journals}
            assert len(keys) == 1  # one salt, made once
        finally:
            for journal in journals:
                await journal.close()
        path.unlink()
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


async def test_a_damaged_row_fails_its_input_alone(
    make_emulator: EmulatorFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(processing_time=(0.01, 0.05), estimated_time=0.02)
    client = await make_client(emu, KEY, poll=FAST)
    journal = tmp_path / "run.sqlite"
    inputs = [(f"https://media.example.com/c{i}.mp4", f"prompt {i}") for i in range(4)]
    assert all(o.ok for o in [o async for o in client.edit_many(inputs, journal=journal)])
    # What a crafted or damaged file may hold: SQLite keeps any type in any column.
    damage = {
        "prompt 0": ("state", "bogus"),
        "prompt 1": ("attempts", "many"),
        "prompt 2": ("task_id", b"\x00\x01"),  # a TEXT column keeps a blob as it is
    }
    with sqlite3.connect(journal) as conn:
        for prompt, (column, value) in damage.items():
            conn.execute(f"UPDATE items SET {column} = ? WHERE prompt = ?", (value, prompt))
        conn.execute("INSERT INTO workers VALUES ('someone', 'not a number')")
    outcomes = {
        o.request.prompt: o async for o in client.edit_many(inputs, journal=journal) if o.request
    }
    for prompt in damage:
        assert isinstance(outcomes[prompt].error, oe.ValidationError)
        assert "damaged" in str(outcomes[prompt].error)
    assert outcomes["prompt 3"].ok
    assert outcomes["prompt 3"].resumed
    assert len(emu.tasks) == 4  # nothing submitted again


@pytest.mark.parametrize("salt", [b"\x00" * 32, "zz", "00"])
async def test_a_journal_with_a_damaged_salt_is_refused(tmp_path: Path, salt: object) -> None:
    path = tmp_path / "run.sqlite"
    await (await SqliteJournal.open(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'salt'", (salt,))
    with pytest.raises(oe.ValidationError, match="salt"):
        await SqliteJournal.open(path)


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "1e9"])
def test_a_lease_setting_out_of_range_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    from omni_edit._config import journal_lease_seconds

    monkeypatch.setenv("OMNI_EDIT_JOURNAL_LEASE_SECONDS", value)
    with pytest.raises(oe.ValidationError, match="OMNI_EDIT_JOURNAL_LEASE_SECONDS"):
        journal_lease_seconds()
    monkeypatch.setenv("OMNI_EDIT_JOURNAL_LEASE_SECONDS", "2.5")
    assert journal_lease_seconds() == 2.5


def _row(path: Path, identity: Identity) -> tuple[object, ...]:
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT state, task_id, credits, result_url FROM items"
            " WHERE digest = ? AND occurrence = ?",
            (identity.digest, identity.occurrence),
        ).fetchone()
    assert row is not None
    return tuple(row)


async def test_a_submitted_record_nobody_waits_on_is_written_within_its_hold(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.sqlite"
    journal = await SqliteJournal.open(path)
    errors: list[oe.JournalError] = []
    slow, quick, closing = (Identity(DIGEST, n) for n in range(3))
    try:
        for identity in (slow, quick, closing):
            await journal.claim(identity, REQUEST, submit=True)
        journal.submitted(slow, "task-slow", 5.0, on_error=errors.append)
        journal.submitted(quick, "task-quick", 6.0, on_error=errors.append)
        # A task that finishes within the hold: one write records both, credits kept.
        journal.completed(quick, "task-quick", "https://files.example/q.mp4", None)
        await journal.reclaim(closing)  # a group written after the completion
        assert _row(path, quick) == ("completed", "task-quick", 6.0, "https://files.example/q.mp4")
        with anyio.fail_after(5):  # the hold is a fraction of a second
            while _row(path, slow)[0] != "submitted":
                await anyio.sleep(0.02)
        assert _row(path, slow) == ("submitted", "task-slow", 5.0, None)
        journal.submitted(closing, "task-closing", 7.0, on_error=errors.append)
    finally:
        await journal.close()  # writes what it still holds
    assert _row(path, closing) == ("submitted", "task-closing", 7.0, None)
    assert errors == []


async def test_a_held_submitted_record_goes_before_a_later_record_of_its_input(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.sqlite"
    journal = await SqliteJournal.open(path)
    identity = Identity(DIGEST, 0)
    try:
        await journal.claim(identity, REQUEST, submit=True)
        journal.submitted(identity, "task-1", 5.0, on_error=lambda error: None)
        await journal.failed(
            identity, code="content_policy_violation", message="no", retryable=False
        )
        # The task id from the held record is kept; the failure comes after it.
        assert _row(path, identity) == ("failed", "task-1", 5.0, None)
    finally:
        await journal.close()
