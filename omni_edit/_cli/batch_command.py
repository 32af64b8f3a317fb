"""``omni-edit batch MANIFEST``: every row of a manifest edited, resumable, reported.

The manifest is read once to count and check it (bad rows are reported by line now,
before anything is sent), then again lazily as ``Client.edit_many`` asks for inputs.
Every data row reaches the SDK in order, so input n is data row n (the journal knows
inputs by what they are, so edits to other rows change nothing for it); a bad row goes
as a placeholder the SDK refuses before it touches the journal or the network. The
journal lives beside the manifest by default, which is what makes "run the same command
again" resume.
"""

from __future__ import annotations

import contextlib
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import attrs

from .._batch.batch_status import batch_status
from .._batch.inputs import output_name
from .._batch.postgres_journal import redact_dsn
from .._client import Client
from .._config import find_api_key
from .._constants import CREDITS_PER_1K_TOKENS_ESTIMATE, MAX_VIDEO_SECONDS
from .._exceptions import (
    ACCOUNT_ERRORS,
    APIConnectionError,
    APIError,
    DownloadError,
    JournalError,
    MalformedResponseError,
    StorageError,
)
from .._models import Balance, EditOutcome, EditRequest, PollPolicy
from .._wire.validation import is_loopback_host
from .context import Context
from .dry_run import Estimate, dry_run, estimate
from .errors import EXIT_FAILED, EXIT_OK, UsageError, explain, plural
from .html_report import HtmlReport, is_html
from .manifest import FolderManifest, Manifest, Row, is_inside
from .progress import Progress, make_progress, ticking
from .report import Report, ReportRow, Timing, describe
from .shared_batch import is_shared, write_report

__all__ = ["BatchSettings", "run_batch"]

# Edits open at once when --concurrency is not given: the client allows 16 requests in
# flight, and an open edit spends most of its time waiting, not requesting.
DEFAULT_CONCURRENCY = 64
# Unusable rows are listed one by one up to this many; past it, only counted.
_MAX_PROBLEMS_SHOWN = 50


@attrs.frozen
class BatchSettings:
    """The options of one ``batch`` run. ``rerun`` is the command line that resumes it,
    shown when Ctrl-C interrupts (the API key never appears in it)."""

    manifest: Path
    out_dir: Path | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    # A file path, or a postgresql:// URL: the batch shared with workers on other hosts.
    journal: Path | str | None = None
    report: Path | None = None
    resubmit_uncertain: bool = False
    preflight: bool = True
    dry_run: bool = False
    ignore_balance: bool = False
    credits_per_1k_tokens: float = CREDITS_PER_1K_TOKENS_ESTIMATE
    rerun: str = ""
    # A second report, the page to watch (the demo writes CSV and HTML), and local
    # copies of inputs for the page to link instead of their URLs.
    html_report: Path | None = None
    local_sources: Mapping[str, Path] = attrs.field(factory=dict)
    # With a shared journal: the in-flight cap all its workers share.
    account_concurrency: int | None = None
    # With a folder for ``manifest``: the prompt for every clip, and which files are clips.
    prompt: str | None = None
    glob: str = "*.mp4"
    # A clip over 10 s edited in segments and stitched (False: refused).
    split: bool = True

    @property
    def _source(self) -> Path:
        # A folder named "." or "clips/" has its real name once made absolute.
        return Path(os.path.abspath(self.manifest)) if self.manifest.is_dir() else self.manifest

    @property
    def shared(self) -> bool:
        return isinstance(self.journal, str) and is_shared(self.journal)

    @property
    def journal_path(self) -> Path:
        if self.journal is None:
            return self._source.with_name(self._source.name + ".journal.sqlite")
        return Path(self.journal)

    @property
    def journal_shown(self) -> str:
        if isinstance(self.journal, str) and self.shared:
            return redact_dsn(self.journal)
        return str(self.journal_path)

    @property
    def out_dir_path(self) -> Path:
        return self.out_dir or self._source.with_name(f"{self._source.stem}-results")


