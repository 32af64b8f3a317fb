"""The journal on PostgreSQL: one batch worked by many hosts (docs/architecture.md#journals).

The journal's table is the queue. A batch is loaded into it (``load``: one row per
input, keyed by identity, so loading twice adds nothing), and every worker takes the next
free rows with ``SELECT … FOR UPDATE SKIP LOCKED`` (``claim_next``): two workers never
take one row, and neither waits for the other. A row taken carries its owner; an owner
lives while its row in ``omni_edit_workers`` is renewed (a heartbeat: one write per
worker, however many inputs it holds). Once a worker's lease lapses (it died), the next
worker that runs short of free rows gives its rows back to the queue (``_reap``), and
whoever takes one resumes it from what the row holds: the task id to wait on, or the
Idempotency-Key to replay. Times are the database's (``now()``), so the hosts' clocks
never have to agree.

Why not a task engine (procrastinate and kin): their job table would be a second record
of each input beside the journal's, and the one that matters, "this key was sent, this
task id came back", must be written in the same transaction as the claim that guards
it. Here the claim and the record are one row.

Writes are group-committed as in the SQLite journal: every record is queued, and one
writer task applies what has queued up in one transaction (statements of one kind in one
``executemany``, pipelined). A group without a "submitting" or "submitted" record commits
with ``synchronous_commit = off``: losing it to a crash of the server costs a rerun one
read, never a second task (docs/reliability.md#journal).

The account's in-flight cap is shared through ``omni_edit_slots`` (one row per request
allowed in flight, held by a live worker) and the 429 pause through a row and a
``NOTIFY`` (the budget calls below, used by ``edit_many``'s ``_share_account``).

The connection URL's password never appears in ``location``, a message or a log line:
``redact_dsn`` replaces it, and every database error's text is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._constants import JOURNAL_LEASE_SECONDS
from .._exceptions import JournalError, ValidationError
from .journal import Claim, ClaimKind, Identity, JournalEntry, JournalState, derive_key

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "INSTALL_HINT",
    "SCHEMA_VERSION",
    "BatchCounts",
    "PostgresJournal",
    "is_postgres_url",
    "redact_dsn",
    "require_postgres_driver",
]

# 1: items keyed by identity with a position (seq) and a queue flag; workers; slots.
SCHEMA_VERSION = 1
INSTALL_HINT = "pip install 'omni-edit[postgres]'"
# Connections per worker: the writer, the claimer and the account's share, with room.
_POOL_SIZE = 4
# Serialises schema creation between processes opening a new database at once.
_SCHEMA_LOCK = 0x6F6D6E69  # "omni"
_CHANNEL = "omni_edit_pause"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS omni_edit_meta (key text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE IF NOT EXISTS omni_edit_items (
        digest text NOT NULL,
        occurrence integer NOT NULL,
        seq bigint NOT NULL DEFAULT 0,
        video_url text NOT NULL,
        prompt text NOT NULL,
        callback_url text,
        state text NOT NULL,
        task_id text,
        attempts integer NOT NULL DEFAULT 0,
        result_url text,
        path text,
        error_code text,
        error_message text,
        retryable boolean NOT NULL DEFAULT false,
        credits double precision,
        idempotency_key text,
        owner text,
        queued boolean NOT NULL DEFAULT false,
        updated timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (digest, occurrence)
    )""",
    # The queue: free rows in load order. Small (only rows waiting), so a claim reads a
    # few index entries, however large the batch.
    "CREATE INDEX IF NOT EXISTS omni_edit_items_free ON omni_edit_items (seq)"
    " WHERE queued AND owner IS NULL",
    "CREATE INDEX IF NOT EXISTS omni_edit_items_owner ON omni_edit_items (owner)"
    " WHERE owner IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS omni_edit_items_queued ON omni_edit_items (seq) WHERE queued",
    """CREATE TABLE IF NOT EXISTS omni_edit_workers (
        owner text PRIMARY KEY,
        lease_until timestamptz NOT NULL,
        loading boolean NOT NULL DEFAULT false,
        -- Requests this worker could have in flight now: its claim on the account's cap.
        want integer NOT NULL DEFAULT 0
    )""",
    "CREATE TABLE IF NOT EXISTS omni_edit_slots (slot integer PRIMARY KEY, owner text)",
)

