"""``Client``: the object users hold. It validates, then delegates to the transport."""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import aclosing, nullcontext
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio

from ._batch.edit_many import BatchOptions, run_edit_many
from ._batch.inputs import check_destination_callable
from ._batch.postgres_journal import is_postgres_url, require_postgres_driver
from ._config import journal_lease_seconds, resolve_api_key, resolve_base_url, resolve_storage
from ._constants import (
    LIST_MAX_PAGES,
    LIST_MAX_TASKS,
    LIST_PAGE_SIZE_MAX,
    LIST_PAGE_SIZE_MIN,
)
from ._exceptions import (
    DownloadError,
    EventLoopError,
    SubmissionUncertainError,
    TaskFailedError,
    ValidationError,
    WaitTimeoutError,
)
from ._http.download import DEFAULT_DEADLINE_SECONDS, DEFAULT_MAX_BYTES, ResultFetcher
from ._http.limits import ClientLimits
from ._http.transport import Transport
from ._media.probe import check_clip, probe_clip
from ._media.storage import (
    DEFAULT_URL_SECONDS,
    MAX_URL_SECONDS,
    Storage,
    is_local_clip,
    local_clip_path,
    stage_clip,
)
from ._models import (
    Balance,
    BatchProgress,
    EditInput,
    EditOutcome,
    EditRequest,
    MediaInfo,
    PollPolicy,
    StoredClip,
    Task,
    TaskStatus,
)
from ._polling.refetch import Refetcher
from ._polling.scheduler import Follower, PollScheduler
from ._wire.batch_read import BatchAnswer, parse_batch_response, tasks_batch_request
from ._wire.convert import decode_json, structure_task
from ._wire.protocol import (
    create_request,
    credits_request,
    new_idempotency_key,
    parse_balance_response,
    parse_task_page,
    parse_task_response,
    task_list_request,
    task_request,
)
from ._wire.validation import (
    is_loopback_host,
    validate_callback_url,
    validate_idempotency_key,
    validate_prompt,
    validate_task_id,
    validate_video_url,
)

__all__ = ["Client"]

ProgressCallback = Callable[[Task], "Awaitable[None] | None"]
# Verified callbacks remembered for deduplication: the provider may deliver one up to
# four times (docs/api.md#callbacks).
_SEEN_CALLBACKS = 10_000
# Ids of tasks this client created, most recent kept: a callback is verified (costs a
# request) only for one of these or for a task being waited on. Bounded, so a client
# that submits for weeks does not grow without end; a task waited on is known anyway.
_CREATED_REMEMBERED = 50_000
# Uploads of local clips at once, whatever the in-flight cap: each holds up to about
# 30 MB of parts (docs/storage.md#what-happens-to-a-clip), so a batch's memory stays
# bounded, and a few parallel uploads already fill an uplink.
_UPLOADS_AT_ONCE = 4


