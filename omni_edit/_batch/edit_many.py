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
import contextlib
import inspect
import logging
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

import anyio
import attrs

from .._exceptions import (
    ACCOUNT_ERRORS,
    APIConnectionError,
    JournalError,
    OmniEditError,
    RateLimitError,
    ServerError,
    SubmissionUncertainError,
    TaskFailedError,
    ValidationError,
)
from .._http.retry import backoff_delay, retry_delay
from .._models import (
    BatchProgress,
    EditInput,
    EditOutcome,
    EditRequest,
    Task,
    TaskError,
    TaskStatus,
    Usage,
)
from .._wire.protocol import new_idempotency_key
from .inputs import InputFeed, coerce_request, output_name
from .journal import Journal, JournalEntry, JournalState, fingerprint
from .ports import BatchClient

__all__ = ["BatchOptions", "run_edit_many"]

logger = logging.getLogger("omni_edit")

# Refusals that certainly created nothing, and creates whose every send went unanswered
# (replayed with the same key), are worth waiting out inside a batch rather than ending
# the input: a batch outlives a throttling episode or a bad minute of the network.
_SUBMIT_RETRIES = 8
# Resubmitting a task that failed "later"-retryably (docs/api.md#task-error-codes): give
# the service time.
TASK_RETRY_BASE = 5.0


@attrs.frozen
class BatchOptions:
    concurrency: int
    download_dir: Path | None = None
    journal: str | None = None
    on_progress: Callable[[BatchProgress], Awaitable[None] | None] | None = None
    resubmit_uncertain: bool = False
    preflight: bool = False
    task_retries: int = 2
    # Where input N's result goes; default: download_dir / output_name(request).
    destination: Callable[[int, EditRequest], str | PathLike[str]] | None = None