# A row nothing more will happen to (``JournalEntry.finished``).
_FINISHED = "(i.state = 'completed' OR (i.state = 'failed' AND NOT i.retryable))"
_COLUMNS = (
    "digest, occurrence, state, task_id, attempts, result_url, path, error_code,"
    " error_message, retryable, credits, idempotency_key, owner"
)

_OnError = Callable[[JournalError], None]
# A queued operation: (sql, args) applied with others of its statement in one
# executemany, or a coroutine function of the connection.
_Op: TypeAlias = "tuple[str, tuple[Any, ...]] | Callable[[asyncpg.Connection], Awaitable[Any]]"
_Target: TypeAlias = "asyncio.Future[Any] | _OnError | None"


def is_postgres_url(journal: str) -> bool:
    return journal.startswith(("postgresql://", "postgres://"))


def redact_dsn(url: str) -> str:
    """The URL with its password (in the userinfo or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = [
        (k, "***" if k.lower() in ("password", "passfile", "sslpassword") else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), ""))


def _password(url: str) -> str | None:
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
        return found[0] if found else None
    return None


def require_postgres_driver() -> None:
    """``ValidationError`` naming the extra to install when the driver is missing."""
    _driver()


def _driver() -> Any:
    try:
        import asyncpg
    except ImportError:
        raise ValidationError(
            f"a postgresql:// journal needs the PostgreSQL driver: {INSTALL_HINT}",
            field="journal",
        ) from None
    return asyncpg


class BatchCounts:
    """A whole batch's progress, as ``omni-edit status --journal`` shows it."""

    __slots__ = ("by_state", "queued", "total", "workers")

    def __init__(self, by_state: dict[str, int], queued: int, workers: int) -> None:
        self.by_state = by_state
        self.total = sum(by_state.values())
        self.queued = queued
        self.workers = workers


