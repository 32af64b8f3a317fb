"""One batch across many hosts: ``omni-edit worker`` and ``omni-edit status --journal``.

``omni-edit batch MANIFEST --journal postgresql://…`` loads the manifest into the shared
journal and works it; on other hosts ``omni-edit worker --journal postgresql://…``
joins and works until the whole batch is done. ``status --journal`` shows the whole
batch's progress from any host, and with ``--report`` writes its report there
(docs/architecture.md#journals).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import attrs

from .._batch.batch_status import batch_outcomes, batch_status
from .._batch.postgres_journal import redact_dsn
from .._models import BatchStatus
from .context import Context
from .errors import EXIT_FAILED, EXIT_OK, UsageError, plural
from .manifest import Row
from .report import Report, describe

__all__ = ["WorkerSettings", "is_shared", "run_batch_status", "run_worker", "write_report"]


def is_shared(journal: str | None) -> bool:
    return journal is not None and journal.startswith(("postgresql://", "postgres://"))


@attrs.frozen
class WorkerSettings:
    journal: str
    out_dir: Path
    concurrency: int
    account_concurrency: int | None = None
    preflight: bool = True


async def run_worker(ctx: Context, settings: WorkerSettings) -> int:
    """Join the batch in the shared journal and work it until it is done. Exit 0 when
    the whole batch completed, 1 when some input did not."""
    if not is_shared(settings.journal):
        raise UsageError("worker needs --journal postgresql://… (the shared journal)")
    location = redact_dsn(settings.journal)
    tally: Counter[str] = Counter()
    async with ctx.open_client() as client:
        outcomes = client.edit_many(
            None,
            journal=settings.journal,
            concurrency=settings.concurrency,
            download_dir=settings.out_dir,
            preflight=settings.preflight,
            account_concurrency=settings.account_concurrency,
        )
        async for outcome in outcomes:
            row = describe(outcome, Row(outcome.index, 0, {}))
            tally[row.status] += 1
            if ctx.json:
                ctx.emit({"event": "outcome", **row.as_dict()})
            elif row.status != "completed":
                ctx.note(f"input {row.index}: {row.status}: {row.error_message}")
    status = await batch_status(settings.journal)
    worked = sum(tally.values())
    if ctx.json:
        ctx.emit({"event": "summary", "worked": worked, **_as_dict(status)})
    else:
        ctx.say(f"this worker: {plural(worked, 'input')} worked, {tally['completed']} completed")
        _say_status(ctx, status, location)
    return EXIT_OK if status.completed == status.total else EXIT_FAILED


async def run_batch_status(ctx: Context, journal: str, report: Path | None) -> int:
    """The whole batch's progress; with ``report``, its report (one row per finished
    input, in load order) written here."""
    if not is_shared(journal):
        raise UsageError("status --journal reads a shared journal: a postgresql:// URL")
    status = await batch_status(journal)
    if report is not None:
        written = await write_report(journal, report)
        if not ctx.json:
            ctx.say(f"report   {report} ({plural(written, 'row')})")
    if ctx.json:
        ctx.emit({"event": "batch_status", **_as_dict(status)})
    else:
        _say_status(ctx, status, redact_dsn(journal))
    return EXIT_OK


async def write_report(journal: str, path: Path) -> int:
    """The report of every finished input of the shared batch, in load order."""
    try:
        report = Report(path)
    except OSError as exc:
        raise UsageError(f"cannot write the report {path}: {exc.strerror or exc}") from None
    written = 0
    try:
        async for outcome in batch_outcomes(journal):
            report.write(describe(outcome, Row(outcome.index, 0, {})))
            written += 1
    finally:
        report.close()
    return written


def _as_dict(status: BatchStatus) -> dict[str, int | bool]:
    return {**attrs.asdict(status), "done": status.done}


def _say_status(ctx: Context, status: BatchStatus, location: str) -> None:
    parts = [f"{status.completed} completed"]
    for count, name in (
        (status.failed, "failed"),
        (status.retryable, "failed (retried when loaded again)"),
        (status.uncertain, "uncertain"),
        (status.in_progress, "in progress"),
    ):
        if count:
            parts.append(f"{count} {name}")
    ctx.say(f"batch    {plural(status.total, 'input')}: {', '.join(parts)}")
    state = "done" if status.done else f"{status.queued} still to finish"
    ctx.say(f"         {state}; {plural(status.workers, 'worker')} alive")
    ctx.say(f"journal  {location}")
