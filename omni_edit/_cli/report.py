"""What became of each input of a batch: one row per input, as outcomes arrive.

The same rows feed the ``--report`` file (CSV for a ``.csv`` name, a page to watch for
``.html``, see ``html_report``, JSON Lines for any other), the ``--json`` output and the
summary. Outcomes arrive in completion order; the
report is in input order, as the manifest is, so the two can be read side by side. Each
row is written and flushed as soon as every earlier input's row is; a row that arrives
early waits, already serialized, for those. Closing writes what is still waiting, in
order, so a report of an interrupted run holds every outcome it saw.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import attrs

from .._exceptions import (
    APIError,
    OmniEditError,
    SubmissionUncertainError,
    TaskFailedError,
    ValidationError,
)
from .._models import EditOutcome
from .manifest import Row

__all__ = ["COLUMNS", "Report", "ReportRow", "Timing", "describe"]

COLUMNS = (
    "index",
    "line",
    "video_url",
    "prompt",
    "task_id",
    "status",
    "error_code",
    "error_message",
    "output",
    "credits",
)


@attrs.frozen
class ReportRow:
    """One input's end. ``status`` is ``completed``, ``failed``, ``uncertain`` (a task
    may exist and be billed) or ``invalid`` (refused before anything was created)."""

    index: int
    line: int
    video_url: str
    prompt: str
    task_id: str | None
    status: str
    error_code: str | None
    error_message: str | None
    output: str | None
    credits: float | None

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Timing:
    """When an input's task was created (``None`` if none was) and when its outcome
    reached the batch."""

    created: datetime | None
    ended: datetime


def describe(outcome: EditOutcome, row: Row) -> ReportRow:
    """The report row for ``outcome``; ``row`` is its manifest row (line, fields and the
    problem found while reading, which outranks what the SDK says about a placeholder)."""
    request = outcome.request
    task = outcome.task
    error = outcome.error
    usage = task.usage if task is not None else None
    if row.problem is not None:
        status, code, message = "invalid", "invalid_row", row.problem
    elif error is None:
        status, code, message = "completed", None, None
    elif isinstance(error, TaskFailedError) and error.task.error is not None:
        # The task id has its own column: the API's own words are the message.
        status, code = "failed", error.code
        message = error.task.error.message or str(error)
    else:
        status, code, message = _classify(error), _code(error), str(error)
    return ReportRow(
        index=outcome.index,
        line=row.line,
        video_url=request.video_url if request else row.fields.get("video_url", ""),
        prompt=request.prompt if request else row.fields.get("prompt", ""),
        task_id=task.id if task is not None and task.id else None,
        status=status,
        error_code=code,
        error_message=message,
        output=str(outcome.path) if outcome.path is not None else None,
        credits=usage.credits_reserved if usage is not None else None,
    )


def _classify(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        return "invalid"
    if isinstance(error, SubmissionUncertainError):
        return "uncertain"
    return "failed"


def _code(error: BaseException) -> str:
    """The task's business code when there is one, else the API's, else the error's
    class name, which the README's table of errors explains."""
    if isinstance(error, TaskFailedError) and error.code:
        return error.code
    if isinstance(error, APIError) and error.code is not None:
        return str(error.code)
    if isinstance(error, OmniEditError):
        return type(error).__name__
    return "unexpected_error"


class Report:
    """The ``--report`` file: written afresh by each run, one row per input, in input
    order (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Held open for the whole run, closed by close().
        self._file: TextIO = self._open(path)
        self._next = 0  # the index of the next row the file takes
        self._waiting: dict[int, str] = {}
        self._writer: csv.DictWriter[str] | None = None
        self._buffer = io.StringIO()
        if path.suffix.lower() == ".csv":
            self._writer = csv.DictWriter(self._buffer, fieldnames=COLUMNS)
            self._writer.writeheader()
            self._file.write(self._take())
            self._file.flush()

    def _open(self, path: Path) -> TextIO:
        return open(path, "w", encoding="utf-8", newline="")

    def write(self, row: ReportRow, timing: Timing | None = None) -> None:
        self._waiting[row.index] = self._text(row, timing)
        if self._next not in self._waiting:
            return
        while self._next in self._waiting:
            self._file.write(self._waiting.pop(self._next))
            self._next += 1
        self._file.flush()

    def close(self) -> None:
        # Rows after a gap: inputs an interrupted run never finished, or a row appended
        # to the manifest while the batch ran.
        for index in sorted(self._waiting):
            self._file.write(self._waiting.pop(index))
        self._file.close()

    def _text(self, row: ReportRow, timing: Timing | None) -> str:
        if self._writer is None:
            return json.dumps(row.as_dict(), ensure_ascii=False) + "\n"
        self._writer.writerow(row.as_dict())
        return self._take()

    def _take(self) -> str:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text
