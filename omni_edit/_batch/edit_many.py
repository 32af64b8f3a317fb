"""``edit_many``: thousands of clips, one call, outcomes streaming back as they finish.

Shape: a runner task starts ``concurrency`` workers, and each worker reads the next
input lazily, edits it and hands its outcome over before it reads another. So at most
``concurrency`` edits are open, and a slow consumer slows the reading down instead of
piling outcomes up. A worker per open edit, not a task per input: an input costs no
task start and no hop through a dispatcher. Workers submit, wait on the client's shared
scheduler, download, and record every step in the journal. The async iterator owns the
runner, and the runner's anyio task group owns the workers: closing the iterator
(``break``, cancellation, ``aclose``) cancels the runner, its task group cancels the
workers, and nothing is left behind.

Every input yields exactly one ``EditOutcome``; a failure is an outcome, never an
exception that ends the batch. Auth and quota refusals (401/402/403) would fail every
input alike, and a journal that cannot be written would record nothing: the first one
stops new submissions, and the inputs not yet submitted end with that error while open
edits still finish.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import inspect
import logging
import math
import shutil
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from os import PathLike
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from .._constants import JOURNAL_BUSY_POLL_SECONDS, JOURNAL_DEFERRED_MAX, MAX_VIDEO_SECONDS
from .._exceptions import (
    ACCOUNT_ERRORS,
    APIConnectionError,
    DownloadError,
    JournalError,
    OmniEditError,
    RateLimitError,
    ResultExpiredError,
    ServerError,
    StorageError,
    SubmissionUncertainError,
    TaskFailedError,
    ValidationError,
)
from .._http.limits import ClientLimits
from .._http.retry import backoff_delay, retry_delay
from .._media.extra import MediaUnavailable, require_media, run_media_work
from .._media.segments import SEGMENT_SECONDS, split_clip, stitch_clips
from .._media.storage import file_sha256, is_local_clip, local_clip_path
from .._models import (
    BatchProgress,
    EditInput,
    EditOutcome,
    EditRequest,
    MediaInfo,
    Task,
    TaskError,
    TaskStatus,
    Usage,
)
from .._redact import redact_url
from .._wire.protocol import new_idempotency_key
from .inputs import (
    InputFeed,
    OccurrenceCounter,
    check_destination,
    coerce_request,
    output_name,
)
from .journal import (
    Claim,
    ClaimKind,
    Identity,
    JournalEntry,
    JournalState,
    JournalStore,
    fingerprint,
)
from .ports import BatchClient
from .postgres_journal import PostgresJournal, is_postgres_url
from .sqlite_journal import SqliteJournal

__all__ = ["BatchOptions", "run_edit_many"]

logger = logging.getLogger("omni_edit")

# Refusals that certainly created nothing, and creates whose every send went unanswered
# (replayed with the same key), are worth waiting out inside a batch rather than ending
# the input: a batch outlives a throttling episode or a bad minute of the network.
_SUBMIT_RETRIES = 8
# Resubmitting a task that failed "later"-retryably (docs/api.md#task-error-codes): give
# the service time.
TASK_RETRY_BASE = 5.0
# How long, beyond one request's timeout, a cancelled batch waits for a create already
# sent to be answered and recorded, before it gives up on it (the input then stays
# "submitting" with its key, which a rerun replays).
CANCEL_GRACE_SECONDS = 5.0
# Inputs loaded into a shared journal per statement.
_LOAD_CHUNK = 1000
# How often a worker on a shared journal looks at its share of the account's cap.
_SHARE_SECONDS = 0.2


@attrs.frozen
class BatchOptions:
    concurrency: int
    download_dir: Path | None = None
    journal: str | None = None
    on_progress: Callable[[BatchProgress], Awaitable[None] | None] | None = None
    resubmit_uncertain: bool = False
    preflight: bool = False
    task_retries: int = 2
    # Where a result goes; default: download_dir / output_name(request, occurrence).
    destination: Callable[[int, EditRequest, int], str | PathLike[str]] | None = None
    # How long a claim on an input lasts unless renewed (None: JOURNAL_LEASE_SECONDS).
    lease_seconds: float | None = None
    # The client's limits: with a shared journal, its in-flight cap follows this worker's
    # share of the account's (``_share_account``).
    limits: ClientLimits | None = None
    # With a postgresql:// journal: the in-flight cap all workers share (kept in the
    # journal; None keeps what it holds).
    account_concurrency: int | None = None
    # A clip over 10 s (local, or a URL preflight reads) is edited in segments and
    # stitched (docs/media.md#long-clips); False refuses it, as the API would.
    split: bool = True


@attrs.frozen
class _Input:
    """One input being worked: where it was read, what it asks, which take it is."""

    index: int
    request: EditRequest
    identity: Identity
    # A long URL clip's segment: makes its file (the clip downloaded and split), called
    # just before the file is uploaded, the one step that needs it.
    prepare: Callable[[], Awaitable[None]] | None = None


@attrs.frozen
class _Claiming:
    """An input read and claimed ahead of the workers: its outcome already (not a
    valid input), or its request and the claim being committed."""

    index: int
    raw: EditInput
    # None: read after the batch halted, and not claimed.
    prepared: EditOutcome | tuple[EditRequest, Awaitable[Claim]] | None


class _ClaimedFeed:
    """What ``_claim_ahead`` has claimed, for the workers, in reading order; at most
    ``size`` ahead of them. Refilled in bursts (the reader wakes when half is taken),
    so a steady batch costs no wake-up per input: a worker's ``take`` is a pop."""

    def __init__(self, size: int, low: int | None = None) -> None:
        self._items: collections.deque[_Claiming] = collections.deque()
        self._size = size
        self._low = max(0, size - 8) if low is None else low
        self._ended = False
        self._room = asyncio.Event()
        self._ready = asyncio.Event()

    async def put(self, item: _Claiming) -> None:
        while len(self._items) >= self._size:
            self._room.clear()
            await self._room.wait()
        self._items.append(item)
        self._ready.set()

    async def room(self) -> int:
        """Wait until the workers have taken what brings it below its low mark; how
        many it can take then."""
        while len(self._items) > self._low:
            self._room.clear()
            await self._room.wait()
        return self._size - len(self._items)

    def end(self) -> None:
        """No more inputs: every worker's ``take`` ends once the rest is taken."""
        self._ended = True
        self._ready.set()

    async def take(self) -> _Claiming | None:
        while not self._items:
            if self._ended:
                return None
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if len(self._items) <= self._low:
            self._room.set()
        return item


