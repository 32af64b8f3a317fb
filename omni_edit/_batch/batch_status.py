"""A shared batch read from any host: its progress, and its inputs' outcomes for a
report (``omni-edit status --journal postgresql://…``).

A reader is not a worker: it holds no lease and no slot of the account's cap.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

from .._exceptions import (
    OmniEditError,
    SubmissionUncertainError,
    TaskFailedError,
    ValidationError,
)
from .._models import (
    BatchStatus,
    EditOutcome,
    EditRequest,
    Task,
    TaskError,
    TaskStatus,
    Usage,
)
from .journal import JournalState
from .postgres_journal import PostgresJournal, is_postgres_url

__all__ = ["batch_outcomes", "batch_status"]

# Rows read per query for a report.
_PAGE = 5000


def _check(journal: str) -> str:
    journal = str(journal)
    if not is_postgres_url(journal):
        raise ValidationError(
            "batch_status and batch_outcomes read a shared journal: a postgresql:// URL",
            field="journal",
        )
    return journal


async def batch_status(journal: str) -> BatchStatus:
    """The whole batch's progress in the shared journal at ``journal`` (a
    ``postgresql://`` URL). ``ValidationError`` for another kind of journal or a
    database of another schema version, ``JournalError`` when it cannot be read."""
    store = await PostgresJournal.open(_check(journal), register=False)
    try:
        counts = await store.counts()
    finally:
        await store.close()
    by = counts.by_state
    return BatchStatus(
        total=counts.total,
        completed=by.get("completed", 0),
        failed=by.get("failed", 0),
        retryable=by.get("failed_retryable", 0),
        uncertain=by.get("uncertain", 0),
        in_progress=sum(by.get(s, 0) for s in ("pending", "submitting", "submitted")),
        queued=counts.queued,
        workers=counts.workers,
    )


async def batch_outcomes(journal: str) -> AsyncGenerator[EditOutcome, None]:
    """The outcome of every finished input of the shared batch (completed, failed or
    uncertain), in the order the inputs were loaded; ``index`` is where each was
    loaded. Inputs still in progress are left out."""
    store = await PostgresJournal.open(_check(journal), register=False)
    try:
        after = -1
        while rows := await store.entries(after, _PAGE):
            for seq, (video_url, prompt, callback_url), entry in rows:
                after = seq
                request = EditRequest(video_url, prompt, callback_url)
                outcome = EditOutcome(
                    index=seq,
                    request=request,
                    occurrence=entry.identity.occurrence,
                    resumed=True,
                )
                if entry.state is JournalState.COMPLETED:
                    yield EditOutcome(
                        index=seq,
                        request=request,
                        task=Task(
                            id=entry.task_id or "",
                            status=TaskStatus.COMPLETED,
                            progress=100,
                            results=(entry.result_url,) if entry.result_url else (),
                            usage=Usage(credits_reserved=entry.credits)
                            if entry.credits is not None
                            else None,
                        ),
                        path=Path(entry.path) if entry.path else None,
                        occurrence=entry.identity.occurrence,
                        resumed=True,
                    )
                elif entry.state is JournalState.UNCERTAIN:
                    error: BaseException = SubmissionUncertainError(
                        entry.error_message or "the create's answer was lost",
                        idempotency_key=entry.idempotency_key,
                    )
                    yield _with_error(outcome, error)
                elif entry.state is JournalState.FAILED:
                    yield _with_error(
                        outcome, _failure(entry.task_id, entry.error_code, entry.error_message)
                    )
    finally:
        await store.close()


def _with_error(outcome: EditOutcome, error: BaseException) -> EditOutcome:
    return EditOutcome(
        index=outcome.index,
        request=outcome.request,
        error=error,
        occurrence=outcome.occurrence,
        resumed=True,
    )


def _failure(task_id: str | None, code: str | None, message: str | None) -> OmniEditError:
    text = message or "failed"
    if task_id and code:
        return TaskFailedError(
            Task(id=task_id, status=TaskStatus.FAILED, error=TaskError(code, text))
        )
    return OmniEditError(text)