@attrs.define
class _Scan:
    """What the first reading of the manifest keeps: little per row, so it scales."""

    lines: array[int] = attrs.field(factory=lambda: array("q"))
    problems: dict[int, Row] = attrs.field(factory=dict)
    outputs: dict[int, Path] = attrs.field(factory=dict)

    @property
    def total(self) -> int:
        return len(self.lines)

    def row(self, index: int) -> Row:
        # A row appended to the file while the batch ran has no line on record.
        line = self.lines[index] if index < len(self.lines) else 0
        return self.problems.get(index) or Row(index, line, {})


def _scan(ctx: Context, manifest: Manifest) -> _Scan:
    scan = _Scan()
    for row in manifest.rows():
        scan.lines.append(row.line)
        if row.problem is not None:
            scan.problems[row.index] = row
            if len(scan.problems) <= _MAX_PROBLEMS_SHOWN:
                where = manifest.place(row.line, row.fields.get("video_url", ""))
                ctx.note(f"{where}: {row.problem}")
        elif row.output is not None:
            scan.outputs[row.index] = row.output
    if len(scan.problems) > _MAX_PROBLEMS_SHOWN:
        more = len(scan.problems) - _MAX_PROBLEMS_SHOWN
        ctx.note(f"... and {more} more unusable rows (all of them are in the report)")
    if manifest.ignored_keys:
        ignored = ", ".join(sorted(manifest.ignored_keys))
        ctx.note(f"manifest: ignoring unknown column(s) {ignored}")
    if scan.total == 0:
        raise UsageError(f"the manifest {manifest.path} has no data rows")
    return scan


async def run_batch(
    ctx: Context, settings: BatchSettings, *, poll: PollPolicy | None = None
) -> int:
    """Run (or resume) the batch; returns the exit status: 0 when every input completed,
    1 when some did not, 2 when the key was refused. Raises ``UsageError`` for a
    missing key or a manifest, journal or report that cannot be used."""
    # The client first, so that a missing key or a bad base URL is the only message.
    async with ctx.open_client(poll=poll, key_needed=not settings.dry_run) as client:
        host = urlsplit(client.base_url).hostname or ""
        manifest = _manifest(settings, allow_loopback_callbacks=is_loopback_host(host))
        scan = _scan(ctx, manifest)
        if settings.dry_run:
            balance, why = None, "no API key given"
            if find_api_key(ctx.api_key):
                balance, why = await _read_balance(ctx, client)
            return await dry_run(
                ctx,
                client,
                manifest,
                concurrency=settings.concurrency,
                credits_per_1k_tokens=settings.credits_per_1k_tokens,
                split=settings.split,
                balance=balance,
                balance_note=why,
            )
        if not settings.ignore_balance:
            await _check_balance(ctx, client, settings, manifest)
        return await _edit_all(ctx, client, settings, manifest, scan)


async def _read_balance(ctx: Context, client: Client) -> tuple[Balance | None, str]:
    """The balance, or ``None`` and why not, told as a warning. A deployment without the
    endpoint, or one that fails it, does not stop a batch: the API still refuses (402)
    what the account cannot pay. A refused key is not warned about here: the batch meets
    the same refusal at its first input, and tells it once, with every row reported."""
    try:
        return await client.balance(), ""
    except ACCOUNT_ERRORS as exc:
        return None, f"the key was refused: {exc}"
    except (APIError, APIConnectionError, MalformedResponseError) as exc:
        why = f"the balance could not be read: {exc}"
    if ctx.json:
        ctx.emit({"event": "warning", "message": why})
    else:
        ctx.note(f"omni-edit: warning: {why}; going on without the credit check")
    return None, why


