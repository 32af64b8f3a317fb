"""The journal in one SQLite file: the embedded default, shared by processes on one host.

Writes are group-committed: every call is queued, and one writer task applies
whatever has queued up in one ``BEGIN IMMEDIATE`` transaction, then commits it once.
Dozens of workers recording at once cost one commit (one fsync), not dozens
(``benchmarks/bench_journal.py``). A group holding a
"submitting" or "submitted" record commits with ``synchronous=FULL``: that record must
survive a power loss, not only a crash, since losing it could mean paying twice
(docs/reliability.md#journal). Other groups commit with ``NORMAL``, which WAL mode keeps
through any crash of the process.

``BEGIN IMMEDIATE`` takes SQLite's write lock, so a claim (read the row, then take it)
is one atomic step across processes: two workers never hold one input. A claim lives
while its holder's lease does: one row per worker in ``workers``, renewed by a
heartbeat, so renewing costs one write however many inputs a worker holds. Calls are
queued in the order they are made, so the occurrence count of identical inputs follows
the order the inputs were read in.

What waits runs on the journal's own thread (not anyio's shared pool, whose first use
costs an import on the event loop): opening, the commit (it waits on the disk) and the
write lock when another process holds it. The statements of a group run on the loop:
microseconds each against a database this connection holds locked, they never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from os import PathLike
from typing import Any, TypeAlias

from .._constants import JOURNAL_LEASE_SECONDS
from .._exceptions import JournalError, ValidationError
from .journal import (
    Claim,
    ClaimKind,
    Identity,
    JournalEntry,
    JournalState,
    derive_key,
)

__all__ = ["SCHEMA_VERSION", "SqliteJournal"]

# 3: inputs keyed by identity (digest, occurrence), with claims and leases.
# 4: rows stored in claim order, found by identity through a unique index.
SCHEMA_VERSION = 4

# Rows are stored in claim order (``id``), and found by identity through the unique
# index: the inputs one group commit touches were claimed together, so they share a few
# pages instead of dirtying a page each, and a commit writes fewer pages
# (``benchmarks/bench_journal.py``).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    occurrence INTEGER NOT NULL,
    video_url TEXT NOT NULL,
    prompt TEXT NOT NULL,
    callback_url TEXT,
    state TEXT NOT NULL,
    task_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    result_url TEXT,
    path TEXT,
    error_code TEXT,
    error_message TEXT,
    retryable INTEGER NOT NULL DEFAULT 0,
    credits REAL,
    idempotency_key TEXT,
    owner TEXT,
    updated REAL NOT NULL,
    UNIQUE (digest, occurrence)
);
CREATE TABLE IF NOT EXISTS workers (owner TEXT PRIMARY KEY, lease_until REAL NOT NULL);
"""

_COLUMNS = (
    "digest, occurrence, state, task_id, attempts, result_url, path, error_code,"
    " error_message, retryable, credits, idempotency_key, owner, video_url"
)

# A queued operation: a closure, or (for the hot ones) a function of the journal and
# its arguments.
_Op: TypeAlias = (
    "Callable[[sqlite3.Connection, float], Any] | tuple[Callable[..., Any], tuple[Any, ...]]"
)
_OnError = Callable[[JournalError], None]
_Target: TypeAlias = "asyncio.Future[Any] | _OnError"