def _entry(row: Any) -> JournalEntry:
    try:
        state = JournalState(row["state"])
    except ValueError:
        raise ValidationError(
            f"the journal's row for this input is damaged (state {str(row['state'])[:20]!r}):"
            " it was not written by omni_edit",
            field="journal",
        ) from None
    return JournalEntry(
        identity=Identity(row["digest"], row["occurrence"]),
        state=state,
        task_id=row["task_id"],
        attempts=row["attempts"],
        result_url=row["result_url"],
        path=row["path"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        retryable=row["retryable"],
        credits=row["credits"],
        idempotency_key=row["idempotency_key"],
    )


class PostgresJournal:
    """An open shared journal: ``await PostgresJournal.open(url)``, then ``close()``."""

    def __init__(
        self, pool: Any, location: str, password: str | None, salt: bytes, lease_seconds: float
    ) -> None:
        self._pool = pool
        self.location = location
        self._password = password
        self._salt = salt
        self.lease_seconds = lease_seconds
        self.owner = secrets.token_hex(8)
        self._pending: list[tuple[_Op, bool, _Target]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._driver = _driver()
        # Seconds spent waiting on the database, for benchmarks/bench_postgres.py.
        self.db_seconds = 0.0
        self._listener: Any = None
        self._writer: Any = None
        self._on_pause: Callable[[float], None] | None = None

    def __repr__(self) -> str:
        return f"PostgresJournal({self.location!r})"

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        lease_seconds: float | None = None,
        loading: bool = False,
        register: bool = True,
    ) -> PostgresJournal:
        """Connect, create the schema (or check its version), and start this worker's
        lease. ``ValidationError`` (field ``journal``) for a database of another schema
        version or without the driver; ``JournalError`` when it cannot be reached."""
        driver = _driver()
        location = redact_dsn(url)
        password = _password(url)
        try:
            pool = await driver.create_pool(url, min_size=1, max_size=_POOL_SIZE)
        except (OSError, driver.PostgresError, ValueError) as exc:
            raise JournalError(
                f"the journal {location} could not be reached"
                f" ({_scrub(str(exc), password)}): check the URL and that the server is up"
            ) from None
        try:
            salt = await _prepare(pool, location, password)
            lease = JOURNAL_LEASE_SECONDS if lease_seconds is None else lease_seconds
            journal = cls(pool, location, password, salt, lease)
            if register:  # a reader (``batch_status``) is no worker
                await journal._register(loading)
        except BaseException:
            await pool.close()
            raise
        return journal

    # --- The writer -----------------------------------------------------------------------

    def _queue(
        self, op: _Op, *, durable: bool = False, on_error: _OnError | None = None
    ) -> Awaitable[Any]:
        loop = asyncio.get_running_loop()
        target: _Target
        result: Awaitable[Any]
        if on_error is not None:
            target = on_error
            done: asyncio.Future[Any] = loop.create_future()
            done.set_result(None)
            result = done
        else:
            target = result = loop.create_future()
        if self._closed:
            self._settle(target, False, JournalError(f"the journal {self.location} is closed"))
            return result
        self._pending.append((op, durable, target))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(), name="omni_edit journal writer")
        return result

    def _settle(self, target: _Target, ok: bool, value: Any) -> None:
        if isinstance(target, asyncio.Future):
            if target.done():
                return
            if ok:
                target.set_result(value)
            else:
                target.set_exception(self._error(value))
        elif target is not None and not ok:
            error = self._error(value)
            if isinstance(error, JournalError):
                target(error)

    async def _flush(self) -> None:
        group: list[tuple[_Op, bool, _Target]] = []
        try:
            while self._pending:
                group, self._pending = self._pending, []
                durable = any(d for _, d, _ in group)
                results: list[tuple[bool, Any]] = []
                failure: BaseException | None = None
                try:
                    results = await self._timed(self._apply(group, durable))
                except Exception as exc:
                    failure = exc
                if failure is not None:
                    results = [(False, failure)] * len(group)
                for (_, _, target), (ok, value) in zip(group, results, strict=True):
                    self._settle(target, ok, value)
                group = []
        finally:
            self._flusher = None
            closed = JournalError(f"the journal {self.location} was closed")
            for _, _, target in [*group, *self._pending]:
                self._settle(target, False, closed)
            self._pending = []

    async def _apply(
        self, group: list[tuple[_Op, bool, _Target]], durable: bool
    ) -> list[tuple[bool, Any]]:
        """The group in one transaction; consecutive records of one statement in one
        pipelined ``executemany``."""
        # The writer's own connection, held for the journal's life: a connection taken
        # from the pool and given back costs a reset (a round trip) each time.
        conn = self._writer
        if conn is None:
            conn = self._writer = await self._pool.acquire()
        try:
            # One round trip to open the transaction, however durable it must be.
            await conn.execute("BEGIN" if durable else "BEGIN; SET LOCAL synchronous_commit = off")
            results = await self._statements(conn, group)
            await conn.execute("COMMIT")
        except BaseException:
            # Nothing of the group is trusted written; a fresh connection for the next.
            self._writer = None
            with contextlib.suppress(Exception):
                await self._pool.release(conn)
            raise
        return results

    async def _statements(
        self, conn: Any, group: list[tuple[_Op, bool, _Target]]
    ) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        i = 0
        while i < len(group):
            op = group[i][0]
            if isinstance(op, tuple):
                sql = op[0]
                j = i
                batch: list[tuple[Any, ...]] = []
                while j < len(group):
                    other = group[j][0]
                    if not isinstance(other, tuple) or other[0] != sql:
                        break
                    batch.append(other[1])
                    j += 1
                await conn.executemany(sql, batch)
                results.extend([(True, None)] * (j - i))
                i = j
                continue
            try:
                results.append((True, await op(conn)))
            except (ValidationError, JournalError) as exc:
                results.append((False, exc))
            i += 1
        return results

    async def _timed(self, work: Awaitable[Any]) -> Any:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            return await work
        finally:
            self.db_seconds += loop.time() - start

    def _error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, (self._driver.PostgresError, self._driver.InterfaceError, OSError)):
            return JournalError(
                f"the journal {self.location} could not be used"
                f" ({_scrub(str(exc), self._password)}): check the server, then run the"
                " same command again; it resumes from what the journal holds"
            )
        return exc

    async def _run(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        """``work(conn)`` in a transaction of its own, not queued (claims, reads)."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                return await self._timed(work(conn))
        except Exception as exc:
            raise self._error(exc) from None

    # --- Workers and leases ---------------------------------------------------------------

    async def _register(self, loading: bool) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO omni_edit_workers (owner, lease_until, loading)"
                " VALUES ($1, now() + make_interval(secs => $2), $3)",
                self.owner,
                self.lease_seconds,
                loading,
            )

        await self._run(op)

    async def renew(self) -> None:
        """Extend this worker's lease: one row, however many inputs it holds."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO omni_edit_workers (owner, lease_until) VALUES"
                " ($1, now() + make_interval(secs => $2)) ON CONFLICT (owner)"
                " DO UPDATE SET lease_until = excluded.lease_until",
                self.owner,
                self.lease_seconds,
            )

        await self._run(op)

    async def loaded(self) -> None:
        """This worker has loaded its inputs: the batch may end without it."""
        await self._run(
            lambda conn: conn.execute(
                "UPDATE omni_edit_workers SET loading = false WHERE owner = $1", self.owner
            )
        )

    async def close(self) -> None:
        """Write what is queued, give the rows and slots still held back, close."""
        if self._closed:
            return
        with contextlib.suppress(JournalError):
            await self._queue(self._release_all)
        self._closed = True
        flusher = self._flusher
        if flusher is not None:
            with contextlib.suppress(BaseException):
                await flusher
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(self._writer)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.remove_listener(_CHANNEL, self._heard)
            with contextlib.suppress(Exception):
                await self._pool.release(self._listener)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._pool.close(), 10)

    async def _release_all(self, conn: Any) -> None:
        await conn.execute("UPDATE omni_edit_items SET owner = NULL WHERE owner = $1", self.owner)
        await conn.execute("UPDATE omni_edit_slots SET owner = NULL WHERE owner = $1", self.owner)
        await conn.execute("DELETE FROM omni_edit_workers WHERE owner = $1", self.owner)

    # --- Loading and the queue ------------------------------------------------------------

    async def load(self, rows: Sequence[tuple[int, Identity, tuple[str, str, str | None]]]) -> int:
        """Put inputs (position, identity, request) in the queue; an input already in the
        journal is not added again (an unfinished one is queued again: the rerun of a
        batch). Returns how many were new."""
        if not rows:
            return 0

        async def op(conn: Any) -> int:
            found = await conn.fetch(
                "INSERT INTO omni_edit_items AS i (seq, digest, occurrence, video_url, prompt,"
                " callback_url, state, queued)"
                " SELECT s, d, o, v, p, c, 'pending', true FROM unnest($1::bigint[],"
                " $2::text[], $3::integer[], $4::text[], $5::text[], $6::text[])"
                " AS t(s, d, o, v, p, c)"
                # Known already: its position follows this load (the loading host's
                # report and output names go by it), and an unfinished one is queued.
                " ON CONFLICT (digest, occurrence) DO UPDATE SET seq = excluded.seq,"
                f" queued = i.queued OR NOT {_FINISHED}"
                f" WHERE i.seq <> excluded.seq OR (NOT i.queued AND NOT {_FINISHED})"
                " RETURNING (xmax = 0) AS inserted",
                [r[0] for r in rows],
                [r[1].digest for r in rows],
                [r[1].occurrence for r in rows],
                [r[2][0] for r in rows],
                [r[2][1] for r in rows],
                [r[2][2] for r in rows],
            )
            return sum(1 for row in found if row["inserted"])

        return int(await self._run(op))

    async def claim_next(
        self, limit: int, *, submit: bool
    ) -> list[tuple[int, tuple[str, str, str | None], Claim]]:
        """Take up to ``limit`` free inputs, in load order: (position, request, claim)
        each. With ``submit``, an input never tried is taken as "submitting" with its
        first key (``fresh``): its create may follow at once."""

        taken: list[tuple[int, tuple[str, str, str | None], Claim]] = []

        async def op(conn: Any) -> None:
            taken.clear()
            rows = await self._take_free(conn, limit)
            if len(rows) < limit and await self._reap(conn):
                rows += await self._take_free(conn, limit - len(rows))
            rows.sort(key=lambda r: r["seq"])
            fresh: list[tuple[str, int, str]] = []
            for row in rows:
                request = (row["video_url"], row["prompt"], row["callback_url"])
                try:
                    entry = _entry(row)
                except ValidationError:
                    continue  # a damaged row stays held until this worker's lease ends
                if entry.finished:
                    taken.append((row["seq"], request, Claim(ClaimKind.FINISHED, entry)))
                elif submit and entry.state is JournalState.PENDING and entry.attempts == 0:
                    key = self.key_for(entry.identity, 1)
                    fresh.append((entry.identity.digest, entry.identity.occurrence, key))
                    entry = JournalEntry(
                        entry.identity, JournalState.SUBMITTING, attempts=1, idempotency_key=key
                    )
                    claim = Claim(ClaimKind.CLAIMED, entry, fresh=True)
                    taken.append((row["seq"], request, claim))
                else:
                    taken.append((row["seq"], request, Claim(ClaimKind.CLAIMED, entry)))
            if fresh:
                # "submitting" with the first key, in the claim's own (durable) commit.
                await conn.execute(
                    "UPDATE omni_edit_items AS i SET state = 'submitting', attempts = 1,"
                    " idempotency_key = k.key, updated = now()"
                    " FROM unnest($1::text[], $2::integer[], $3::text[]) AS k(d, o, key)"
                    " WHERE i.digest = k.d AND i.occurrence = k.o",
                    [f[0] for f in fresh],
                    [f[1] for f in fresh],
                    [f[2] for f in fresh],
                )

        await self._run(op)
        return taken

    async def _take_free(self, conn: Any, limit: int) -> list[Any]:
        return list(
            await conn.fetch(
                "WITH picked AS (SELECT digest, occurrence FROM omni_edit_items"
                " WHERE queued AND owner IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)"
                " UPDATE omni_edit_items AS i SET owner = $2 FROM picked"
                " WHERE i.digest = picked.digest AND i.occurrence = picked.occurrence"
                f" RETURNING i.seq, i.video_url, i.prompt, i.callback_url, {_prefixed('i')}",
                limit,
                self.owner,
            )
        )

    async def _reap(self, conn: Any) -> int:
        """Give the rows of workers whose lease lapsed back to the queue."""
        result = await conn.execute(
            "WITH dead AS (DELETE FROM omni_edit_workers WHERE lease_until < now()"
            " RETURNING owner) UPDATE omni_edit_items SET owner = NULL"
            " WHERE owner IN (SELECT owner FROM dead)"
        )
        return int(result.rsplit(" ", 1)[-1])

    async def batch_left(self) -> tuple[int, bool]:
        """(inputs still queued, whether a worker is still loading inputs)."""

        async def op(conn: Any) -> tuple[int, bool]:
            left = await conn.fetchval("SELECT count(*) FROM omni_edit_items WHERE queued")
            loading = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM omni_edit_workers WHERE loading"
                " AND lease_until > now() AND owner <> $1)",
                self.owner,
            )
            return int(left), bool(loading)

        result: tuple[int, bool] = await self._run(op)
        return result

    async def counts(self) -> BatchCounts:
        async def op(conn: Any) -> BatchCounts:
            rows = await conn.fetch(
                "SELECT state, retryable, count(*) AS n FROM omni_edit_items GROUP BY 1, 2"
            )
            by_state: dict[str, int] = {}
            for row in rows:
                name = row["state"]
                if name == "failed" and row["retryable"]:
                    name = "failed_retryable"
                by_state[name] = by_state.get(name, 0) + row["n"]
            queued = await conn.fetchval("SELECT count(*) FROM omni_edit_items WHERE queued")
            workers = await conn.fetchval(
                "SELECT count(*) FROM omni_edit_workers WHERE lease_until > now() AND owner <> $1",
                self.owner,
            )
            return BatchCounts(by_state, int(queued), int(workers))

        result: BatchCounts = await self._run(op)
        return result

    async def entries(
        self, after: int, limit: int
    ) -> list[tuple[int, tuple[str, str, str | None], JournalEntry]]:
        """Rows in load order, from position ``after`` (exclusive): for a report."""

        async def op(conn: Any) -> list[Any]:
            return list(
                await conn.fetch(
                    f"SELECT seq, video_url, prompt, callback_url, {_COLUMNS}"
                    " FROM omni_edit_items WHERE seq > $1 AND queued = false"
                    " AND state IN ('completed', 'failed', 'uncertain') ORDER BY seq LIMIT $2",
                    after,
                    limit,
                )
            )

        rows = await self._run(op)
        found = []
        for row in rows:
            request = (row["video_url"], row["prompt"], row["callback_url"])
            found.append((row["seq"], request, _entry(row)))
        return found

    # --- Claims by identity (the JournalStore protocol) -----------------------------------

    def key_for(self, identity: Identity, attempt: int) -> str:
        return derive_key(self._salt, identity, attempt)

    def claim(
        self, identity: Identity, request: tuple[str, str, str | None], *, submit: bool
    ) -> Awaitable[Claim]:
        new: tuple[str, int, str | None]
        if submit:
            new = (JournalState.SUBMITTING.value, 1, self.key_for(identity, 1))
        else:
            new = (JournalState.PENDING.value, 0, None)

        async def op(conn: Any) -> Claim:
            return await self._take(conn, identity, new, request)

        return self._queue(op, durable=submit)

    async def reclaim(self, identity: Identity) -> Claim:
        async def op(conn: Any) -> Claim:
            return await self._take(conn, identity, None, None)

        result: Claim = await self._queue(op)
        return result

    async def _take(
        self,
        conn: Any,
        identity: Identity,
        new: tuple[str, int, str | None] | None,
        request: tuple[str, str, str | None] | None,
    ) -> Claim:
        if new is not None and request is not None:
            state, attempts, key = new
            inserted = await conn.fetchval(
                "INSERT INTO omni_edit_items (digest, occurrence, video_url, prompt,"
                " callback_url, state, attempts, idempotency_key, owner)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT DO NOTHING RETURNING 1",
                identity.digest,
                identity.occurrence,
                *request,
                state,
                attempts,
                key,
                self.owner,
            )
            if inserted:
                entry = JournalEntry(
                    identity, JournalState(state), attempts=attempts, idempotency_key=key
                )
                return Claim(ClaimKind.CLAIMED, entry, fresh=True)
        row = await conn.fetchrow(
            f"SELECT {_prefixed('i')}, (SELECT extract(epoch FROM w.lease_until - now())"
            " FROM omni_edit_workers w WHERE w.owner = i.owner) AS left"
            " FROM omni_edit_items i WHERE digest = $1 AND occurrence = $2"
            " FOR UPDATE OF i SKIP LOCKED",
            identity.digest,
            identity.occurrence,
        )
        if row is None:
            exists = await conn.fetchval(
                "SELECT 1 FROM omni_edit_items WHERE digest = $1 AND occurrence = $2",
                identity.digest,
                identity.occurrence,
            )
            if exists is None:
                raise JournalError(f"the journal {self.location} lost an input's row")
            # Another worker is writing it this instant: look again shortly.
            entry = JournalEntry(identity, JournalState.PENDING)
            return Claim(ClaimKind.BUSY, entry, lease_left=0.05)
        entry = _entry(row)
        if entry.finished:
            return Claim(ClaimKind.FINISHED, entry)
        holder, left = row["owner"], row["left"]
        if holder is not None and holder != self.owner and left is not None and left > 0:
            return Claim(ClaimKind.BUSY, entry, lease_left=float(left))
        await conn.execute(
            "UPDATE omni_edit_items SET owner = $1 WHERE digest = $2 AND occurrence = $3",
            self.owner,
            identity.digest,
            identity.occurrence,
        )
        return Claim(ClaimKind.CLAIMED, entry)

    # --- Records --------------------------------------------------------------------------

    def _update(self, identity: Identity, sets: str, params: tuple[Any, ...]) -> _Op:
        n = len(params)
        sql = (
            f"UPDATE omni_edit_items SET {sets}, updated = now()"
            f" WHERE digest = ${n + 1} AND occurrence = ${n + 2}"
        )
        return (sql, (*params, identity.digest, identity.occurrence))

    def submitting(
        self, identity: Identity, attempts: int, key: str, *, video_url: str | None = None
    ) -> Awaitable[None]:
        return self._queue(
            self._update(
                identity,
                "state = $1, attempts = $2, idempotency_key = $3, task_id = NULL,"
                " error_code = NULL, error_message = NULL, retryable = false,"
                " video_url = COALESCE($4, video_url)",
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
        return self._queue(
            self._update(
                identity,
                "state = $1, task_id = $2, credits = $3",
                (JournalState.SUBMITTED.value, task_id, credits),
            ),
            durable=True,
            on_error=on_error,
        )

    def uncertain(self, identity: Identity, message: str) -> Awaitable[None]:
        # Done for this run: a rerun (loading the batch again) replays its key.
        return self._queue(
            self._update(
                identity,
                "state = $1, error_message = $2, owner = NULL, queued = false",
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
        return self._queue(
            self._update(
                identity,
                "state = $1, task_id = $2, result_url = $3, path = $4, error_code = NULL,"
                " error_message = NULL, owner = NULL, queued = false",
                (JournalState.COMPLETED.value, task_id, result_url, path),
            ),
            on_error=on_error,
        )

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
        owner = ", owner = NULL, queued = false" if release else ""
        return self._queue(
            self._update(
                identity,
                "state = $1, task_id = COALESCE($2, task_id), error_code = $3,"
                f" error_message = $4, retryable = $5{owner}",
                (JournalState.FAILED.value, task_id, code, message, retryable),
            )
        )

    # --- The account's budget (used by edit_many's _share_account) --------------------------

    async def set_account_cap(self, cap: int) -> None:
        """Make the account's in-flight cap ``cap`` requests, for every worker."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO omni_edit_meta VALUES ('account_concurrency', $1)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                str(cap),
            )
            await conn.execute("DELETE FROM omni_edit_slots WHERE slot >= $1", cap)
            await conn.execute(
                "INSERT INTO omni_edit_slots (slot) SELECT generate_series(0, $1 - 1)"
                " ON CONFLICT DO NOTHING",
                cap,
            )

        await self._run(op)

    async def account_cap(self) -> int | None:
        value = await self._run(
            lambda conn: conn.fetchval(
                "SELECT value FROM omni_edit_meta WHERE key = 'account_concurrency'"
            )
        )
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    async def share_slots(self, held: int, want: int) -> tuple[int, int, float]:
        """This worker's fair share of the account's slots, given that it could use
        ``want`` now: (slots to take or, if negative, to give back, slots it now holds,
        seconds of 429 pause left). The cap is shared out as water fills vessels: a
        worker that needs less than an equal share leaves the rest to those that need
        more. Slots are taken here, in the database, before this worker may use them;
        slots to give back are given back by ``give_slots`` once they are free here."""

        async def op(conn: Any) -> tuple[int, int, float]:
            cap = await conn.fetchval("SELECT count(*) FROM omni_edit_slots")
            await conn.execute(
                "UPDATE omni_edit_workers SET want = $2 WHERE owner = $1", self.owner, want
            )
            wants = [
                row["want"]
                for row in await conn.fetch(
                    "SELECT want FROM omni_edit_workers WHERE lease_until > now()"
                )
            ]
            level = _water_level(wants, cap)
            target = want if level == math.inf else min(want, math.ceil(level))
            pause = await conn.fetchval(
                "SELECT greatest(0, extract(epoch FROM value::timestamptz - now()))"
                " FROM omni_edit_meta WHERE key = 'pause_until'"
            )
            pause = float(pause or 0.0)
            if target <= held:
                return target - held, held, pause
            got = await conn.fetch(
                "UPDATE omni_edit_slots SET owner = $1 WHERE slot IN (SELECT slot FROM"
                " omni_edit_slots s WHERE s.owner IS NULL OR NOT EXISTS (SELECT 1 FROM"
                " omni_edit_workers w WHERE w.owner = s.owner AND w.lease_until > now())"
                " LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING slot",
                self.owner,
                target - held,
            )
            return len(got), held + len(got), pause

        result: tuple[int, int, float] = await self._run(op)
        return result

    async def give_slots(self, count: int) -> None:
        await self._run(
            lambda conn: conn.execute(
                "UPDATE omni_edit_slots SET owner = NULL WHERE slot IN (SELECT slot FROM"
                " omni_edit_slots WHERE owner = $1 LIMIT $2)",
                self.owner,
                count,
            )
        )

    def publish_pause(self, seconds: float) -> None:
        """A 429 seen here: every worker pauses (a row for those that look later, a
        notification for those listening). Not waited for."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO omni_edit_meta VALUES ('pause_until',"
                " (now() + make_interval(secs => $1))::text) ON CONFLICT (key) DO UPDATE"
                " SET value = greatest(omni_edit_meta.value::timestamptz,"
                " excluded.value::timestamptz)::text",
                seconds,
            )
            await conn.execute("SELECT pg_notify($1, $2)", _CHANNEL, f"{self._tag}:{seconds}")

        self._queue(op, on_error=_ignore)

    @property
    def _tag(self) -> str:
        # Tells this journal's notifications from another's on the same database.
        return self._salt[:6].hex()

    async def listen(self, on_pause: Callable[[float], None]) -> None:
        """Hear the pauses other workers publish."""
        self._on_pause = on_pause
        try:
            self._listener = await self._pool.acquire()
            await self._listener.add_listener(_CHANNEL, self._heard)
        except Exception as exc:
            raise self._error(exc) from None

    def _heard(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        tag, _, seconds = payload.partition(":")
        if tag != self._tag or self._on_pause is None:
            return
        with contextlib.suppress(ValueError):
            self._on_pause(float(seconds))


def _water_level(wants: list[int], cap: int) -> float:
    """The level L at which sum(min(want, L)) reaches ``cap`` (infinite when all wants
    fit): each worker's share is min(its want, L)."""
    left = float(cap)
    ordered = sorted(wants)
    for i, want in enumerate(ordered):
        equal = left / (len(ordered) - i)
        if want >= equal:
            return equal
        left -= want
    return math.inf


def _ignore(error: JournalError) -> None:
    """A pause that could not be published: each worker still pauses on its own 429s."""


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in _COLUMNS.split(","))


def _scrub(text: str, password: str | None) -> str:
    if password:
        text = text.replace(password, "***")
    return text[:300]


async def _prepare(pool: Any, location: str, password: str | None) -> bytes:
    """Create the schema (once, under an advisory lock) or check its version; the salt."""
    driver = _driver()
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            for statement in _SCHEMA:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO omni_edit_meta VALUES ('schema_version', $1) ON CONFLICT DO NOTHING",
                str(SCHEMA_VERSION),
            )
            await conn.execute(
                "INSERT INTO omni_edit_meta VALUES ('salt', $1) ON CONFLICT DO NOTHING",
                secrets.token_hex(32),
            )
            found = {
                row["key"]: row["value"]
                for row in await conn.fetch("SELECT key, value FROM omni_edit_meta")
            }
    except (driver.PostgresError, driver.InterfaceError, OSError) as exc:
        raise JournalError(
            f"the journal {location} could not be prepared ({_scrub(str(exc), password)})"
        ) from None
    version = found.get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise ValidationError(
            f"the journal {location} was written with schema version {str(version)[:20]!r};"
            f" this omni_edit reads version {SCHEMA_VERSION}. Finish that batch with the"
            " omni_edit version that started it, or use another database or schema",
            field="journal",
        )
    try:
        salt = bytes.fromhex(found["salt"])
        if len(salt) < 16:
            raise ValueError("too short")
    except (KeyError, ValueError):
        raise ValidationError(
            f"the journal {location} is damaged (its salt is unreadable)", field="journal"
        ) from None
    return salt