async def _check_balance(
    ctx: Context, client: Client, settings: BatchSettings, manifest: Manifest
) -> None:
    """Before anything is submitted: ``UsageError`` (exit 2), with both figures, when
    the balance cannot cover the batch's credit estimate (docs/api.md#balance).

    With preflight, the estimate is ``--dry-run``'s: every clip's header is probed, and
    a clip that cannot be probed counts as nothing (preflight refuses it before it is
    billed). With ``--no-preflight`` no clip is read (that is what the flag asks: a
    million rows would cost a million header reads before the first create), so every
    usable row counts as the longest clip the API takes: an upper bound. A resumed
    batch (its journal exists) is only warned: the estimate counts inputs the journal
    may hold as done.
    """
    balance, _ = await _read_balance(ctx, client)
    if balance is None:
        return
    rate = settings.credits_per_1k_tokens
    if settings.preflight:
        if not ctx.json:
            ctx.note("Checking the balance against an estimate (probing every clip)...")
        found = await estimate(
            client, manifest, concurrency=settings.concurrency, split=settings.split
        )
        needed, inputs, how = found.credits(rate), found.inputs, "roughly"
    else:
        inputs = sum(1 for row in manifest.rows() if row.problem is None)
        needed = Estimate().credits(rate, inputs * MAX_VIDEO_SECONDS)
        how = f"up to (each clip counted as {MAX_VIDEO_SECONDS:g} s, unread)"
    available = balance.available
    if needed <= available:
        return
    figures = (
        f"the batch needs {how} {needed:,.1f} credits ({plural(inputs, 'input')})"
        f" and {available:,.1f} are available"
    )
    if settings.journal_path.exists():
        message = f"{figures}; the journal exists, so inputs already done are counted too: going on"
        if ctx.json:
            ctx.emit({"event": "warning", "message": message})
        else:
            ctx.note(f"omni-edit: warning: {message}")
        return
    raise UsageError(
        f"{figures}: nothing was submitted. Top up the account, run fewer inputs, or pass"
        " --ignore-balance to submit anyway (the API refuses with HTTP 402 what the"
        " balance cannot cover)"
    )


def _manifest(settings: BatchSettings, *, allow_loopback_callbacks: bool) -> Manifest:
    """The batch's inputs: a manifest file, or a folder of clips with ``--prompt``."""
    if settings.manifest.is_dir():
        if settings.prompt is None:
            raise UsageError(
                f"{settings.manifest} is a folder: give the prompt for its clips with --prompt"
            )
        return FolderManifest(
            settings.manifest,
            pattern=settings.glob,
            prompt=settings.prompt,
            out_dir=settings.out_dir_path,
        )
    if settings.prompt is not None:
        raise UsageError(
            f"--prompt goes with a folder of clips, and {settings.manifest} is not a folder"
            " (a manifest has its own prompts)"
        )
    return Manifest(
        settings.manifest,
        out_dir=settings.out_dir_path,
        allow_loopback_callbacks=allow_loopback_callbacks,
    )