class _Batch:
    def __init__(self, client: BatchClient, options: BatchOptions) -> None:
        self.client = client
        self.options = options
        self.journal: JournalStore | None = None
        self.halt: OmniEditError | None = None
        # The counts so far, replaced (never mutated) on each change: a snapshot is
        # handed to ``on_progress`` as it is.
        self.progress = BatchProgress()
        self._reported = self.progress
        # Tasks whose ids the journal could not record, already told to the log.
        self._unrecorded: set[str] = set()
        # Inputs another worker holds, to be looked at again (journal only).
        self._deferred: collections.deque[_Input] = collections.deque()
        # Identical inputs are told apart (which take each is) with a journal, and
        # without one when their results are saved (a name per take).
        self._saves = options.download_dir is not None or options.destination is not None
        # Journaled creates in flight, each shielded from cancellation (``_create``).
        self._creating: set[anyio.CancelScope] = set()
        self._workers_left = options.concurrency
        self._workers_done = anyio.Event()
        self._occurrences = OccurrenceCounter()
        # Inputs being worked now (with a journal): what this worker could send at once.
        self._open = 0

    async def run(
        self,
        requests: Iterable[EditInput] | AsyncIterable[EditInput] | None,
        send: asyncio.Queue[EditOutcome | None],
    ) -> None:
        error: Exception | None = None
        try:
            where = self.options.journal
            if where is not None and is_postgres_url(where):
                shared = await PostgresJournal.open(
                    where, lease_seconds=self.options.lease_seconds, loading=requests is not None
                )
                self.journal = shared
                try:
                    await self._run_shared(shared, requests, send)
                finally:
                    with anyio.CancelScope(shield=True):
                        await shared.close()
            elif requests is not None:
                if where is not None:
                    self.journal = await SqliteJournal.open(
                        where, lease_seconds=self.options.lease_seconds
                    )
                await self._run_local(requests, send)
        except Exception as exc:
            error = exc
        # Not reached when cancelled: the consumer that cancelled reads no more.
        await send.put(None)
        if error is not None:
            raise error

    async def _run_local(
        self,
        requests: Iterable[EditInput] | AsyncIterable[EditInput],
        send: asyncio.Queue[EditOutcome | None],
    ) -> None:
        """Without a journal, or with a SQLite one: the inputs read in order, each claimed
        as it is read."""
        try:
            feed = InputFeed(requests)
            # A task per worker, not per input: the group's own cost is paid
            # ``concurrency`` times a batch, whatever the number of inputs.
            try:
                async with anyio.create_task_group() as group:
                    if self.journal is not None:
                        group.start_soon(self._renew_leases, self.journal)
                    async with anyio.create_task_group() as workers:
                        source: InputFeed | _ClaimedFeed = feed
                        if self.journal is not None:
                            source = _ClaimedFeed(2 * self.options.concurrency)
                            workers.start_soon(self._claim_ahead, self.journal, feed, source)
                            workers.start_soon(self._bound_creates)
                        for _ in range(self.options.concurrency):
                            workers.start_soon(self._work, source, send)
                    group.cancel_scope.cancel()
            except Exception as exc:
                raise _unwrap(exc) from None
            # The inputs themselves failed. Edits already open were billed: they
            # finished and reported before the error reaches the caller.
            if feed.broken is not None:
                raise feed.broken
        finally:
            if self.journal is not None:
                with anyio.CancelScope(shield=True):
                    await self.journal.close()

    async def _run_shared(
        self,
        journal: PostgresJournal,
        requests: Iterable[EditInput] | AsyncIterable[EditInput] | None,
        send: asyncio.Queue[EditOutcome | None],
    ) -> None:
        """With a postgresql:// journal: the inputs (if any) loaded into the journal's
        queue while this worker, like every other, takes the next free ones from it,
        until the whole batch is done (docs/architecture.md#journals)."""
        if self.options.account_concurrency is not None:
            await journal.set_account_cap(self.options.account_concurrency)
        feed = InputFeed(requests) if requests is not None else None
        # Few claimed ahead (half the open edits, refilled half at a time): an input
        # held here waits for this worker's slots while another worker, at the batch's
        # end, might have had free ones; enough that a slow claim starves no one.
        size = max(8, self.options.concurrency // 2)
        claimed = _ClaimedFeed(size, low=size // 2)
        loading = anyio.Event()
        if feed is None:
            loading.set()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._renew_leases, journal)
                if self.options.limits is not None and (
                    self.options.account_concurrency is not None
                    or await journal.account_cap() is not None
                ):
                    group.start_soon(self._share_account, journal, self.options.limits)
                async with anyio.create_task_group() as workers:
                    if feed is not None:
                        workers.start_soon(self._load, journal, feed, claimed, loading)
                    workers.start_soon(self._claim_next, journal, claimed, loading)
                    workers.start_soon(self._bound_creates)
                    for _ in range(self.options.concurrency):
                        workers.start_soon(self._work, claimed, send)
                group.cancel_scope.cancel()
        except Exception as exc:
            raise _unwrap(exc) from None
        if feed is not None and feed.broken is not None:
            raise feed.broken

    async def _load(
        self,
        journal: PostgresJournal,
        feed: InputFeed,
        claimed: _ClaimedFeed,
        loading: anyio.Event,
    ) -> None:
        """Read the inputs and put them in the journal's queue, in chunks; an input that
        is not valid gets its outcome here (it is never queued)."""
        chunk: list[tuple[int, Identity, tuple[str, str, str | None]]] = []
        try:
            while (item := await feed.take()) is not None:
                index, raw = item
                prepared = self._prepare(index, raw)
                if isinstance(prepared, EditOutcome):
                    await claimed.put(_Claiming(index, raw, prepared))
                    continue
                request, digest = prepared
                if is_local_clip(request.video_url):
                    # Another host would look for the file on its own disk. A local
                    # clip's identity is its content, read here: hosting it for every
                    # host is not built yet (docs/architecture.md#journals).
                    error = ValidationError(
                        "a batch shared through PostgreSQL takes clip URLs every worker"
                        " can fetch, not a local file: upload the clip first, or run it"
                        " with a SQLite journal",
                        field="video_url",
                    )
                    outcome = EditOutcome(index=index, request=request, error=error)
                    await claimed.put(_Claiming(index, raw, outcome))
                    continue
                identity = Identity(digest, self._occurrences.next(digest))
                chunk.append(
                    (index, identity, (request.video_url, request.prompt, request.callback_url))
                )
                if len(chunk) >= _LOAD_CHUNK:
                    await journal.load(chunk)
                    chunk = []
            await journal.load(chunk)
            await journal.loaded()
        except JournalError as exc:
            self._journal_broken(exc, None, None)
        finally:
            loading.set()

    async def _claim_next(
        self, journal: PostgresJournal, claimed: _ClaimedFeed, loading: anyio.Event
    ) -> None:
        """Take the next free inputs from the journal's queue for the workers, until
        none is left in the whole batch (inputs another worker holds are left to it, or
        taken over once its lease lapses)."""
        loop = asyncio.get_running_loop()
        submit = not self.options.preflight and self.client.replay_creates
        try:
            while self.halt is None:
                taken = await journal.claim_next(await claimed.room(), submit=submit)
                for seq, (video_url, prompt, callback_url), claim in taken:
                    request = EditRequest(video_url, prompt, callback_url)
                    ready: asyncio.Future[Claim] = loop.create_future()
                    ready.set_result(claim)
                    await claimed.put(_Claiming(seq, request, (request, ready)))
                if taken:
                    continue
                left, others_loading = await journal.batch_left()
                if left == 0 and not others_loading and loading.is_set():
                    break
                await anyio.sleep(JOURNAL_BUSY_POLL_SECONDS)
        except JournalError as exc:
            self._journal_broken(exc, None, None)
        try:
            # Halted: the loader may still hand over outcomes of inputs it refused,
            # and the workers must be there to take them.
            await loading.wait()
        finally:
            claimed.end()

    async def _share_account(self, journal: PostgresJournal, limits: ClientLimits) -> None:
        """Hold this worker's share of the account's in-flight cap: the client's own
        cap follows the slots held in the journal, taken there before they are used
        here and given back only once free here, so that all workers together never
        exceed the account's cap. A 429 seen by any worker pauses all of them."""
        slots = limits.slots
        want = limits.max_concurrency
        # Until slots are held in the journal, this worker sends nothing.
        unheld = 0
        try:
            while unheld < want:
                await slots.acquire()
                unheld += 1
            limits.pause.observer = journal.publish_pause
            await journal.listen(limits.pause.hold)
            while True:
                # What this worker could use now: a request per open edit, at most the
                # client's cap. A worker near its end leaves the rest to the others.
                need = min(want, self._open)
                change, _, pause = await journal.share_slots(want - unheld, need)
                if pause:
                    limits.pause.hold(pause)
                if change > 0:
                    for _ in range(change):
                        slots.release()
                        unheld -= 1
                elif change < 0:
                    for _ in range(-change):
                        await slots.acquire()
                        unheld += 1
                    await journal.give_slots(-change)
                await anyio.sleep(min(_SHARE_SECONDS, journal.lease_seconds / 3))
        except JournalError as exc:
            self._journal_broken(exc, None, None)
        finally:
            limits.pause.observer = None
            for _ in range(unheld):
                slots.release()

    async def _renew_leases(self, journal: JournalStore) -> None:
        """Keep this run's claims alive: renewed three times a lease."""
        while True:
            await anyio.sleep(journal.lease_seconds / 3)
            try:
                await journal.renew()
            except JournalError as exc:
                self._journal_broken(exc, None, None)
                return

    async def _work(
        self, source: InputFeed | _ClaimedFeed, send: asyncio.Queue[EditOutcome | None]
    ) -> None:
        """One worker: the next input, its outcome handed over, then the next. Inputs
        another worker holds are set aside and settled once the reading is done (or,
        past ``JOURNAL_DEFERRED_MAX`` of them, before reading on)."""
        try:
            await self._work_on(source, send)
        finally:
            self._workers_left -= 1
            if self._workers_left == 0:
                self._workers_done.set()

    async def _work_on(
        self, source: InputFeed | _ClaimedFeed, send: asyncio.Queue[EditOutcome | None]
    ) -> None:
        while (item := await source.take()) is not None:
            if isinstance(item, _Claiming):
                index, raw = item.index, item.raw
            else:
                index, raw = item
            if self.halt is not None or (isinstance(item, _Claiming) and item.prepared is None):
                # Nothing to wait for: answer now, at the consumer's pace.
                outcome: EditOutcome | None = self._halted(index, raw)
            elif isinstance(item, _Claiming):
                self._open += 1
                try:
                    outcome = await self._edit_claimed(item)
                finally:
                    self._open -= 1
            else:
                outcome = await self._edit(index, raw)
            if outcome is None:
                if len(self._deferred) <= JOURNAL_DEFERRED_MAX:
                    continue
                outcome = await self._settle(self._deferred.popleft())
            await self._hand_over(outcome, send)
        while self._deferred:
            await self._hand_over(await self._settle(self._deferred.popleft()), send)

    async def _claim_ahead(
        self, journal: JournalStore, feed: InputFeed, claimed: _ClaimedFeed
    ) -> None:
        """With a journal: read the inputs in order and claim each before a worker is
        free for it, so that its claim is committed (in a group with others) while the
        workers are busy, not while one waits. At most ``concurrency`` claims are ahead;
        their leases are renewed with the rest, and given up if the batch ends first."""
        while (item := await feed.take()) is not None:
            index, raw = item
            if self.halt is not None:
                # Claimed for nothing: the worker answers it with the halt.
                await claimed.put(_Claiming(index, raw, None))
                continue
            prepared = self._prepare(index, raw)
            if isinstance(prepared, EditOutcome):
                await claimed.put(_Claiming(index, raw, prepared))
                continue
            request, digest = prepared
            local = is_local_clip(request.video_url)
            if local:
                known = await self._content_digest(index, request)
                if isinstance(known, EditOutcome):
                    await claimed.put(_Claiming(index, raw, known))
                    continue
                digest = known
            # Counted here, in reading order: the 2nd of identical inputs is the 2nd take
            # whichever worker gets to it first.
            identity = Identity(digest, self._occurrences.next(digest))
            pending = journal.claim(
                identity,
                (request.video_url, request.prompt, request.callback_url),
                # Claimed as "submitting", with its first key, when the create may follow
                # at once: a rerun replays that key whether or not it was ever sent,
                # which is safe only where keys are honoured. Else (and when the clip is
                # checked first, or uploaded first: the URL sent is recorded with the
                # key) "pending", and "submitting" is written before the send.
                submit=not self.options.preflight and self.client.replay_creates and not local,
            )
            # Retrieved here, so a claim never awaited (the batch ended first) is
            # never reported as an exception nobody retrieved.
            asyncio.ensure_future(pending).add_done_callback(_retrieve)
            await claimed.put(_Claiming(index, raw, (request, pending)))
        claimed.end()

    async def _hand_over(
        self, outcome: EditOutcome, send: asyncio.Queue[EditOutcome | None]
    ) -> None:
        if outcome.ok:
            self._count(done=1)
        else:
            self._count(failed=1)
        if self.options.on_progress is not None:
            await self._report()
        await send.put(outcome)

    def _halted(self, index: int, raw: EditInput) -> EditOutcome:
        try:
            request: EditRequest | None = coerce_request(raw)
        except ValidationError:
            request = None
        return EditOutcome(index=index, request=request, error=self.halt)

    # --- One input ------------------------------------------------------------------------

    def _prepare(self, index: int, raw: EditInput) -> EditOutcome | tuple[EditRequest, str]:
        """The input's request and digest, or its outcome if it is not a valid input."""
        try:
            request = coerce_request(raw)
            # Also the check that the text can be stored: a lone surrogate (not UTF-8)
            # fails this input here, never the journal's write.
            digest = (
                fingerprint(request.video_url, request.prompt, request.callback_url)
                if self.journal is not None or self._saves
                else ""
            )
        except ValidationError as exc:
            return EditOutcome(index=index, request=_request_or_none(raw), error=exc)
        except (UnicodeEncodeError, TypeError):
            error = ValidationError(
                "the input's clip URL, prompt and callback URL must be text (valid Unicode,"
                " without lone surrogates)"
            )
            return EditOutcome(index=index, request=_request_or_none(raw), error=error)
        return request, digest

    async def _content_digest(self, index: int, request: EditRequest) -> str | EditOutcome:
        """A local input's identity digest: of the file's content (with the prompt and
        callback URL), not its path, so a moved folder or a second manifest naming the
        same clip finds the same record, and a re-signed URL is still the same input
        (docs/storage.md#in-a-batch-and-its-journal). Its outcome if it cannot be read."""
        try:
            sha256, _ = await file_sha256(local_clip_path(request.video_url))
        except ValidationError as exc:
            return EditOutcome(index=index, request=request, error=exc)
        return fingerprint(f"sha256:{sha256}", request.prompt, request.callback_url)

    async def _edit(self, index: int, raw: EditInput) -> EditOutcome:
        """An input, without a journal."""
        prepared = self._prepare(index, raw)
        if isinstance(prepared, EditOutcome):
            return prepared
        request, digest = prepared
        if digest and is_local_clip(request.video_url):
            known = await self._content_digest(index, request)
            if isinstance(known, EditOutcome):
                return known
            digest = known
        occurrence = 0
        if self._saves:
            occurrence = self._occurrences.next(digest)
        return await self._run_input(_Input(index, request, Identity(digest, occurrence)), None)

    async def _edit_claimed(self, item: _Claiming) -> EditOutcome | None:
        """An input with a journal, its claim made ahead: its outcome, or ``None`` when
        another worker holds it (deferred)."""
        if isinstance(item.prepared, EditOutcome):
            return item.prepared
        assert item.prepared is not None  # see _work
        request, pending = item.prepared
        try:
            claim = await pending
        except JournalError as exc:
            self._journal_broken(exc, item.index, None)
            return EditOutcome(index=item.index, request=request, error=exc)
        except ValidationError as exc:  # its row is damaged: this input alone fails
            return EditOutcome(index=item.index, request=request, error=exc)
        return await self._claimed(_Input(item.index, request, claim.entry.identity), claim)

    async def _claimed(self, item: _Input, claim: Claim) -> EditOutcome | None:
        if claim.kind is ClaimKind.BUSY:
            self._deferred.append(item)
            return None
        if claim.kind is ClaimKind.FINISHED:
            return await self._finished(item, claim.entry)
        return await self._run_input(item, claim)

    async def _settle(self, item: _Input) -> EditOutcome:
        """An input another worker held: its outcome once that worker is done, or this
        worker's own once that worker's lease ends (it died, or let go)."""
        assert self.journal is not None
        while True:
            try:
                claim = await self.journal.reclaim(item.identity)
            except JournalError as exc:
                self._journal_broken(exc, item.index, None)
                return self._outcome(item, error=exc)
            except ValidationError as exc:  # its row is damaged: this input alone fails
                return self._outcome(item, error=exc)
            if claim.kind is ClaimKind.BUSY:
                await anyio.sleep(min(JOURNAL_BUSY_POLL_SECONDS, claim.lease_left + 0.01))
                continue
            if claim.kind is ClaimKind.CLAIMED and self.halt is not None:
                return self._outcome(item, error=self.halt)
            outcome = await self._claimed(item, claim)
            assert outcome is not None  # not BUSY
            return outcome

    def _outcome(self, item: _Input, **fields: Any) -> EditOutcome:
        return EditOutcome(
            index=item.index,
            request=item.request,
            occurrence=item.identity.occurrence,
            **fields,
        )

    async def _finished(
        self, item: _Input, entry: JournalEntry, segment_dest: Path | None = None
    ) -> EditOutcome:
        """An input done already, by an earlier run or another worker: its recorded
        outcome, with its result saved again if the file is gone. ``segment_dest``: where
        a segment's edited result goes (``_edit_segment``)."""
        if entry.state is JournalState.FAILED:
            return self._outcome(item, error=_recorded_error(entry), resumed=True)
        task = Task(
            id=entry.task_id or "",
            status=TaskStatus.COMPLETED,
            progress=100,
            results=(entry.result_url,) if entry.result_url else (),
            # What the earlier run was charged, for reports of the whole batch.
            usage=Usage(credits_reserved=entry.credits) if entry.credits is not None else None,
        )
        path = Path(entry.path) if entry.path else None
        if not self._saves or (path is not None and path.exists()):
            return self._outcome(item, task=task, path=path, resumed=True)
        if (
            segment_dest is None
            and entry.result_url is None
            and (is_local_clip(item.request.video_url) or self.options.split)
        ):
            # A long clip's stitched file (it has no result link of its own) is gone:
            # made again from its segments, done already (their journal records).
            return await self._run_input(item, None, stitched_again=True)
        # Saved again from the task: its result link lasts 24 hours, and ``wait`` reads
        # the task afresh for a link that has not expired.
        try:
            dest = segment_dest or self._destination(item)
            task = await self.client.wait(task.id)
            path = await self._save(dest, task)
        except Exception as exc:
            return self._outcome(item, task=task, error=exc)
        return self._outcome(item, task=task, path=path)

    async def _run_input(
        self,
        item: _Input,
        claim: Claim | None,
        *,
        segment_dest: Path | None = None,
        stitched_again: bool = False,
    ) -> EditOutcome:
        """Work an input this worker holds (or any input, without a journal).
        ``segment_dest``: the input is a long clip's segment, its result saved there.
        ``stitched_again``: a long clip done already whose stitched file is gone."""
        task: Task | None = None
        segmented = False
        try:
            # Before anything is billed: a result that could not be saved is lost.
            dest = segment_dest or self._destination(item)
            start = self._resume(claim)
            if isinstance(start, EditOutcome):
                return attrs.evolve(
                    start,
                    index=item.index,
                    request=item.request,
                    occurrence=item.identity.occurrence,
                )
            task_id, attempts, key, recorded = start
            checked = False
            if (
                segment_dest is None
                and task_id is None
                and key is None
                and (self.options.split or stitched_again)
            ):
                # Nothing was ever sent for it: a clip over 10 s goes in segments.
                info = await self._measure(item, stitched_again=stitched_again)
                if info is not None and info.duration > MAX_VIDEO_SECONDS:
                    segmented = True
                    return await self._run_long(
                        item,
                        info.duration,
                        dest,
                        record=claim is not None and not stitched_again,
                    )
                # Measured under 10 s: preflight's read is made already.
                checked = info is not None
            if stitched_again:
                # Done already, yet neither a long clip nor a result link to save again
                # (the clip changed?): never submitted again, which would bill twice.
                raise OmniEditError(
                    "this input was done by an earlier run, its result file is gone, and"
                    " the journal has no result link to save it again from"
                )
            # The clip URL an earlier run's create carried: a replay of its key must
            # send the very same request (docs/storage.md#in-a-batch-and-its-journal).
            sent_url = claim.entry.video_url if claim is not None else None
            while True:
                if task_id is None:
                    task = await self._submit(
                        item, attempts, key, recorded=recorded, sent_url=sent_url, checked=checked
                    )
                    sent_url = None
                    attempts += 1
                    task_id, key, recorded = task.id, None, False
                self._count(running=1)
                if self.options.on_progress is not None:
                    await self._report()
                try:
                    task = await self.client.wait(task or task_id)
                except TaskFailedError as exc:
                    task = exc.task
                    if not exc.retryable or attempts > self.options.task_retries:
                        raise
                    logger.info("input %d: task failed with %s; resubmitting", item.index, exc.code)
                    delay = backoff_delay(attempts, base=TASK_RETRY_BASE, cap=300)
                    await anyio.sleep(delay)
                    task, task_id = None, None
                    continue
                finally:
                    self._count(running=-1)
                break
            path = await self._save(dest, task)
            if self.journal is not None:
                # Not waited for: lost to a crash, it costs a rerun one GET (the task id
                # is kept), never a second task.
                self.journal.completed(
                    item.identity,
                    task.id,
                    task.result_url,
                    str(path) if path else None,
                    on_error=self._on_write_error(item.index, task),
                )
            outcome = self._outcome(item, task=task, path=path)
        except Exception as exc:
            if not isinstance(exc, OmniEditError):
                logger.exception("input %d failed unexpectedly", item.index)
            if not stitched_again:
                # A segment's task is not the clip's: a rerun must not wait on it as if.
                await self._record_failure(item, exc, None if segmented else task)
            if isinstance(exc, _SegmentFailed):
                task = exc.task
            outcome = self._outcome(item, task=task, error=exc)
        return outcome

    async def _measure(self, item: _Input, *, stitched_again: bool) -> MediaInfo | None:
        """The clip's facts from its header, read before anything is billed, when it
        may be a long clip to split (docs/media.md#long-clips); ``None`` when it is not
        read. A local clip is always read. A URL clip is read by preflight's probe (a
        few KB by Range requests from its host, no API key), so only with
        ``preflight``: without it the client never reads a clip URL, and one over 10 s
        is refused by the API, unbilled. Not in a batch shared through PostgreSQL: its
        workers split nothing (docs/architecture.md#journals)."""
        video_url = item.request.video_url
        if is_local_clip(video_url):
            return await self.client.probe(str(local_clip_path(video_url)))
        if isinstance(self.journal, PostgresJournal):
            return None
        if self.options.preflight or stitched_again:
            # Preflight's read: its errors are the input's, as preflight's are.
            return await self.client.probe(video_url)
        return None

    async def _run_long(
        self, item: _Input, duration: float, dest: Path | None, *, record: bool
    ) -> EditOutcome:
        """A clip over 10 s: split into segments of at most 10 s, each edited with the
        input's prompt as an input of its own (journaled by the parent's identity and
        its index, so a rerun resumes per segment), one after another, and the edited
        segments stitched at ``dest`` (docs/media.md#long-clips). A URL clip is
        downloaded to split it only when a segment's file is to be uploaded. Raises
        ``ValidationError`` at once, before any work, without a destination, the media
        extra or a storage."""
        if dest is None:
            raise ValidationError(
                "a clip over 10 s is edited in segments and stitched into a local file:"
                " pass download_dir or destination (or split=False to refuse it)",
                field="download_dir",
            )
        try:
            require_media("editing a clip over 10 s in segments")
        except MediaUnavailable as exc:
            raise ValidationError(str(exc), field="video_url") from None
        # Segments are new files the API must fetch: hosted like local clips.
        try:
            self.client.storage  # noqa: B018 (resolved, or ValidationError)
        except ValidationError as exc:
            raise ValidationError(
                f"the clip is over 10 s, so it is edited in segments the API fetches from"
                f" your storage: {exc}",
                field=exc.field,
            ) from None
        work = dest.parent / f".{dest.name}.segments"
        await anyio.Path(work / "in").mkdir(parents=True, exist_ok=True)
        request = item.request
        splitter = _Splitter(self.client, request.video_url, work)
        if is_local_clip(request.video_url):
            sources = await splitter.split()
        else:
            # Counted as split_clip counts them, from the header's length: a rerun finds
            # the segments' records without downloading the clip.
            count = max(1, math.ceil(duration / SEGMENT_SECONDS - 1e-9))
            sources = [work / "in" / f"segment-{i:03d}.mp4" for i in range(count)]
        tasks: list[Task] = []
        edited: list[Path] = []
        for index, source in enumerate(sources):
            label = f"segment:{index}/{len(sources)}:{item.identity.digest}"
            segment = _Input(
                item.index,
                EditRequest(str(source), request.prompt, request.callback_url),
                Identity(
                    fingerprint(label, request.prompt, request.callback_url),
                    item.identity.occurrence,
                ),
                functools.partial(splitter.ensure, len(sources)),
            )
            outcome = await self._edit_segment(segment, work / f"edited-{index:03d}.mp4")
            if isinstance(outcome.error, _ClipDownloadFailed):
                raise outcome.error  # the clip's failure, not the segment's
            if outcome.error is not None or outcome.task is None or outcome.path is None:
                error = outcome.error or OmniEditError("the segment's result was not saved")
                raise _SegmentFailed(
                    f"segment {index + 1} of {len(sources)} failed: {error}", outcome.task
                ) from error
            tasks.append(outcome.task)
            edited.append(outcome.path)
        try:
            saved = await run_media_work(stitch_clips, edited, dest)
        except ValueError as exc:
            raise OmniEditError(f"could not stitch the edited segments: {exc}") from exc
        last = tasks[-1]
        if self.journal is not None and record:
            # No result link: the file is made here (``_finished`` knows it so).
            self.journal.completed(
                item.identity,
                last.id,
                None,
                str(saved),
                on_error=self._on_write_error(item.index, last),
            )
        await anyio.to_thread.run_sync(functools.partial(shutil.rmtree, work, ignore_errors=True))
        return self._outcome(item, task=last, path=saved, segments=tuple(tasks))

    async def _edit_segment(self, segment: _Input, dest: Path) -> EditOutcome:
        """One segment of a long clip, its result saved at ``dest``: resumed from its
        journal record, or worked now."""
        if self.journal is None:
            return await self._run_input(segment, None, segment_dest=dest)
        request = segment.request
        claim = await self.journal.claim(
            segment.identity,
            (request.video_url, request.prompt, request.callback_url),
            submit=False,
        )
        while claim.kind is ClaimKind.BUSY:
            # A dead run's lease on it, lapsing with the parent's.
            await anyio.sleep(min(JOURNAL_BUSY_POLL_SECONDS, claim.lease_left + 0.01))
            claim = await self.journal.reclaim(segment.identity)
        if claim.kind is ClaimKind.FINISHED:
            return await self._finished(segment, claim.entry, segment_dest=dest)
        return await self._run_input(segment, claim, segment_dest=dest)

    def _resume(
        self, claim: Claim | None
    ) -> EditOutcome | tuple[str | None, int, str | None, bool]:
        """Where to start: a recorded outcome, or (task id to wait on, attempts so far,
        Idempotency-Key to send first, whether that key's "submitting" is recorded)."""
        if claim is None:
            return None, 0, None, False
        entry = claim.entry
        state = entry.state
        if claim.fresh:
            # Made by this claim: nothing was ever sent. "submitting" is already
            # recorded, with the first key, when the claim was told the create follows.
            if state is JournalState.SUBMITTING:
                return None, 0, entry.idempotency_key, True
            return None, 0, None, False
        if state is JournalState.PENDING:
            return None, entry.attempts, None, False
        if state in (JournalState.SUBMITTED, JournalState.COMPLETED):
            return entry.task_id, entry.attempts, None, False
        if state is JournalState.FAILED:
            if entry.task_id is not None and entry.error_code is None:
                # The task exists and did not fail: what failed was waiting or saving.
                return entry.task_id, entry.attempts, None, False
            # Nothing was created, or the task failed "later"-retryably: submit again.
            return None, entry.attempts, None, False
        # SUBMITTING or UNCERTAIN: a task may exist, and be billed.
        if entry.idempotency_key is not None and self.client.replay_creates:
            # The same create again, with its recorded key: the gateway answers with the
            # task if the earlier send created one, and creates it (once) if not.
            return None, max(0, entry.attempts - 1), entry.idempotency_key, False
        if self.options.resubmit_uncertain:
            return None, entry.attempts, None, False
        return EditOutcome(
            index=0,
            request=None,
            error=SubmissionUncertainError(
                "an earlier run sent this input's create request and never learnt the"
                " answer: a task may exist and be billed. Pass resubmit_uncertain=True to"
                " submit it again anyway.",
                idempotency_key=entry.idempotency_key,
            ),
        )

    async def _submit(
        self,
        item: _Input,
        attempts: int,
        key: str | None,
        *,
        recorded: bool,
        sent_url: str | None = None,
        checked: bool = False,
    ) -> Task:
        """Create the input's task: one paid intent, so one Idempotency-Key for every
        send, refusals retried included. ``key``: an earlier send's key to replay (or,
        when ``recorded``, the first key a fresh claim recorded), else the next one.
        A local clip is uploaded first (checked before it is), unless an earlier send's
        key is replayed with the URL it carried (``sent_url``)."""
        if self.halt is not None:
            raise self.halt
        video_url = item.request.video_url
        if is_local_clip(video_url):
            if key is not None and not recorded and sent_url is not None:
                video_url = sent_url
            else:
                if item.prepare is not None:
                    await item.prepare()
                video_url = await self._upload(video_url)
        elif self.options.preflight and not checked:
            await self.client.preflight(video_url)
        # Once a send of this key may have made the task (an earlier run's key, or a
        # round here that went unanswered), a later refusal proves nothing: the input
        # stays "submitting" with its key, and ends uncertain, never "failed" (a rerun
        # would then submit it afresh, under a new key, and could pay twice).
        maybe_made: SubmissionUncertainError | None = None
        if key is not None and not recorded:
            maybe_made = SubmissionUncertainError(
                "an earlier run sent this input's create request and never learnt the"
                f" answer; replays of its Idempotency-Key {key} were refused",
                idempotency_key=key,
            )
        if key is None:
            key = (
                self.journal.key_for(item.identity, attempts + 1)
                if self.journal is not None
                else new_idempotency_key()
            )
        for refusal in range(_SUBMIT_RETRIES + 1):
            try:
                task = await self._create(item, video_url, attempts, key, recorded=recorded)
            except SubmissionUncertainError as exc:
                # Every send of this key went unanswered. Sending it again is still safe
                # (the gateway answers a known key with its task), and a batch outlives
                # a bad minute: keep replaying, as for refusals.
                if not self.client.replay_creates or exc.idempotency_key != key:
                    raise
                if refusal == _SUBMIT_RETRIES:
                    raise
                maybe_made = exc
                recorded = True
                await anyio.sleep(retry_delay(refusal, None))
                continue
            except (RateLimitError, ServerError, APIConnectionError) as exc:
                # Reaching here (not SubmissionUncertainError) means this call made
                # nothing; an earlier send of the key may have.
                if maybe_made is not None:
                    if refusal == _SUBMIT_RETRIES:
                        raise maybe_made from exc
                elif self.journal is not None:
                    # Kept (release=False): this worker goes on trying the input.
                    await self.journal.failed(
                        item.identity,
                        code=None,
                        message=str(exc),
                        retryable=True,
                        release=False,
                    )
                    recorded = False
                if refusal == _SUBMIT_RETRIES:
                    raise
                retry_after = exc.retry_after if isinstance(exc, RateLimitError) else None
                await anyio.sleep(retry_delay(refusal, retry_after))
                continue
            reserved = task.usage.credits_reserved if task.usage else None
            self._count(submitted=1, credits=reserved or 0.0)
            return task
        raise AssertionError("unreachable")

    async def _upload(self, path: str) -> str:
        """A local clip checked, put in the client's storage and presigned; counted."""
        self._count(uploading=1)
        if self.options.on_progress is not None:
            await self._report()
        try:
            stored = await self.client.upload(path)
        finally:
            self._count(uploading=-1)
        if stored.uploaded:
            self._count(uploaded=1)
        return stored.url

    async def _create(
        self,
        item: _Input,
        video_url: str,
        attempts: int,
        key: str,
        *,
        recorded: bool,
    ) -> Task:
        """One create request, journaled first (with its key) when there is a journal."""
        request = item.request
        if self.journal is None:
            return await self.client.submit(
                video_url,
                request.prompt,
                callback_url=request.callback_url,
                idempotency_key=key,
            )
        # The journaled create runs shielded from cancellation: a cancel mid-POST would
        # leave the outcome unknown and the input uncertain. A cancelled batch gives it
        # about one request's time (``_bound_creates``) to get its answer recorded. A
        # shielded scope, not a task of its own: a task per create, alive for the whole
        # request, kept the garbage collector busy enough to cost a tenth of a batch's
        # time (``benchmarks/bench_journal.py``).
        with anyio.CancelScope(shield=True) as scope:
            self._creating.add(scope)
            try:
                return await self._create_journaled(
                    self.journal, item, video_url, attempts, key, recorded
                )
            finally:
                self._creating.discard(scope)
        # Reached only when the deadline a cancelled batch set ended the create: the
        # batch's own cancellation is delivered at this checkpoint.
        await anyio.lowlevel.checkpoint()
        raise SubmissionUncertainError(
            "the batch was cancelled while this input's create request was unanswered",
            idempotency_key=key,
        )

    async def _bound_creates(self) -> None:
        """Runs beside the workers and ends with them. Cancelled with them (the batch
        was closed or cancelled), it gives each shielded create still in flight one
        request's time, plus 5 s, to get its answer recorded."""
        try:
            await self._workers_done.wait()
        finally:
            deadline = anyio.current_time() + self.client.timeout + CANCEL_GRACE_SECONDS
            for scope in self._creating:
                scope.deadline = min(scope.deadline, deadline)

    async def _create_journaled(
        self,
        journal: JournalStore,
        item: _Input,
        video_url: str,
        attempts: int,
        key: str,
        recorded: bool,
    ) -> Task:
        if not recorded:
            # A local clip's URL is recorded with the key: a replay sends it again.
            sent = video_url if video_url != item.request.video_url else None
            await journal.submitting(item.identity, attempts + 1, key, video_url=sent)
        request = item.request
        task = await self.client.submit(
            video_url,
            request.prompt,
            callback_url=request.callback_url,
            idempotency_key=key,
        )
        # Queued in the same protected step: losing a task id is paying twice. Polling
        # need not wait for the commit (a crash before it is the same either way); the
        # outcome does. If it cannot be written, the task still goes on to its outcome
        # (the "submitting" row holds the key, so a rerun replays it, gets this task).
        reserved = task.usage.credits_reserved if task.usage else None
        journal.submitted(
            item.identity, task.id, reserved, on_error=self._on_write_error(item.index, task)
        )
        return task

    def _destination(self, item: _Input) -> Path | None:
        """Where the input's result goes, or ``None`` when results are not saved."""
        occurrence = item.identity.occurrence
        if self.options.destination is not None:
            chosen = self.options.destination(item.index, item.request, occurrence)
            return check_destination(chosen)
        if self.options.download_dir is None:
            return None
        name = output_name(item.request, occurrence, digest=item.identity.digest or None)
        return self.options.download_dir / name

    async def _save(self, dest: Path | None, task: Task) -> Path | None:
        if dest is None:
            return None
        return await self.client.download(task, dest)

    async def _record_failure(self, item: _Input, exc: Exception, task: Task | None) -> None:
        # A storage that refuses one upload (its credentials, its bucket) refuses them all.
        if isinstance(exc, (*ACCOUNT_ERRORS, StorageError)) and self.halt is None:
            assert isinstance(exc, OmniEditError)
            self.halt = exc
        if isinstance(exc, JournalError):
            self._journal_broken(exc, item.index, task)
            return
        if self.journal is None:
            return
        with anyio.CancelScope(shield=True), self._journal_guard(item.index, task):
            if isinstance(exc, SubmissionUncertainError):
                await self.journal.uncertain(item.identity, str(exc))
                return
            if isinstance(exc, TaskFailedError):
                code: str | None = exc.code
                # A task that failed for a reason retrying cannot fix stays failed.
                retryable = exc.retryable
            else:
                # Failed before a task existed (free to retry), or while waiting or saving
                # (resumed from the task id): a rerun may try again either way.
                code, retryable = None, True
            await self.journal.failed(
                item.identity,
                code=code,
                message=str(exc),
                retryable=retryable,
                task_id=task.id if task else None,
            )

    def _journal_broken(self, exc: JournalError, index: int | None, task: Task | None) -> None:
        """A journal write failed: submit nothing more (what cannot be recorded could be
        paid for twice), and put a task that exists where it cannot be lost."""
        if self.halt is None or not isinstance(self.halt, JournalError):
            self.halt = exc
        if task is not None and task.id not in self._unrecorded:
            self._unrecorded.add(task.id)  # one line a task, not one a failed write
            # The last resort for a paid task's id: the log (stderr by default) and the
            # outcome, which carries the task.
            logger.error(
                "input %d: task %s exists and is billed, but the journal could not record it (%s)",
                index,
                task.id,
                exc.__cause__ or exc,
            )

    def _on_write_error(self, index: int, task: Task) -> Callable[[JournalError], None]:
        """For a journal write nobody waits on: its failure stops the batch, as
        ``_journal_guard`` does for one waited on. (A partial, not a closure: one
        object per write, at thousands of writes a second.)"""
        return functools.partial(self._write_failed, index=index, task=task)

    def _write_failed(self, exc: JournalError, *, index: int, task: Task) -> None:
        self._journal_broken(exc, index, task)

    @contextlib.contextmanager
    def _journal_guard(self, index: int, task: Task | None) -> Iterator[None]:
        """Around a journal write whose failure must not fail the input: the input's own
        outcome stands, and the batch stops submitting."""
        try:
            yield
        except JournalError as exc:
            self._journal_broken(exc, index, task)

    # --- Progress -------------------------------------------------------------------------

    def _count(
        self,
        *,
        submitted: int = 0,
        running: int = 0,
        done: int = 0,
        failed: int = 0,
        credits: float = 0.0,
        uploading: int = 0,
        uploaded: int = 0,
    ) -> None:
        p = self.progress
        self.progress = BatchProgress(
            p.submitted + submitted,
            p.running + running,
            p.done + done,
            p.failed + failed,
            p.credits_reserved + credits,
            p.uploading + uploading,
            p.uploaded + uploaded,
        )

    async def _report(self) -> None:
        """Tell ``on_progress`` the counts, if they changed since it last heard."""
        callback = self.options.on_progress
        if callback is None:
            return
        progress = self.progress
        if progress != self._reported:
            self._reported = progress
            result = callback(progress)
            if inspect.isawaitable(result):
                await result


class _Splitter:
    """A long clip's segments, made once: a local clip is split where it lies; a URL
    clip is first downloaded beside its segments, by the rules of result downloads (a
    session with no API key or cookie, ``max_download_bytes``, ``download_timeout``,
    http(s) redirects only: docs/reliability.md#downloads), and that copy is deleted
    once split."""

    def __init__(self, client: BatchClient, video_url: str, work: Path) -> None:
        self._client = client
        self._video_url = video_url
        self._work = work
        self._done = False

    async def split(self) -> list[Path]:
        video_url = self._video_url
        local = is_local_clip(video_url)
        if local:
            clip = local_clip_path(video_url)
            shown = str(clip)
        else:
            shown = redact_url(video_url)
            clip = await self._download(shown)
        try:
            sources = await run_media_work(split_clip, clip, self._work / "in")
        except ValueError as exc:
            raise ValidationError(
                f"could not split the clip {shown}: {exc}", field="video_url"
            ) from None
        finally:
            if not local:
                await anyio.Path(clip).unlink(missing_ok=True)
        self._done = True
        return sources

    async def _download(self, shown: str) -> Path:
        try:
            return await self._client.download(self._video_url, self._work / "source.mp4")
        except ResultExpiredError:
            reason = "its host refused it"
        except OmniEditError as exc:
            reason = str(exc)
        raise _ClipDownloadFailed(f"could not download the clip {shown} to split it: {reason}")

    async def ensure(self, count: int) -> None:
        """Split the clip, if not yet, into the ``count`` segments its length makes."""
        if self._done:
            return
        made = len(await self.split())
        if made != count:
            raise OmniEditError(
                f"the clip was split into {made} segments, not the {count} its header's"
                " length makes: its host serves another file than it described?"
            )


class _ClipDownloadFailed(DownloadError):
    """A long URL clip could not be downloaded to split it: the clip fails (a rerun
    tries again), no segment's task having been made."""


class _SegmentFailed(OmniEditError):
    """A long clip's segment failed (its own error is the cause): the clip fails, and a
    rerun tries the segments not done."""

    def __init__(self, message: str, task: Task | None) -> None:
        super().__init__(message)
        self.task = task


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _request_or_none(raw: EditInput) -> EditRequest | None:
    try:
        return coerce_request(raw)
    except ValidationError:
        return None


def _unwrap(exc: Exception) -> Exception:
    """The first worker's own error (a bug, or an ``on_progress`` callback that raised)
    rather than the exception group anyio wraps it in. Two workers can fail in the same
    turn of the loop, before the group's cancellation reaches the second; the first
    one is the error, as it would be for a single task."""
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple):
        for each in inner:
            if isinstance(each, Exception):
                return _unwrap(each)
    return exc


