"""What became of each input of a batch: one row per input, as outcomes arrive.

The same rows feed the ``--report`` file (CSV for a ``.csv`` name, JSON Lines for any
other), the ``--json`` output and the summary. Each row is flushed as it is written, so
a report of an interrupted run holds every outcome it saw.
"""

from __future__ import annotations

import csv
import json
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

__all__ = ["COLUMNS", "Report", "ReportRow", "describe"]

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
    """The ``--report`` file: written afresh by each run, one flushed row per outcome."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._csv = path.suffix.lower() == ".csv"
        # Held open for the whole run, closed by close().
        self._file: TextIO = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._writer: csv.DictWriter[str] | None = None
        if self._csv:
            self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
            self._writer.writeheader()
            self._file.flush()

    def write(self, row: ReportRow) -> None:
        if self._writer is not None:
            self._writer.writerow(row.as_dict())
        else:
            self._file.write(json.dumps(row.as_dict(), ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