class _Batch:
    def __init__(self, client: BatchClient, options: BatchOptions) -> None:
        self.client = client
        self.options = options
        self.journal: Journal | None = None
        self.halt: OmniEditError | None = None
        # The counts so far, replaced (never mutated) on each change: a snapshot is
        # handed to ``on_progress`` as it is.
        self.progress = BatchProgress()
        self._reported = self.progress
        # Tasks whose ids the journal could not record, already told to the log.
        self._unrecorded: set[str] = set()

    async def run(
        self,
        requests: Iterable[EditInput] | AsyncIterable[EditInput],
        send: asyncio.Queue[EditOutcome | None],
    ) -> None:
        error: Exception | None = None
        try:
            if self.options.journal is not None:
                self.journal = await Journal.open(self.options.journal)
            try:
                feed = InputFeed(requests)
                # A task per worker, not per input: the group's own cost is paid
                # ``concurrency`` times a batch, whatever the number of inputs.
                try:
                    async with anyio.create_task_group() as workers:
                        for _ in range(self.options.concurrency):
                            workers.start_soon(self._work, feed, send)
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
        except Exception as exc:
            error = exc
        # Not reached when cancelled: the consumer that cancelled reads no more.
        await send.put(None)
        if error is not None:
            raise error

    async def _work(self, feed: InputFeed, send: asyncio.Queue[EditOutcome | None]) -> None:
        """One worker: the next input, its outcome handed over, then the next."""
        reporting = self.options.on_progress is not None
        while (item := await feed.take()) is not None:
            index, raw = item
            if self.halt is not None:
                # Nothing to wait for: answer now, at the consumer's pace.
                outcome = self._halted(index, raw)
            else:
                outcome = await self._edit(index, raw)
                if outcome.ok:
                    self._count(done=1)
                else:
                    self._count(failed=1)
            if reporting:
                await self._report()
            await send.put(outcome)

    def _halted(self, index: int, raw: EditInput) -> EditOutcome:
        try:
            request: EditRequest | None = coerce_request(raw)
        except ValidationError:
            request = None
        self._count(failed=1)
        return EditOutcome(index=index, request=request, error=self.halt)

    # --- One input ------------------------------------------------------------------------

    async def _edit(self, index: int, raw: EditInput) -> EditOutcome:
        try:
            request = coerce_request(raw)
        except ValidationError as exc:
            return EditOutcome(index=index, request=None, error=exc)
        # The fingerprint only matters to the journal.
        digest = (
            fingerprint(request.video_url, request.prompt, request.callback_url)
            if self.journal
            else ""
        )
        task: Task | None = None
        try:
            entry = await self.journal.get(index) if self.journal else None
            if entry is not None and entry.fingerprint != digest:
                if entry.state is JournalState.FAILED and entry.task_id is None:
                    # Refused before anything was created (a bad row since fixed, say):
                    # the new input starts afresh.
                    entry = None
                else:
                    raise ValidationError(
                        f"the journal records input #{index} as a different clip or prompt:"
                        " use a new journal file for different inputs"
                    )
            resumed = self._resume(entry)
            if isinstance(resumed, EditOutcome):
                return attrs.evolve(resumed, index=index, request=request)
            task_id, attempts, replay_key = resumed
            while True:
                if task_id is None:
                    task = await self._submit(index, digest, request, attempts, replay_key)
                    attempts += 1
                    task_id, replay_key = task.id, None
                self._count(running=1)
                if self.options.on_progress is not None:
                    await self._report()
                try:
                    task = await self.client.wait(task or task_id)
                except TaskFailedError as exc:
                    task = exc.task
                    if not exc.retryable or attempts > self.options.task_retries:
                        raise
                    logger.info("input %d: task failed with %s; resubmitting", index, exc.code)
                    delay = backoff_delay(attempts, base=TASK_RETRY_BASE, cap=300)
                    await anyio.sleep(delay)
                    task, task_id = None, None
                    continue
                finally:
                    self._count(running=-1)
                break
            path = await self._save(index, task, request)
            if self.journal:
                with self._journal_guard(index, task):
                    await self.journal.completed(
                        index, digest, task.id, task.result_url, str(path) if path else None
                    )
            return EditOutcome(index=index, request=request, task=task, path=path)
        except Exception as exc:
            if not isinstance(exc, OmniEditError):
                logger.exception("input %d failed unexpectedly", index)
            await self._record_failure(index, digest, exc, task)
            return EditOutcome(index=index, request=request, task=task, error=exc)

    def _resume(
        self, entry: JournalEntry | None
    ) -> EditOutcome | tuple[str | None, int, str | None]:
        """What an earlier run left: a finished outcome, or (task id to wait on, attempts,
        Idempotency-Key of a create to replay)."""
        if entry is None:
            return None, 0, None
        state = entry.state
        if state is JournalState.COMPLETED:
            task = Task(
                id=entry.task_id or "",
                status=TaskStatus.COMPLETED,
                progress=100,
                results=(entry.result_url,) if entry.result_url else (),
                # What the earlier run was charged, for reports of the whole batch.
                usage=Usage(credits_reserved=entry.credits) if entry.credits is not None else None,
            )
            path = Path(entry.path) if entry.path else None
            wanted = self.options.download_dir is not None or self.options.destination is not None
            if not wanted or (path is not None and path.exists()):
                return EditOutcome(index=entry.index, request=None, task=task, path=path)
            return entry.task_id, entry.attempts, None
        if state is JournalState.SUBMITTED:
            return entry.task_id, entry.attempts, None
        if state is JournalState.FAILED:
            if not entry.retryable:
                return EditOutcome(index=entry.index, request=None, error=_recorded_error(entry))
            if entry.task_id is not None and entry.error_code is None:
                # The task exists and did not fail: what failed was waiting or saving.
                return entry.task_id, entry.attempts, None
            # Nothing was created, or the task failed "later"-retryably: submit again.
            return None, entry.attempts, None
        # SUBMITTING or UNCERTAIN: a task may exist, and be billed.
        if entry.idempotency_key is not None and self.client.replay_creates:
            # The same create again, with its recorded key: the gateway answers with the
            # task if the earlier send created one, and creates it (once) if not.
            return None, max(0, entry.attempts - 1), entry.idempotency_key
        if self.options.resubmit_uncertain:
            return None, entry.attempts, None
        return EditOutcome(
            index=entry.index,
            request=None,
            error=SubmissionUncertainError(
                "an earlier run sent this input's create request and never learnt the"
                " answer: a task may exist and be billed. Pass resubmit_uncertain=True to"
                " submit it again anyway."
            ),
        )

    async def _submit(
        self,
        index: int,
        digest: str,
        request: EditRequest,
        attempts: int,
        key: str | None = None,
    ) -> Task:
        """Create the input's task: one paid intent, so one Idempotency-Key (``key``, an
        earlier run's to replay, else a new one) for every send, refusals retried included."""
        if self.halt is not None:
            raise self.halt
        if self.options.preflight:
            await self.client.preflight(request.video_url)
        # Once a send of this key may have made the task (an earlier run's key, or a
        # round here that went unanswered), a later refusal proves nothing: the input
        # stays "submitting" with its key, and ends uncertain, never "failed" (a rerun
        # would then submit it afresh, under a new key, and could pay twice).
        maybe_made: SubmissionUncertainError | None = None
        if key is not None:
            maybe_made = SubmissionUncertainError(
                "an earlier run sent this input's create request and never learnt the"
                f" answer; replays of its Idempotency-Key {key} were refused",
                idempotency_key=key,
            )
        key = key or new_idempotency_key()
        for refusal in range(_SUBMIT_RETRIES + 1):
            try:
                task = await self._create(index, digest, request, attempts, key)
            except SubmissionUncertainError as exc:
                # Every send of this key went unanswered. Sending it again is still safe
                # (the gateway answers a known key with its task), and a batch outlives
                # a bad minute: keep replaying, as for refusals.
                if not self.client.replay_creates or exc.idempotency_key != key:
                    raise
                if refusal == _SUBMIT_RETRIES:
                    raise
                maybe_made = exc
                await anyio.sleep(retry_delay(refusal, None))
                continue
            except (RateLimitError, ServerError, APIConnectionError) as exc:
                # Reaching here (not SubmissionUncertainError) means this call made
                # nothing; an earlier send of the key may have.
                if maybe_made is not None:
                    if refusal == _SUBMIT_RETRIES:
                        raise maybe_made from exc
                elif self.journal:
                    await self.journal.failed(
                        index, digest, code=None, message=str(exc), retryable=True
                    )
                if refusal == _SUBMIT_RETRIES:
                    raise
                retry_after = exc.retry_after if isinstance(exc, RateLimitError) else None
                await anyio.sleep(retry_delay(refusal, retry_after))
                continue
            reserved = task.usage.credits_reserved if task.usage else None
            self._count(submitted=1, credits=reserved or 0.0)
            return task
        raise AssertionError("unreachable")

    async def _create(
        self, index: int, digest: str, request: EditRequest, attempts: int, key: str
    ) -> Task:
        """One create request, journaled first (with its key) when there is a journal."""
        if self.journal is None:
            return await self.client.submit(
                request.video_url,
                request.prompt,
                callback_url=request.callback_url,
                idempotency_key=key,
            )
        # The journaled create runs as a task of its own, out of reach of cancellation
        # (asyncio's or anyio's): a cancel mid-POST would leave the outcome unknown and
        # the input uncertain. A cancelled worker waits, about one request's time at
        # most, for the answer to be recorded, then goes.
        create = asyncio.get_running_loop().create_task(
            self._create_journaled(self.journal, index, digest, request, attempts, key)
        )
        try:
            return await asyncio.shield(create)
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                with anyio.move_on_after(self.client.timeout + 5):
                    await create
            if not create.done():
                create.cancel()
                with anyio.CancelScope(shield=True), contextlib.suppress(BaseException):
                    await create
            raise

    async def _create_journaled(
        self,
        journal: Journal,
        index: int,
        digest: str,
        request: EditRequest,
        attempts: int,
        key: str,
    ) -> Task:
        await journal.submitting(index, digest, attempts + 1, key)
        task = await self.client.submit(
            request.video_url,
            request.prompt,
            callback_url=request.callback_url,
            idempotency_key=key,
        )
        # Recorded in the same protected step: losing a task id is paying twice. If it
        # cannot be, the task still goes on to its outcome (the journal's "submitting"
        # row holds the key, so a rerun replays it and gets this task).
        reserved = task.usage.credits_reserved if task.usage else None
        with self._journal_guard(index, task):
            await journal.submitted(index, task.id, reserved)
        return task

    async def _save(self, index: int, task: Task, request: EditRequest) -> Path | None:
        if self.options.destination is not None:
            return await self.client.download(task, self.options.destination(index, request))
        if self.options.download_dir is None:
            return None
        return await self.client.download(task, self.options.download_dir / output_name(request))

    async def _record_failure(
        self, index: int, digest: str, exc: Exception, task: Task | None
    ) -> None:
        if isinstance(exc, ACCOUNT_ERRORS) and self.halt is None:
            self.halt = exc
        if isinstance(exc, JournalError):
            self._journal_broken(exc, index, task)
            return
        if self.journal is None:
            return
        with anyio.CancelScope(shield=True), self._journal_guard(index, task):
            if isinstance(exc, SubmissionUncertainError):
                await self.journal.uncertain(index, str(exc))
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
                index,
                digest,
                code=code,
                message=str(exc),
                retryable=retryable,
                task_id=task.id if task else None,
            )

    def _journal_broken(self, exc: JournalError, index: int, task: Task | None) -> None:
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
    ) -> None:
        p = self.progress
        self.progress = BatchProgress(
            p.submitted + submitted,
            p.running + running,
            p.done + done,
            p.failed + failed,
            p.credits_reserved + credits,
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
    requests: Iterable[EditInput] | AsyncIterable[EditInput],
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