def _recorded_error(entry: JournalEntry) -> OmniEditError:
    message = entry.error_message or "failed in an earlier run"
    if entry.task_id and entry.error_code:
        task = Task(
            id=entry.task_id,
            status=TaskStatus.FAILED,
            error=TaskError(entry.error_code, message),
        )
        return TaskFailedError(task)
    return OmniEditError(message)


async def run_edit_many(
    client: BatchClient,
    requests: Iterable[EditInput] | AsyncIterable[EditInput] | None,
    options: BatchOptions,
) -> AsyncGenerator[EditOutcome, None]:
    """The async iterator behind ``Client.edit_many``."""
    batch = _Batch(client, options)
    # A full queue holds the workers back: a slow consumer slows the reading down.
    queue: asyncio.Queue[EditOutcome | None] = asyncio.Queue(options.concurrency)
    runner = asyncio.get_running_loop().create_task(
        batch.run(requests, queue), name="omni_edit edit_many"
    )
    try:
        while (outcome := await queue.get()) is not None:
            yield outcome
        # The inputs ran out, or the runner failed (an input iterator that raised).
        await runner
    finally:
        if not runner.done():
            runner.cancel()
            # Shielded: a consumer inside a cancelled anyio scope is re-cancelled at every
            # await, and would leave here at once with the runner still finishing. The
            # wait is bounded: a worker waits at most one request's time (``_create``).
            with anyio.CancelScope(shield=True):
                await asyncio.wait([runner])
        if not runner.cancelled():
            runner.exception()  # retrieved, or raised above; never "never retrieved"