class _Nothing:
    """The awaitable a write nobody waits on returns: done at once."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_NOTHING = _Nothing()
# How long opening waits for another process that is creating the same journal, and
# a group for the write lock another process holds: past it, "locked too long" is a
# JournalError (docs/reliability.md#journal).
_OPEN_LOCK_TIMEOUT = 15.0
_LOCK_TIMEOUT = 15.0
# How long a "submitted" record nobody waits on is held before it is queued: a task
# that finishes within it is recorded by one write, not two. Held, it risks nothing
# billed: the "submitting" row already holds the key, which a rerun after a crash
# replays to get this very task (docs/reliability.md#journal).
_SUBMITTED_HOLD = 0.2
# After each commit the writer waits this long before it starts the next group, so that
# records made meanwhile join it: fewer, larger commits. A write waits for at most one
# extra pause, far less than the create request it guards (``benchmarks/bench_journal.py``:
# 2,000 instant inputs, journal/none wall 1.34x -> 1.25x; 20 ms was worse again).
_GROUP_PAUSE = 0.005


def _entry(row: Any) -> JournalEntry:
    """A row as an entry. SQLite keeps whatever a file holds, of any type: a row that
    is not what this module writes (a damaged or crafted file) is a ``ValidationError``
    for its input alone, never a ``TypeError`` in the middle of a batch."""
    texts = (row[3], row[5], row[6], row[7], row[8], row[11], row[13])
    try:
        if not all(value is None or isinstance(value, str) for value in texts):
            raise ValueError("a text column holds another type")
        if type(row[4]) is not int or row[4] < 0 or type(row[9]) is not int:
            raise ValueError("a count holds another type")
        if row[10] is not None and (type(row[10]) not in (int, float) or row[10] != row[10]):
            raise ValueError("credits hold another type")
        state = JournalState(row[2])
    except ValueError as exc:
        raise ValidationError(
            f"the journal's row for this input is damaged ({exc}; state {str(row[2])[:20]!r}):"
            " it was not written by omni_edit. Remove the row, or use a new journal file",
            field="journal",
        ) from None
    return JournalEntry(
        identity=Identity(row[0], row[1]),
        state=state,
        task_id=row[3],
        attempts=row[4],
        result_url=row[5],
        path=row[6],
        error_code=row[7],
        error_message=row[8],
        retryable=bool(row[9]),
        credits=row[10],
        idempotency_key=row[11],
        # The clip URL the latest create carried, if it was not the input's own (the
        # column holds the input's clip until then).
        video_url=row[13] if str(row[13]).startswith(("http://", "https://")) else None,
    )


def _connect(path: str) -> tuple[sqlite3.Connection, bytes]:
    """Open the file, create or check its schema, and read (or make) its salt."""
    deadline = time.monotonic() + _OPEN_LOCK_TIMEOUT
    while True:
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise ValidationError(
                f"cannot open the journal {path} ({exc}): name a file in a writable folder",
                field="journal",
            ) from None
        try:
            found = _prepare(conn)
        except sqlite3.OperationalError as exc:
            conn.close()
            # Two processes opening a new file at once: switching it to WAL mode needs
            # a lock SQLite will not wait for (its busy handler is skipped where waiting
            # could deadlock). The other one finishes in milliseconds: try again.
            if _is_busy(exc) and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            raise JournalError(
                f"the journal {path} could not be opened ({exc}): check the disk and the"
                " file's permissions, or name another journal file"
            ) from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ValidationError(
                f"{path} is not an omni_edit journal ({exc}): name a new file for the journal",
                field="journal",
            ) from None
        break
    version = found.get("schema_version")
    if version != str(SCHEMA_VERSION):
        conn.close()
        raise ValidationError(
            # The file may be anyone's: show its version bounded and quoted.
            f"the journal {path} was written with schema version {str(version)[:20]!r};"
            f" this omni_edit reads version {SCHEMA_VERSION}. Finish that batch with the"
            " omni_edit version that started it, or start afresh with a new journal file",
            field="journal",
        )
    try:
        salt = bytes.fromhex(found["salt"])
        if len(salt) < 16:
            raise ValueError("too short")
    except (KeyError, ValueError, TypeError):
        conn.close()
        raise ValidationError(
            f"the journal {path} is damaged (its salt is unreadable): start afresh with a"
            " new journal file",
            field="journal",
        ) from None
    return conn, salt


def _prepare(conn: sqlite3.Connection) -> dict[str, str]:
    """Settings, schema, version and salt, under the write lock; the meta rows."""
    conn.execute("PRAGMA busy_timeout=15000")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Not executescript: it commits first, and the schema and the salt are made
        # under the write lock, once, even when two processes open a new file at once.
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('salt', ?)", (secrets.token_hex(32),))
        found = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    # From here on a busy lock is never waited for inside SQLite: the first try is
    # made on the event loop, which must not block (``SqliteJournal._begin``).
    conn.execute("PRAGMA busy_timeout=0")
    return found


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SqliteJournal:
    """An open journal file: ``await SqliteJournal.open(path)``, then ``await close()``."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        location: str,
        salt: bytes,
        executor: ThreadPoolExecutor,
        lease_seconds: float,
    ) -> None:
        self._conn = conn
        self.location = location
        self._salt = salt
        self._executor = executor
        self.lease_seconds = lease_seconds
        # Who holds a lease: this journal object, one per batch run.
        self.owner = secrets.token_hex(8)
        self._loop = asyncio.get_running_loop()
        self._pending: list[tuple[_Op, bool, _Target]] = []
        # Held "submitted" records, oldest first: identity -> (task id, credits,
        # on_error, when due).
        self._held: dict[Identity, tuple[str, float | None, _OnError, float]] = {}
        self._holding: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._full = True  # the connection's current synchronous level
        self._closed = False

    @classmethod
    async def open(
        cls, path: str | PathLike[str], *, lease_seconds: float | None = None
    ) -> SqliteJournal:
        """Open (or create) the journal at ``path``.

        Raises ``ValidationError`` (field ``journal``) for a file that is not a journal,
        or one written with another schema version: its rows would be misread.
        """
        location = os.fspath(path)
        executor = ThreadPoolExecutor(1, thread_name_prefix="omni_edit-journal")
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(executor, _connect, location)
        try:
            conn, salt = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The thread finishes opening regardless: close what it opens.
            def close_later(done: asyncio.Future[tuple[sqlite3.Connection, bytes]]) -> None:
                if not done.cancelled() and done.exception() is None:
                    executor.submit(done.result()[0].close)
                executor.shutdown(wait=False)

            opening.add_done_callback(close_later)
            raise
        except BaseException:
            executor.shutdown(wait=False)
            raise
        lease = JOURNAL_LEASE_SECONDS if lease_seconds is None else lease_seconds
        journal = cls(conn, location, salt, executor, lease)
        try:
            await journal.renew()  # this worker's lease: its claims live while it does
        except BaseException:
            await journal.close()
            raise
        return journal

    # --- The writer -----------------------------------------------------------------------

    def _queue(
        self, op: _Op, *, durable: bool = False, on_error: _OnError | None = None
    ) -> Awaitable[Any]:
        """Queue ``op`` for the next group. Its result comes through the future
        returned, or, for a write nobody waits on (``on_error`` given), only a failure
        is told, to ``on_error``: no future, no callback, at thousands of writes a
        second."""
        loop = self._loop
        target: asyncio.Future[Any] | _OnError
        if on_error is not None:
            target = on_error
            result: Awaitable[Any] = _NOTHING
        else:
            target = result = loop.create_future()
        if self._closed:
            self._settle(target, False, JournalError(f"the journal {self.location} is closed"))
            return result
        self._pending.append((op, durable, target))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(), name="omni_edit journal writer")
        return result

    def _settle(self, target: asyncio.Future[Any] | _OnError, ok: bool, value: Any) -> None:
        if isinstance(target, asyncio.Future):
            if target.done():
                return  # its caller was cancelled; the write was still made
            if ok:
                target.set_result(value)
            else:
                target.set_exception(self._error(value))
        elif not ok:
            error = self._error(value)
            if isinstance(error, JournalError):
                target(error)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        group: list[tuple[_Op, bool, _Target]] = []
        try:
            while self._pending:
                group, self._pending = self._pending, []
                durable = any(d for _, d, _ in group)
                # The statements run here, on the loop, between a lock taken (tried here
                # first: it is usually free) and a commit made on the journal's thread
                # (it waits on the disk). A few microseconds each, against a database
                # this connection has locked, they never wait; run on the thread, each
                # one handed the GIL back and forth with a busy loop, which cost more
                # than the work (``benchmarks/bench_journal.py``).
                results: list[tuple[bool, Any]] = []
                try:
                    failure = self._begin(durable, wait=False)
                    if isinstance(failure, sqlite3.OperationalError) and _is_busy(failure):
                        # Another process holds the lock: wait for it off the loop.
                        failure = await loop.run_in_executor(self._executor, self._begin, durable)
                    if failure is None:
                        results, failure = self._apply(group)
                    if failure is None:
                        failure = await loop.run_in_executor(self._executor, self._commit)
                except Exception as exc:  # a bug, or the executor gone: told, not lost
                    failure = exc
                    if self._conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            self._conn.execute("ROLLBACK")
                if failure is not None:
                    # Nothing of the group is trusted to have been written.
                    results = [(False, failure)] * len(group)
                for (_, _, target), (ok, value) in zip(group, results, strict=True):
                    self._settle(target, ok, value)
                group = []
                await asyncio.sleep(_GROUP_PAUSE)
        finally:
            self._flusher = None
            # Cancelled (the loop is closing): no caller may wait forever.
            closed = JournalError(f"the journal {self.location} was closed")
            for _, _, target in [*group, *self._pending]:
                self._settle(target, False, closed)
            self._pending = []

    def _begin(self, durable: bool, *, wait: bool = True) -> BaseException | None:
        """The write lock, for a group as durable as it needs. Tried once on the loop
        (``wait=False``: the lock is usually free, and a thread hop costs a turn of the
        loop), else on the journal's thread, waiting up to ``_LOCK_TIMEOUT``."""
        conn = self._conn
        deadline = time.monotonic() + _LOCK_TIMEOUT
        try:
            if durable != self._full:
                conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._full = durable
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return None
                except sqlite3.OperationalError as exc:
                    if not wait or not _is_busy(exc) or time.monotonic() > deadline:
                        raise
                time.sleep(0.002)
        except Exception as exc:
            return exc

    def _commit(self) -> BaseException | None:
        """On the journal's thread: one commit (one fsync) for the whole group."""
        try:
            self._conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            return exc
        return None

    def _apply(
        self, group: list[tuple[_Op, bool, _Target]]
    ) -> tuple[list[tuple[bool, Any]], BaseException | None]:
        """The group's statements, inside the transaction: each op's result (or its own
        error), or the database's error that ended the transaction."""
        conn = self._conn
        results: list[tuple[bool, Any]] = []
        now = time.time()
        for op, _, _ in group:
            try:
                if isinstance(op, tuple):
                    function, args = op
                    results.append((True, function(self, conn, now, *args)))
                else:
                    results.append((True, op(conn, now)))
            except sqlite3.Error as exc:
                # A full disk, say: the transaction may be gone already.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                return [], exc
            except Exception as exc:
                results.append((False, exc))
        return results, None

    def _error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, (sqlite3.Error, OSError)):
            error = JournalError(
                f"the journal {self.location} could not be used ({exc}): free disk space,"
                " or make the file writable, then run the same batch again; it resumes"
                " from what the journal holds"
            )
            error.__cause__ = exc
            return error
        return exc

    async def _do(self, op: _Op, *, durable: bool = False) -> Any:
        return await self._queue(op, durable=durable)

    # --- Claims ---------------------------------------------------------------------------

    def key_for(self, identity: Identity, attempt: int) -> str:
        return derive_key(self._salt, identity, attempt)

    def _take(
        self,
        conn: sqlite3.Connection,
        now: float,
        identity: Identity,
        new: tuple[str, int, str | None] | None,
        request: tuple[str, str, str | None] | None,
    ) -> Claim:
        if new is not None and request is not None:
            # A new input is the common case: insert first, and read only on conflict.
            state, attempts, key = new
            inserted = conn.execute(
                "INSERT INTO items (digest, occurrence, video_url, prompt, callback_url,"
                " state, attempts, idempotency_key, owner, updated)"
                " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (
                    identity.digest,
                    identity.occurrence,
                    *request,
                    state,
                    attempts,
                    key,
                    self.owner,
                    now,
                ),
            ).rowcount
            if inserted:
                entry = JournalEntry(
                    identity, JournalState(state), attempts=attempts, idempotency_key=key
                )
                return Claim(ClaimKind.CLAIMED, entry, fresh=True)
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM items WHERE digest = ? AND occurrence = ?",
            (identity.digest, identity.occurrence),
        ).fetchone()
        if row is None:
            # Reclaiming an input whose row vanished (the file was edited by hand).
            raise JournalError(f"the journal {self.location} lost an input's row")
        entry = _entry(row)
        if entry.finished:
            return Claim(ClaimKind.FINISHED, entry)
        holder = row[12]
        if holder is not None and holder != self.owner:
            lease = conn.execute(
                "SELECT lease_until FROM workers WHERE owner = ?", (holder,)
            ).fetchone()
            # A lease that is not a number (a damaged file) has lapsed.
            until = lease[0] if lease is not None else None
            if isinstance(until, (int, float)) and until > now:
                return Claim(ClaimKind.BUSY, entry, lease_left=until - now)
        conn.execute(
            "UPDATE items SET owner = ? WHERE digest = ? AND occurrence = ?",
            (self.owner, identity.digest, identity.occurrence),
        )
        return Claim(ClaimKind.CLAIMED, entry)

    def claim(
        self, identity: Identity, request: tuple[str, str, str | None], *, submit: bool
    ) -> Awaitable[Claim]:
        if self._held:
            self._release(identity)
        # Durable when it may record "submitting": the create follows at once.
        return self._queue((_claim_new, (identity, request, submit)), durable=submit)

    async def reclaim(self, identity: Identity) -> Claim:
        if self._held:
            self._release(identity)
        return await self._do(  # type: ignore[no-any-return]
            lambda conn, now: self._take(conn, now, identity, None, None)
        )

    # --- Records --------------------------------------------------------------------------

    def _update(self, identity: Identity, sets: str, params: tuple[Any, ...]) -> _Op:
        # Data, not a closure: thousands a second, and fewer objects for the collector.
        sql = f"UPDATE items SET {sets}, updated = ? WHERE digest = ? AND occurrence = ?"
        return (_update_row, (sql, params, identity))

    def submitting(
        self, identity: Identity, attempts: int, key: str, *, video_url: str | None = None
    ) -> Awaitable[None]:
        if self._held:
            self._release(identity)
        return self._queue(
            self._update(
                identity,
                "state = ?, attempts = ?, idempotency_key = ?, task_id = NULL,"
                " error_code = NULL, error_message = NULL, retryable = 0,"
                " video_url = COALESCE(?, video_url)",
                (JournalState.SUBMITTING.value, attempts, key, video_url),
            ),
            durable=True,
        )

    def submitted(
        self,
        identity: Identity,
        task_id: str,
        credits: float | None,
        *,
        on_error: _OnError | None = None,
    ) -> Awaitable[None]:
        if on_error is not None:
            # Nobody waits on it: held a moment, so that a task finishing at once is
            # recorded by its "completed" write alone (``_SUBMITTED_HOLD``).
            self._held.pop(identity, None)
            self._held[identity] = (task_id, credits, on_error, time.monotonic() + _SUBMITTED_HOLD)
            if self._holding is None:
                self._holding = self._loop.call_later(_SUBMITTED_HOLD, self._release_due)
            return _NOTHING
        return self._queue(self._submitted_op(identity, task_id, credits), durable=True)

    def _submitted_op(self, identity: Identity, task_id: str, credits: float | None) -> _Op:
        return self._update(
            identity,
            "state = ?, task_id = ?, credits = ?",
            (JournalState.SUBMITTED.value, task_id, credits),
        )

    def _release(self, identity: Identity) -> None:
        """Queue ``identity``'s held "submitted" record now, ahead of what follows it."""
        held = self._held.pop(identity, None)
        if held is not None:
            task_id, credits, on_error, _ = held
            self._queue(
                self._submitted_op(identity, task_id, credits), durable=True, on_error=on_error
            )

    def _release_due(self) -> None:
        """The timer: queue the held records that are due, and wait for the next."""
        self._holding = None
        now = time.monotonic()
        for identity, (_, _, _, due) in list(self._held.items()):
            if due > now:
                self._holding = self._loop.call_at(
                    self._loop.time() + (due - now), self._release_due
                )
                break
            self._release(identity)

    def uncertain(self, identity: Identity, message: str) -> Awaitable[None]:
        if self._held:
            self._release(identity)
        return self._queue(
            self._update(
                identity,
                "state = ?, error_message = ?, owner = NULL",
                (JournalState.UNCERTAIN.value, message),
            )
        )

    def completed(
        self,
        identity: Identity,
        task_id: str,
        result_url: str | None,
        path: str | None,
        *,
        on_error: _OnError | None = None,
    ) -> Awaitable[None]:
        sets = (
            "state = ?, task_id = ?, result_url = ?, path = ?, error_code = NULL,"
            " error_message = NULL, owner = NULL"
        )
        params: tuple[Any, ...] = (JournalState.COMPLETED.value, task_id, result_url, path)
        held = self._held.pop(identity, None) if self._held else None
        if held is not None:
            # Its "submitted" record was still held: one write records both. Durable
            # as that record would have been.
            return self._queue(
                self._update(identity, f"{sets}, credits = ?", (*params, held[1])),
                durable=True,
                on_error=on_error if on_error is not None else held[2],
            )
        return self._queue(self._update(identity, sets, params), on_error=on_error)

    def failed(
        self,
        identity: Identity,
        *,
        code: str | None,
        message: str,
        retryable: bool,
        task_id: str | None = None,
        release: bool = True,
    ) -> Awaitable[None]:
        if self._held:
            self._release(identity)
        owner = ", owner = NULL" if release else ""
        return self._queue(
            self._update(
                identity,
                "state = ?, task_id = COALESCE(?, task_id), error_code = ?,"
                f" error_message = ?, retryable = ?{owner}",
                (JournalState.FAILED.value, task_id, code, message, int(retryable)),
            )
        )

    async def renew(self) -> None:
        """Extend this worker's lease: one row, however many inputs it holds. A claim
        on an input lives while its holder's lease does (``_take``)."""

        def op(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "INSERT INTO workers VALUES (?, ?) ON CONFLICT (owner)"
                " DO UPDATE SET lease_until = excluded.lease_until",
                (self.owner, now + self.lease_seconds),
            )
            # Workers long dead (killed, so never closed) leave a row: forget them.
            conn.execute("DELETE FROM workers WHERE lease_until < ?", (now - 86400,))

        await self._do(op)

    async def close(self) -> None:
        """Write what is queued, give up the leases still held (so that another worker
        or a rerun takes those inputs over at once), close. Never raises."""
        if self._closed:
            return
        if self._holding is not None:
            self._holding.cancel()
            self._holding = None
        for identity in list(self._held):
            self._release(identity)
        with contextlib.suppress(JournalError):
            await self._do(
                lambda conn, now: conn.execute("DELETE FROM workers WHERE owner = ?", (self.owner,))
            )
        self._closed = True
        flusher = self._flusher
        if flusher is not None:
            with contextlib.suppress(BaseException):
                await flusher
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=False)


def _claim_new(
    journal: SqliteJournal,
    conn: sqlite3.Connection,
    now: float,
    identity: Identity,
    request: tuple[str, str, str | None],
    submit: bool,
) -> Claim:
    """The claim op for an input read from the stream (it may be new to the journal)."""
    new: tuple[str, int, str | None]
    if submit:
        new = (JournalState.SUBMITTING.value, 1, journal.key_for(identity, 1))
    else:
        new = (JournalState.PENDING.value, 0, None)
    return journal._take(conn, now, identity, new, request)


def _update_row(
    journal: SqliteJournal,
    conn: sqlite3.Connection,
    now: float,
    sql: str,
    params: tuple[Any, ...],
    identity: Identity,
) -> None:
    conn.execute(sql, (*params, now, identity.digest, identity.occurrence))