class Client:
    """An asyncio client of the video-edit API.

    Use it as ``async with omni_edit.Client() as client:`` or call ``await
    client.aclose()``. One client is meant to be shared by everything in a process: its
    in-flight cap, retry budget and 429 pause are client-wide.

    Tasks submitted with a ``callback_url`` are polled only as a slow safety net, since
    their callback normally ends the wait (fed in with ``handle_callback``). Pass
    ``receives_callbacks=False`` when callbacks go somewhere else than this client: its
    waits then poll such tasks as usual.

    Every create request carries an ``Idempotency-Key``, and one whose answer is lost is
    sent again with the same key (docs/reliability.md#create-requests). Pass
    ``replay_creates=False`` for a deployment that does not honour keys: a create is
    then resent only when it certainly created nothing, else ``SubmissionUncertainError``.

    A download may take ``download_timeout`` seconds in all (600 by default) and be at
    most ``max_download_bytes`` long (200 MiB, beyond any 10 s clip): a result host that
    drips bytes or never stops is cut off (docs/reliability.md#downloads).

    The settings are read-only attributes of the same names: a client's limits are
    fixed at construction (make another client for other settings).

    A client belongs to the event loop of its first call: any call from another loop
    (a second ``asyncio.run``) raises ``EventLoopError``. Make one client per loop.

    A local clip (a path, a ``Path`` or a ``file://`` URL) given to ``submit``,
    ``edit_many`` or ``upload`` is uploaded to ``storage`` (a ``Storage``, or
    ``"s3://bucket/prefix"``; else ``$OMNI_EDIT_STORAGE``) and sent as a URL valid
    ``storage_url_seconds`` (6 hours by default): see docs/storage.md.

    Raises ``ValidationError`` at construction when no API key is found or ``base_url``
    is unsafe (plain http is allowed only to loopback hosts).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        max_concurrency: int = 16,
        timeout: float = 30.0,
        max_retries: int = 4,
        poll: PollPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        receives_callbacks: bool = True,
        replay_creates: bool = True,
        download_timeout: float = DEFAULT_DEADLINE_SECONDS,
        max_download_bytes: int = DEFAULT_MAX_BYTES,
        storage: Storage | str | None = None,
        storage_url_seconds: float = DEFAULT_URL_SECONDS,
    ) -> None:
        if not 60 <= storage_url_seconds <= MAX_URL_SECONDS:
            raise ValidationError(
                f"storage_url_seconds must be between 60 and {MAX_URL_SECONDS:g} (7 days)",
                field="storage_url_seconds",
            )
        if storage is not None and not isinstance(storage, (str, Storage)):
            raise ValidationError(
                "storage must be a Storage or an 's3://bucket/prefix' URL", field="storage"
            )
        if download_timeout <= 0:
            raise ValidationError("download_timeout must be positive", field="download_timeout")
        if max_download_bytes < 1:
            raise ValidationError(
                "max_download_bytes must be at least 1", field="max_download_bytes"
            )
        if max_concurrency < 1:
            raise ValidationError("max_concurrency must be at least 1", field="max_concurrency")
        if timeout <= 0:
            raise ValidationError("timeout must be positive", field="timeout")
        if max_retries < 0:
            raise ValidationError("max_retries must be 0 or more", field="max_retries")
        key = resolve_api_key(api_key)
        url = resolve_base_url(base_url)
        self._base_url = url
        self._timeout = timeout
        self._max_retries = max_retries
        self._poll = poll or PollPolicy()
        self._receives_callbacks = receives_callbacks
        # Made once and handed to everything that sends: the in-flight cap, the 429
        # pause and the retry budget hold over the whole client by construction.
        self._limits = ClientLimits(max_concurrency)
        self._transport = Transport(
            base_url=url,
            api_key=key,
            limits=self._limits,
            timeout=timeout,
            max_retries=max_retries,
            session=session,
            replay_keys=replay_creates,
        )
        self._replay_creates = replay_creates
        self._scheduler = PollScheduler(
            self._read, self._poll, self._limits.pause, fetch_many=self._read_batch
        )
        self._results = ResultFetcher(
            self._limits, timeout=timeout, deadline=download_timeout, max_bytes=max_download_bytes
        )
        self._download_timeout = download_timeout
        # Resolved at the first local clip: a client that never uploads needs neither
        # the setting nor the s3 extra.
        self._storage_setting = storage
        self._storage: Storage | None = None
        self._storage_url_seconds = float(storage_url_seconds)
        self._uploads = asyncio.Semaphore(_UPLOADS_AT_ONCE)
        self._max_download_bytes = max_download_bytes
        # Tasks submitted with a callback URL: polled only as a slow safety net.
        self._callback_tasks: set[str] = set()
        self._seen_callbacks: OrderedDict[tuple[str, TaskStatus], Task] = OrderedDict()
        # Tasks this client created, with when (``time.monotonic``, the scheduler's
        # clock): the origin their progress is rated from.
        self._created: OrderedDict[str, float] = OrderedDict()
        # Callbacks' re-reads: one in flight and at most one a second per task.
        self._refetcher = Refetcher(self._read)
        # The loop of the first call: sessions, semaphores and the scheduler's tasks and
        # futures are made in it and cannot serve another.
        self._loop: asyncio.AbstractEventLoop | None = None

    def _check_loop(self) -> None:
        """Bind the client to the running loop at its first call; refuse any other.

        Without this a second ``asyncio.run`` meets the first loop's objects deep inside
        aiohttp or asyncio, as ``RuntimeError: Event loop is closed``.
        """
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            first = "which has since closed" if self._loop.is_closed() else "still running"
            raise EventLoopError(
                "this omni_edit.Client belongs to the event loop it was first used in"
                f" ({first}; an earlier asyncio.run?), and cannot be used from another."
                " Make one client per event loop, inside the coroutine the loop runs:"
                " `async with omni_edit.Client() as client:`"
            )

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, max_concurrency={self.max_concurrency})"

    @property
    def base_url(self) -> str:
        """The API's base URL, as resolved at construction."""
        return self._base_url

    @property
    def timeout(self) -> float:
        """Seconds one HTTP request may take."""
        return self._timeout

    @property
    def download_timeout(self) -> float:
        """Seconds one ``download`` may take in all, retries and resumes included."""
        return self._download_timeout

    @property
    def max_download_bytes(self) -> int:
        """The largest result ``download`` accepts; a longer body is cut off."""
        return self._max_download_bytes

    @property
    def storage_url_seconds(self) -> float:
        """How long the URL a local clip is sent as stays valid."""
        return self._storage_url_seconds

    @property
    def storage(self) -> Storage:
        """The storage local clips (and a long clip's segments) are uploaded to,
        resolved at first use. Raises ``ValidationError`` when none is configured, or
        its extra is not installed (docs/storage.md)."""
        return self._resolved_storage()

    @property
    def max_retries(self) -> int:
        """Retries of one retryable request (within the client-wide retry budget)."""
        return self._max_retries

    @property
    def max_concurrency(self) -> int:
        """The most HTTP requests in flight at once, over everything the client does."""
        return self._limits.max_concurrency

    @property
    def poll(self) -> PollPolicy:
        """How the shared scheduler spaces polls."""
        return self._poll

    @property
    def replay_creates(self) -> bool:
        """Whether a create whose answer was lost is replayed with its key."""
        return self._replay_creates

    @property
    def receives_callbacks(self) -> bool:
        """Whether callbacks reach this client, so callback tasks are polled slowly."""
        return self._receives_callbacks

    @property
    def requests_sent(self) -> int:
        """HTTP requests this client has sent to the API so far, retries included (not
        downloads or probes, which go to other hosts)."""
        return self._transport.requests_sent

    async def __aenter__(self) -> Client:
        self._check_loop()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop all polling and close the HTTP session (unless the caller owns it).

        Waits still running end with an error; nothing is left running in the background.
        Raises ``EventLoopError`` from another event loop than the client's.
        """
        self._check_loop()
        await self._refetcher.aclose()
        await self._scheduler.aclose()
        await self._results.aclose()
        await self._transport.aclose()

    async def submit(
        self,
        video_url: str | PathLike[str],
        prompt: str,
        *,
        callback_url: str | None = None,
        preflight: bool = False,
        idempotency_key: str | None = None,
    ) -> Task:
        """Create an edit task for one clip and return it (status ``pending``).

        ``video_url`` is an http(s) URL the API fetches, or a local clip (a path, a
        ``Path``, a ``file://`` URL): that is checked (``preflight``) and uploaded to
        the client's storage first (see ``upload``), and sent as a presigned URL.

        Inputs are checked locally first: ``ValidationError`` means nothing was sent.
        The request carries an ``Idempotency-Key`` (``idempotency_key``, else a fresh
        one): when its answer is lost (a reset, a timeout, a 500/502/504) it is sent again
        with the same key, and the gateway answers with the original task rather than
        create and bill another. Passing the key of an earlier call with the same inputs
        therefore returns that call's task.

        ``SubmissionUncertainError`` (with ``.idempotency_key``) means no answer came
        back even so: a task may exist and be billed. ``IdempotencyConflictError`` means
        the key was used before for a different request. Other failures raise the
        ``APIError`` subclass for the status (``RateLimitError`` only after retries and
        the client-wide pause), ``APIConnectionError`` or ``MalformedResponseError``.
        """
        self._check_loop()
        local = is_local_clip(video_url)
        if not local:
            assert isinstance(video_url, str)  # is_local_clip: every PathLike is local
            validate_video_url(video_url)
        validate_prompt(prompt)
        key = (
            new_idempotency_key()
            if idempotency_key is None
            else validate_idempotency_key(idempotency_key)
        )
        if callback_url is not None:
            validate_callback_url(
                callback_url, allow_loopback_http=_is_loopback_base(self.base_url)
            )
        if local:
            video_url = (await self.upload(video_url)).url
        elif preflight:
            await self.preflight(video_url)
        assert isinstance(video_url, str)
        request = create_request(video_url, prompt, callback_url, key)
        try:
            status, body = await self._transport.send(request)
        except SubmissionUncertainError as exc:
            exc.video_url = video_url
            raise
        task = parse_task_response(status, body)
        self._created[task.id] = time.monotonic()
        self._created.move_to_end(task.id)
        if len(self._created) > _CREATED_REMEMBERED:
            self._created.popitem(last=False)
        if callback_url is not None and self._receives_callbacks and not task.is_terminal:
            self._callback_tasks.add(task.id)
        return task

    async def get(self, task_id: str) -> Task:
        """Read a task once (one GET, retried on transient failures).

        Raises ``ValidationError`` for a string that is not a task id (nothing sent),
        ``NotFoundError`` for an unknown or expired task.
        """
        self._check_loop()
        return await self._read(validate_task_id(task_id))

    async def _read(self, task_id: str) -> Task:
        """``get`` for an id already validated (the scheduler's, from the API itself)."""
        status, body = await self._transport.send(task_request(task_id))
        task = parse_task_response(status, body, task_id=task_id)
        # Any fresh read is news for whoever waits on this task.
        self._scheduler.deliver(task)
        if task.is_terminal:
            self._callback_tasks.discard(task.id)
        return task

    async def balance(self) -> Balance:
        """The account's and this key's credits, remaining and used (one ``GET
        /v1/credits``). ``Balance.available`` is what this key can still spend.

        Raises the ``APIError`` for the status (``NotFoundError`` where a deployment has
        no balance endpoint), ``APIConnectionError`` or ``MalformedResponseError``.
        """
        self._check_loop()
        status, body = await self._transport.send(credits_request())
        return parse_balance_response(status, body)

    def list_tasks(
        self, *, status: TaskStatus | str | None = None, page_size: int = 50
    ) -> AsyncGenerator[Task, None]:
        """The account's tasks of this model, newest first, read a page (``GET
        /v1/tasks``) at a time as the loop asks for more; ``status`` keeps only tasks in
        that state. Listed tasks carry no result links: ``get`` one for those.

        A task that moves to another page while the list is read (new tasks push older
        ones down) is yielded once. However the server answers, at most 1,000 pages and
        100,000 tasks are read, and the listing ends at a page that brings nothing new:
        a server that repeats pages cannot keep it going (docs/api.md#task-list).

        Raises ``ValidationError`` (before anything is sent) for a ``page_size``
        outside 1-100 or an unknown ``status``; then as ``get`` does.
        """
        if isinstance(page_size, bool) or not isinstance(page_size, int):
            raise ValidationError("page_size must be an integer", field="page_size")
        if not LIST_PAGE_SIZE_MIN <= page_size <= LIST_PAGE_SIZE_MAX:
            raise ValidationError(
                f"page_size must be within {LIST_PAGE_SIZE_MIN}-{LIST_PAGE_SIZE_MAX},"
                f" got {page_size}",
                field="page_size",
            )
        wanted: TaskStatus | None = None
        if status is not None:
            try:
                wanted = TaskStatus(status)
            except ValueError:
                known = ", ".join(s.value for s in TaskStatus)
                raise ValidationError(
                    f"unknown status {status!r} (known: {known})", field="status"
                ) from None
        return self._list_pages(wanted, page_size)

    async def _list_pages(
        self, status: TaskStatus | None, page_size: int
    ) -> AsyncGenerator[Task, None]:
        self._check_loop()
        seen: set[str] = set()
        for page in range(1, LIST_MAX_PAGES + 1):
            code, body = await self._transport.send(task_list_request(page, page_size, status))
            answer = parse_task_page(code, body)
            fresh = [t for t in answer.tasks if t.id not in seen]
            for task in fresh:
                if len(seen) >= LIST_MAX_TASKS:
                    return
                seen.add(task.id)
                # A server that ignores the filter does not widen the list.
                if status is None or task.status is status:
                    yield task
            # The end: a short or empty page, the claimed total reached, or a page with
            # nothing new (a server repeating itself).
            if (
                not fresh
                or len(answer.tasks) < page_size
                or (answer.total is not None and page * page_size >= answer.total)
            ):
                return

    async def _read_batch(self, task_ids: Sequence[str]) -> BatchAnswer:
        """Read several tasks in one batch request (the scheduler's polls)."""
        status, body = await self._transport.send(tasks_batch_request(task_ids))
        answer = parse_batch_response(status, body, frozenset(task_ids))
        for task in answer.tasks.values():
            if task.is_terminal:
                self._callback_tasks.discard(task.id)
        return answer

    async def wait(
        self,
        task_or_id: Task | str,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Task:
        """Wait until the task ends and return it completed.

        All waits of a client share one poll scheduler, which times polls from the
        task's ``estimated_time`` and progress (see ``PollPolicy``); a callback fed to
        ``handle_callback`` ends the wait at once. ``on_progress(task)`` (sync or async)
        is called on every change of status or progress. Cancelling the wait stops its
        polling; the task itself goes on at the API.

        Raises ``TaskFailedError`` when the task ends failed or cancelled,
        ``WaitTimeoutError`` (with the last task seen) after ``timeout`` seconds, and the
        API's error if the task cannot be read (``NotFoundError`` for an unknown id).
        """
        self._check_loop()
        known = task_or_id if isinstance(task_or_id, Task) else None
        task_id = validate_task_id(known.id if known else task_or_id)
        if known is not None and known.is_terminal:
            return _finished(known)
        follower = Follower(known, reports=on_progress is not None)
        task: Task | None = None
        # A scope that moves on rather than raising TimeoutError: a TimeoutError from
        # anywhere else (an ``on_progress`` callback, say) must not pass for ours.
        with anyio.move_on_after(timeout) if timeout is not None else nullcontext():
            task = await self._scheduler.follow(
                task_id,
                follower,
                callback=task_id in self._callback_tasks,
                on_change=on_progress,
                created_at=self._created.get(task_id),
            )
        if task is None:
            last = follower.latest
            raise WaitTimeoutError(
                f"task {task_id} did not finish within {timeout:g} s"
                + (f" (last seen {last.status.value}, {last.progress}%)" if last else ""),
                task=last,
            )
        return _finished(task)

    def edit_many(
        self,
        requests: Iterable[EditInput] | AsyncIterable[EditInput] | None,
        *,
        concurrency: int | None = None,
        download_dir: str | PathLike[str] | None = None,
        journal: str | PathLike[str] | None = None,
        on_progress: Callable[[BatchProgress], Awaitable[None] | None] | None = None,
        resubmit_uncertain: bool = False,
        preflight: bool = False,
        task_retries: int = 2,
        destination: Callable[[int, EditRequest, int], str | PathLike[str]] | None = None,
        account_concurrency: int | None = None,
        split: bool = True,
    ) -> AsyncGenerator[EditOutcome, None]:
        """Edit many clips; yield one ``EditOutcome`` per input, in completion order.

        ``requests`` (an iterable or async iterable of ``EditRequest``, ``(video_url,
        prompt)`` tuples or dicts) is read lazily: a generator of a million inputs never
        sits in memory. At most ``concurrency`` edits are open at once (default: four
        per allowed request in flight); the client's ``max_concurrency`` still caps HTTP
        requests. A failure is an outcome with ``error``, never an exception that ends the
        batch. Identical inputs are deliberate takes: each is its own task and its own
        file. With ``download_dir`` each result is saved there promptly under a name
        derived from its input (``-take2``, ``-take3``... for the 2nd and 3rd identical
        input); ``destination(index, request, occurrence)``, if given, chooses each
        result's path instead (and saves results without ``download_dir``): ``occurrence``
        tells identical inputs apart (0 for the first). With ``preflight=True`` each clip's
        MP4 header is read first (see ``preflight``) and a clip the API would refuse fails
        before it is billed.

        With ``journal`` (a SQLite file path) every input is recorded by what it is (its
        clip, prompt, callback URL and occurrence), not by its position: a rerun, with
        rows added, removed, reordered or fixed, skips what is done, resumes waiting on
        what was submitted, replays the recorded Idempotency-Key of a create whose answer
        was lost, and submits only what is new. Several processes (or calls) may share
        one journal: each input is claimed by one of them at a time, a dead one's inputs
        are taken over when its lease lapses, and each caller still gets an outcome for
        every input (``resumed`` for those another worker did). Where the key cannot be
        replayed (``Client(replay_creates=False)``), an input whose create had an unknown
        outcome is reported as ``SubmissionUncertainError`` unless
        ``resubmit_uncertain=True``.
        With a ``postgresql://`` (or ``postgres://``) URL as ``journal`` (the
        ``omni-edit[postgres]`` extra), many hosts work one batch: ``requests`` are
        loaded into the journal (loading the same inputs twice adds nothing) and every
        caller on that journal, including one passing ``requests=None`` to join, takes
        the next free inputs until the whole batch is done, yielding the outcomes of the
        inputs it worked (``index``: the input's position where it was loaded). A dead
        host's inputs are taken over once its lease lapses. ``account_concurrency``
        stores in that journal an in-flight cap that all its workers share, and a 429
        seen by one pauses all (docs/architecture.md#journals).
        A clip over 10 s (local, or a URL ``preflight`` reads so, downloaded first) is
        split into segments of at most 10 s, each edited with
        the same prompt, and the edited segments stitched into one file (its outcome's
        ``path``; ``segments`` holds their tasks): this needs the ``media`` extra, a
        storage for the segments, and ``download_dir`` or ``destination``, and fails at
        once without them. With a journal a rerun resumes per segment. ``split=False``
        refuses such a clip instead (docs/media.md#long-clips).
        Tasks that fail with a retryable code are resubmitted up to ``task_retries``
        times. ``on_progress(BatchProgress)`` (sync or async) hears every change.

        Breaking out of the loop or cancelling stops new submissions and all polling;
        wrap the call in ``contextlib.aclosing`` to have that happen at the ``break``
        rather than when the iterator is collected.
        """
        if concurrency is not None and concurrency < 1:
            raise ValidationError("concurrency must be at least 1", field="concurrency")
        if task_retries < 0:
            raise ValidationError("task_retries must be 0 or more", field="task_retries")
        if destination is not None:
            check_destination_callable(destination)
        shared = journal is not None and is_postgres_url(str(journal))
        if shared:
            require_postgres_driver()
        elif requests is None:
            raise ValidationError(
                "requests may be None only to join a batch in a postgresql:// journal",
                field="requests",
            )
        elif account_concurrency is not None:
            raise ValidationError(
                "account_concurrency needs a postgresql:// journal", field="account_concurrency"
            )
        if account_concurrency is not None and account_concurrency < 1:
            raise ValidationError(
                "account_concurrency must be at least 1", field="account_concurrency"
            )
        options = BatchOptions(
            concurrency=concurrency or 4 * self.max_concurrency,
            download_dir=Path(download_dir) if download_dir is not None else None,
            journal=str(journal) if journal is not None else None,
            on_progress=on_progress,
            resubmit_uncertain=resubmit_uncertain,
            preflight=preflight,
            task_retries=task_retries,
            destination=destination,
            lease_seconds=journal_lease_seconds() if journal is not None else None,
            limits=self._limits if shared else None,
            account_concurrency=account_concurrency,
            split=split,
        )
        return self._on_own_loop(run_edit_many(self, requests, options))

    async def _on_own_loop(
        self, outcomes: AsyncGenerator[EditOutcome, None]
    ) -> AsyncGenerator[EditOutcome, None]:
        # A batch from another loop fails once, at its first step, not once per input.
        async with aclosing(outcomes):
            self._check_loop()
            async for outcome in outcomes:
                yield outcome

    async def upload(self, path: str | PathLike[str]) -> StoredClip:
        """Put a local clip in the client's storage and return it with a presigned GET
        URL valid ``storage_url_seconds``: what ``submit`` sends for a local clip.

        The clip is checked first (``preflight``: an MP4 of at most 10 s), so a clip the
        API would refuse is never uploaded. The object is named by the file's SHA-256
        and is sent only if not stored already: a rerun uploads nothing, and only signs
        a fresh URL. The upload streams in parts and holds one of the client's
        in-flight slots; at most four uploads run at once.

        Raises ``ValidationError`` when no storage is configured (or its extra is not
        installed: ``pip install 'omni-edit[s3]'``), for a clip that is not a readable
        MP4 of at most 10 s, or one that changes while it is uploaded; ``StorageError``
        when the storage refuses (credentials, a missing bucket, unreachable).
        """
        self._check_loop()
        storage = self._resolved_storage()
        local = local_clip_path(path)
        await self.preflight(local)
        async with self._uploads, self._limits.slots:
            return await stage_clip(storage, local, url_seconds=self._storage_url_seconds)

    def _resolved_storage(self) -> Storage:
        if self._storage is None:
            self._storage = resolve_storage(self._storage_setting)
        return self._storage

    async def probe(self, video_url_or_path: str | PathLike[str]) -> MediaInfo:
        """Read a clip's duration (and size, and whether it has sound) from its MP4
        header boxes alone: a few KB through Range requests for a URL, a few reads for a
        local file, never more than 4 MB. No API key goes to the media host.

        Raises ``ValidationError`` for anything that is not a readable MP4 (WebM, an
        HTML error page, a truncated file, an HTTP error from the media host).
        """
        self._check_loop()
        target = video_url_or_path
        if is_local_clip(target):
            target = local_clip_path(target)
        async with self._limits.slots:
            return await probe_clip(
                os.fspath(target),
                session=self._results.bare_session(),
                timeout=self.timeout,
            )

    async def preflight(self, video_url: str | PathLike[str]) -> MediaInfo:
        """Check a clip as the API would, before paying for it: ``probe`` it and refuse
        one over 10 s. Returns its ``MediaInfo``; ``submit(..., preflight=True)`` and
        ``edit_many(..., preflight=True)`` make this check.

        Raises ``ValidationError`` for a clip that is too long or not a readable MP4.
        """
        return check_clip(await self.probe(video_url))

    async def download(self, task_or_url: Task | str, dest: str | PathLike[str]) -> Path:
        """Save a completed task's result (or a result URL) at ``dest`` and return its path.

        ``dest`` is a file path, or an existing directory (the file is then named after
        the task id, or the URL's last path segment, and lands inside it). The file is
        streamed to a temporary file beside ``dest`` (``.<name>.part``, which a later
        download to ``dest`` overwrites), resumed after a dropped connection, checked
        against its announced length and renamed into place: ``dest`` never holds a
        partial file. No API key or cookie is sent to the result host, which is another
        origin.

        Raises ``ValidationError`` for a task that has not completed (or whose id is not
        a task id), ``ResultExpiredError``
        when the link is past its 24 hours (after re-reading the task once for a fresh
        link), ``DownloadError`` for other failures: at once for a link that is not
        http(s) or a body that is not a video (an HTML page, no MP4 box at its start),
        and for one that outgrows ``max_download_bytes`` or ``download_timeout``.
        """
        self._check_loop()
        refresh = None
        if isinstance(task_or_url, Task):
            task = task_or_url
            if task.status is not TaskStatus.COMPLETED or task.result_url is None:
                raise ValidationError(
                    f"task {task.id} is {task.status.value}, with no result to download:"
                    " wait for it first (client.wait)",
                    field="task_or_url",
                )
            # Ids are checked when an answer is parsed; a Task made by hand is checked
            # here, since the id becomes a file name inside ``dest``.
            url, name = task.result_url, f"{validate_task_id(task.id)}.mp4"

            async def refresh_link() -> str | None:
                return (await self.get(task.id)).result_url

            refresh = refresh_link
        else:
            url = validate_video_url(task_or_url)
            name = Path(urlsplit(url).path).name
            if name in ("", ".", ".."):
                name = "result.mp4"
        path = Path(dest)
        if await anyio.Path(path).is_dir():
            path = path / name
        try:
            return await self._results.fetch(url, path, refresh=refresh)
        except OSError as exc:
            raise DownloadError(f"could not write {path}: {exc}") from exc

    async def handle_callback(
        self, body: bytes | str | Mapping[str, Any], *, verify: bool = True
    ) -> Task:
        """Feed in a provider callback (the task object it POSTs) from any web framework.

        Callbacks carry no signature, so with ``verify=True`` the task is re-read from
        the API and only that answer reaches waiters: a forged body can neither end a
        wait nor plant a result URL. Only callbacks for tasks this client created, or
        is waiting on, are verified; any other costs no request. Re-reads of one task
        are coalesced (one in flight, the callbacks meanwhile share the next) and at
        most one a second. Repeated deliveries of the same (task, status) cost no
        further request. Returns the task as verified (or as claimed, with
        ``verify=False``, for a trusted in-process source).

        Raises ``MalformedResponseError`` for a body that is not a task object,
        including one whose id is not a task id, and ``ValidationError`` (with
        ``verify=True``) for a task this client neither created nor waits on.
        """
        self._check_loop()
        data = (
            decode_json(body.encode() if isinstance(body, str) else body)
            if isinstance(body, (bytes, str))
            else body
        )
        claimed = structure_task(data)
        key = (claimed.id, claimed.status)
        seen = self._seen_callbacks.get(key)
        if seen is not None:
            return seen
        if verify:
            if claimed.id not in self._created and claimed.id not in self._scheduler:
                raise ValidationError(
                    f"a callback for task {claimed.id!r}, which this client did not create"
                    " and is not waiting on: ignored, nothing was sent to verify it",
                    field="task_id",
                )
            task = await self._refetcher.read(claimed.id)
        else:
            task = claimed
            self._scheduler.deliver(task)
        if task.status is claimed.status:
            self._seen_callbacks[key] = task
            if len(self._seen_callbacks) > _SEEN_CALLBACKS:
                self._seen_callbacks.popitem(last=False)
        return task


def _finished(task: Task) -> Task:
    if task.status is TaskStatus.COMPLETED:
        return task
    raise TaskFailedError(task)


def _is_loopback_base(base_url: str) -> bool:
    # Against a local emulator the provider's callback rule cannot hold (the receiver is
    # local too); the real API host is never loopback.
    host = urlsplit(base_url).hostname
    return host is not None and is_loopback_host(host)