async def _edit_all(
    ctx: Context, client: Client, settings: BatchSettings, manifest: Manifest, scan: _Scan
) -> int:
    journal: Path | str = settings.journal_path
    if isinstance(settings.journal, str) and settings.shared:
        journal = settings.journal
    elif not settings.journal_path.parent.is_dir():
        raise UsageError(f"cannot keep the journal at {journal}: no such folder")
    elif settings.account_concurrency is not None:
        raise UsageError("--account-concurrency needs a shared journal: --journal postgresql://…")
    out_dir = settings.out_dir_path

    def destination(index: int, request: EditRequest, occurrence: int) -> Path:
        path = scan.outputs.get(index)
        if path is None:
            return out_dir / output_name(request, occurrence)
        # Checked when the manifest was read; again now (before the input is billed), in
        # case a link was put in the output folder since: a result is never written
        # outside it.
        if not is_inside(path, out_dir):
            raise DownloadError(f"{path} now leads out of the output folder {out_dir}")
        return path

    def inputs() -> Iterator[dict[str, str]]:
        for row in manifest.rows():
            # {} is refused by the SDK at once: the row keeps its index, costs nothing.
            yield {} if row.problem is not None else row.fields

    # A shared batch's report is written from the journal at the end: it covers the
    # inputs the other workers did too.
    reports = [] if settings.shared else _open_reports(settings)
    progress = make_progress(scan.total, ctx.err, json=ctx.json)
    tally: Counter[str] = Counter()
    halt: BaseException | None = None
    if settings.rerun:
        ctx.on_interrupt = f"Interrupted; the journal is kept. Resume with: {settings.rerun}"
    try:
        # Closing the generator at once on Ctrl-C stops submissions and polling now
        # rather than whenever it is collected.
        outcomes = client.edit_many(
            inputs(),
            concurrency=settings.concurrency,
            journal=journal,
            on_progress=progress.update,
            resubmit_uncertain=settings.resubmit_uncertain,
            preflight=settings.preflight,
            destination=destination,
            account_concurrency=settings.account_concurrency,
            split=settings.split,
        )
        async with ticking(progress), contextlib.aclosing(outcomes):
            async for outcome in outcomes:
                row = describe(outcome, scan.row(outcome.index))
                created = outcome.task.created if outcome.task is not None else None
                timing = Timing(created, datetime.now(timezone.utc))
                tally[row.status] += 1
                if outcome.resumed:
                    # Done by an earlier run or another worker sharing the journal.
                    tally["resumed"] += 1
                progress.ended_one(row.status)
                halted = _halted(outcome)
                if halted and halt is None:
                    halt = outcome.error
                # A refused key is told once, at the end, not once per input.
                _show(ctx, progress, row, timing, reports, quiet=halted, place=manifest.place)
    finally:
        progress.close()
        for report in reports:
            report.close()
    ctx.on_interrupt = None
    credits = progress.counts.credits_reserved
    if isinstance(journal, str):
        return await _summarize_shared(ctx, settings, journal, tally, credits, halt)
    return _summarize(ctx, settings, scan.total, tally, credits, halt, reports)


def _open_reports(settings: BatchSettings) -> list[Report]:
    reports: list[Report] = []
    try:
        for path in (settings.report, settings.html_report):
            if path is not None:
                reports.append(_open_report(path, settings.local_sources))
    except BaseException:
        for report in reports:
            report.close()
        raise
    return reports


def _open_report(path: Path, sources: Mapping[str, Path]) -> Report:
    try:
        return HtmlReport(path, sources=sources) if is_html(path) else Report(path)
    except OSError as exc:
        raise UsageError(f"cannot write the report {path}: {exc.strerror or exc}") from None


def _halted(outcome: EditOutcome) -> bool:
    # A refused key, an empty account, a journal that cannot be written or a storage
    # that refuses uploads fails every input alike: it is the user's setup, not the
    # edits, and it is told once.
    return isinstance(outcome.error, (*ACCOUNT_ERRORS, JournalError, StorageError))


def _show(
    ctx: Context,
    progress: Progress,
    row: ReportRow,
    timing: Timing,
    reports: list[Report],
    *,
    quiet: bool,
    place: Callable[[int, str], str],
) -> None:
    for report in reports:
        report.write(row, timing)
    if ctx.json:
        ctx.emit({"event": "outcome", **row.as_dict()})
    elif row.status != "completed" and row.error_code != "invalid_row" and not quiet:
        # Invalid rows were listed while the manifest was read.
        code = f" ({row.error_code})" if row.status != "invalid" else ""
        where = place(row.line, row.video_url)
        progress.message(f"{where}: {row.status}{code}: {row.error_message}")


