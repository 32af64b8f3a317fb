"""The batch journal: one SQLite row per input, so a rerun resumes without paying twice.

Each input moves ``submitting`` -> ``submitted`` (task id) -> ``completed`` (result URL,
path) or ``failed`` (error). ``submitting`` is committed *before* the create request and
the task id in the same breath as its answer, both with ``synchronous=FULL``: a task id
lost to a crash is a task paid for twice (docs/reliability.md#journal). An input found in
``submitting`` (or ``uncertain``) may have created a task: it is not submitted again
unless the caller says so.

Rows are keyed by the input's position and carry a fingerprint of its content, so a
journal reused for different inputs is noticed instead of trusted. SQLite calls run on
one worker thread, off the event loop.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable
from os import PathLike
from typing import Any, TypeVar

import anyio
import attrs

from .._exceptions import JournalError, ValidationError

__all__ = ["Journal", "JournalEntry", "JournalState", "fingerprint"]

_T = TypeVar("_T")
# 2: items carry the Idempotency-Key of their create request.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    idx INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
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
    updated REAL NOT NULL
);
"""


class JournalState(str, enum.Enum):
    SUBMITTING = "submitting"  # about to POST, or the POST's answer was never recorded
    UNCERTAIN = "uncertain"  # the POST was sent and its answer lost
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    FAILED = "failed"


@attrs.frozen
class JournalEntry:
    index: int
    fingerprint: str
    state: JournalState
    task_id: str | None = None
    attempts: int = 0
    result_url: str | None = None
    path: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False
    credits: float | None = None
    idempotency_key: str | None = None


def fingerprint(video_url: str, prompt: str, callback_url: str | None) -> str:
    """A stable digest of what an input asks for."""
    text = "\0".join((video_url, prompt, callback_url or ""))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Journal:
    """An open journal file. Use ``await Journal.open(path)`` and ``await close()``."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        # One thread at a time: the connection is shared, SQLite calls are serialised.
        self._limiter = anyio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: str | PathLike[str]) -> Journal:
        """Open (or create) the journal at ``path``.

        Raises ``ValidationError`` (field ``journal``) for a file that is not a journal,
        or one written with another schema version: its rows would be misread.
        """

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a committed task id survives power loss, not only a crash.
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=5000")
                conn.executescript(_SCHEMA)
                conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                (found,) = conn.execute(
                    "SELECT value FROM meta WHERE key = 'schema_version'"
                ).fetchone()
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise ValidationError(
                    f"{os.fspath(path)} is not an omni_edit journal ({exc}): name a new"
                    " file for the journal",
                    field="journal",
                ) from None
            if found != str(SCHEMA_VERSION):
                conn.close()
                raise ValidationError(
                    # The file may be anyone's: show its version bounded and quoted.
                    f"the journal {os.fspath(path)} was written with schema version"
                    f" {str(found)[:20]!r};"
                    f" this omni_edit reads version {SCHEMA_VERSION}. Finish that batch with"
                    " the omni_edit version that started it, or start afresh with a new"
                    " journal file",
                    field="journal",
                )
            return conn

        return cls(await anyio.to_thread.run_sync(connect), str(path))

    async def _run(self, fn: Callable[[], _T]) -> _T:
        try:
            return await anyio.to_thread.run_sync(fn, limiter=self._limiter)
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(
                f"the journal {self.path} could not be used ({exc}): free disk space, or"
                " make the file writable, then run the same batch again; it resumes from"
                " what the journal holds"
            ) from exc

    async def get(self, index: int) -> JournalEntry | None:
        def read() -> Any:
            return self._conn.execute(
                "SELECT idx, fingerprint, state, task_id, attempts, result_url, path,"
                " error_code, error_message, retryable, credits, idempotency_key"
                " FROM items WHERE idx = ?",
                (index,),
            ).fetchone()

        row = await self._run(read)
        if row is None:
            return None
        return JournalEntry(
            index=row[0],
            fingerprint=row[1],
            state=JournalState(row[2]),
            task_id=row[3],
            attempts=row[4],
            result_url=row[5],
            path=row[6],
            error_code=row[7],
            error_message=row[8],
            retryable=bool(row[9]),
            credits=row[10],
            idempotency_key=row[11],
        )

    async def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        def write() -> None:
            self._conn.execute(sql, params)

        await self._run(write)

    async def submitting(self, index: int, digest: str, attempts: int, key: str) -> None:
        """Recorded, and durable, before the create request is sent: with its
        Idempotency-Key, so that a rerun after a crash replays the same key."""
        await self._write(
            "INSERT INTO items (idx, fingerprint, state, attempts, idempotency_key, updated)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT(idx) DO UPDATE SET state=excluded.state,"
            " attempts=excluded.attempts, idempotency_key=excluded.idempotency_key,"
            " task_id=NULL, error_code=NULL, error_message=NULL, retryable=0,"
            " updated=excluded.updated",
            (index, digest, JournalState.SUBMITTING.value, attempts, key, time.time()),
        )

    async def submitted(self, index: int, task_id: str, credits: float | None) -> None:
        await self._write(
            "UPDATE items SET state=?, task_id=?, credits=?, updated=? WHERE idx=?",
            (JournalState.SUBMITTED.value, task_id, credits, time.time(), index),
        )

    async def uncertain(self, index: int, message: str) -> None:
        await self._write(
            "UPDATE items SET state=?, error_message=?, updated=? WHERE idx=?",
            (JournalState.UNCERTAIN.value, message, time.time(), index),
        )

    async def completed(
        self, index: int, digest: str, task_id: str, result_url: str | None, path: str | None
    ) -> None:
        await self._write(
            "INSERT INTO items (idx, fingerprint, state, task_id, result_url, path, updated)"
            " VALUES (?,?,?,?,?,?,?) ON CONFLICT(idx) DO UPDATE SET state=excluded.state,"
            " task_id=excluded.task_id, result_url=excluded.result_url, path=excluded.path,"
            " error_code=NULL, error_message=NULL, updated=excluded.updated",
            (index, digest, JournalState.COMPLETED.value, task_id, result_url, path, time.time()),
        )

    async def failed(
        self,
        index: int,
        digest: str,
        *,
        code: str | None,
        message: str,
        retryable: bool,
        task_id: str | None = None,
    ) -> None:
        await self._write(
            "INSERT INTO items (idx, fingerprint, state, task_id, error_code, error_message,"
            " retryable, updated) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(idx) DO UPDATE SET"
            " state=excluded.state, task_id=COALESCE(excluded.task_id, items.task_id),"
            " error_code=excluded.error_code, error_message=excluded.error_message,"
            " retryable=excluded.retryable, updated=excluded.updated",
            (
                index,
                digest,
                JournalState.FAILED.value,
                task_id,
                code,
                message,
                int(retryable),
                time.time(),
            ),
        )

    async def close(self) -> None:
        with contextlib.suppress(JournalError):
            await self._run(self._conn.close)