def _summarize(
    ctx: Context,
    settings: BatchSettings,
    total: int,
    tally: Counter[str],
    credits: float,
    halt: BaseException | None,
    reports: list[Report],
) -> int:
    status = EXIT_OK if tally["completed"] == total else EXIT_FAILED
    if halt is not None:
        # Usually exit 2: the key is the user's setup to fix, not the edits.
        message, status = explain(halt, ctx.effective_base_url)
        ctx.note(f"omni-edit: error: {message}")
        if isinstance(halt, APIError) and halt.limit == "key_daily_quota" and settings.rerun:
            # The journal keeps what was done: tomorrow the same command goes on.
            ctx.note(
                f"The key's daily limit resets at midnight. Resume tomorrow with: {settings.rerun}"
            )
    if ctx.json:
        ctx.emit(
            {
                "event": "summary",
                "total": total,
                **{key: tally[key] for key in ("completed", "failed", "uncertain", "invalid")},
                # This run's share, and what the journal already held.
                "found_done": tally["resumed"],
                "credits_reserved": round(credits, 2),
                "out_dir": str(settings.out_dir_path),
                "journal": settings.journal_shown,
                "report": str(reports[0].path) if reports else None,
                "exit_code": status,
            }
        )
        return status
    others = ", ".join(
        f"{tally[key]} {key}" for key in ("failed", "uncertain", "invalid") if tally[key]
    )
    ctx.say(
        f"{tally['completed']} of {plural(total, 'input')} completed"
        + (f"; {others}" if others else "")
    )
    if tally["resumed"]:
        ctx.say(
            f"  share    {total - tally['resumed']} worked by this run,"
            f" {tally['resumed']} found done (by an earlier run, or another run sharing"
            " the journal)"
        )
    if tally["completed"]:
        ctx.say(f"  results  {settings.out_dir_path}/")
    for report in reports:
        if isinstance(report, HtmlReport):
            ctx.say(
                f"  report   {report.path} (open it in a browser: {report.path.resolve().as_uri()})"
            )
        else:
            ctx.say(f"  report   {report.path}")
    ctx.say(f"  journal  {settings.journal_shown}")
    ctx.say(f"  credits  {credits:.1f} reserved by the tasks this run submitted")
    if tally["uncertain"]:
        ctx.say(
            f"{tally['uncertain']} input(s) got no answer to their create request, even"
            " after replays: running the same command again replays their recorded keys,"
            " which finds a task already made instead of paying twice"
        )
    return status


async def _summarize_shared(
    ctx: Context,
    settings: BatchSettings,
    journal: str,
    tally: Counter[str],
    credits: float,
    halt: BaseException | None,
) -> int:
    """A shared batch: this host's share, then the whole batch as the journal has it."""
    status = EXIT_OK
    if halt is not None:
        message, status = explain(halt, ctx.effective_base_url)
        ctx.note(f"omni-edit: error: {message}")
    whole = await batch_status(journal)
    if settings.report is not None:
        await write_report(journal, settings.report)
    if status == EXIT_OK and (whole.completed != whole.total or tally["invalid"]):
        status = EXIT_FAILED
    if ctx.json:
        ctx.emit(
            {
                "event": "summary",
                "worked": sum(tally.values()),
                **{key: tally[key] for key in ("completed", "failed", "uncertain", "invalid")},
                "batch": attrs.asdict(whole),
                "credits_reserved": round(credits, 2),
                "out_dir": str(settings.out_dir_path),
                "journal": settings.journal_shown,
                "report": str(settings.report) if settings.report else None,
                "exit_code": status,
            }
        )
        return status
    ctx.say(
        f"this host: {tally['completed']} completed of {plural(sum(tally.values()), 'input')}"
        f" it worked; {whole.completed} of {plural(whole.total, 'input')} of the batch completed"
        + ("" if whole.done else f", {whole.queued} still to finish on other workers")
    )
    if settings.report is not None:
        ctx.say(f"  report   {settings.report}")
    ctx.say(f"  journal  {settings.journal_shown}")
    ctx.say(f"  credits  {credits:.1f} reserved by the tasks this host submitted")
    return status
