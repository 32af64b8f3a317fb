"""A batch manifest: CSV with a header row, or JSON Lines, one input per data row.

Keys (CSV columns): ``video_url`` and ``prompt`` (required), ``callback_url`` and
``output`` (optional). The n-th data row is input n of the batch whatever is wrong with
it, because the journal is keyed by that position: a bad row is reported, skipped, and
once fixed resumes in its own place. Blank lines are not data rows. A row's problem is
found here, before anything is sent, and named by the line it starts on in the file.

The file is read twice (``Manifest.rows`` is a fresh generator each time): once to
count and check, once to feed the batch, so a million-row manifest never sits in memory.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import attrs

from .._exceptions import ValidationError
from .._wire.validation import validate_callback_url, validate_prompt, validate_video_url
from .errors import UsageError

__all__ = ["KEYS", "Manifest", "Row"]

REQUIRED = ("video_url", "prompt")
KEYS = (*REQUIRED, "callback_url", "output")
_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})


@attrs.frozen
class Row:
    """One data row: its input position, the line it starts on, and either the input
    (``fields``: video_url, prompt, maybe callback_url) or the ``problem`` with it."""

    index: int
    line: int
    fields: dict[str, str]
    output: Path | None = None
    problem: str | None = None


class Manifest:
    """The inputs of a batch, read from ``path``.

    ``allow_loopback_callbacks`` mirrors the client's rule: plain http callbacks to a
    loopback host are fine against a local emulator, never against the real API.
    ``ignored_keys`` collects keys a row had that no input uses (after ``rows`` ran).
    """

    def __init__(self, path: Path, *, allow_loopback_callbacks: bool = False) -> None:
        self.path = path
        self.allow_loopback_callbacks = allow_loopback_callbacks
        self.ignored_keys: set[str] = set()

    @property
    def is_jsonl(self) -> bool:
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            return False
        if suffix in _JSONL_SUFFIXES:
            return True
        # No telling suffix: a JSON Lines file starts with an object.
        with self._open() as file:
            return file.read(256).lstrip().startswith("{")

    def rows(self) -> Iterator[Row]:
        """Every data row in order. ``UsageError`` when the file cannot be read at all:
        missing, not UTF-8, or a CSV header without ``video_url`` and ``prompt``."""
        outputs: dict[Path, int] = {}
        try:
            parsed = self._jsonl() if self.is_jsonl else self._csv()
            for index, (line, values) in enumerate(parsed):
                yield self._check(index, line, values, outputs)
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"cannot read the manifest {self.path}: it is not UTF-8 text ({exc.reason})"
            ) from None
        except OSError as exc:
            raise UsageError(
                f"cannot read the manifest {self.path}: {exc.strerror or exc}"
            ) from None

    def _open(self) -> TextIO:
        # utf-8-sig: spreadsheets put a byte-order mark in front of the header.
        return open(self.path, encoding="utf-8-sig", newline="")

    # --- the two formats --------------------------------------------------------------

    def _csv(self) -> Iterator[tuple[int, dict[str, object] | str]]:
        with self._open() as file:
            reader = csv.reader(file)
            try:
                header = [name.strip() for name in next(reader, [])]
                missing = [key for key in REQUIRED if key not in header]
                if missing:
                    raise UsageError(
                        f"the manifest {self.path} must start with a header row naming the"
                        f" columns video_url and prompt (missing: {', '.join(missing)})"
                    )
                self.ignored_keys.update(name for name in header if name not in KEYS)
                start = reader.line_num + 1
                for cells in reader:
                    line, start = start, reader.line_num + 1
                    # Spreadsheets end with rows of empty cells: those are blank lines.
                    if not any(cell.strip() for cell in cells):
                        continue
                    if len(cells) > len(header):
                        yield line, f"has {len(cells)} cells but the header names {len(header)}"
                        continue
                    # Fewer cells than columns: the missing ones are empty.
                    yield line, dict(zip(header, cells, strict=False))
            except csv.Error as exc:
                # The reader cannot go on past a broken quote or a NUL byte.
                raise UsageError(
                    f"cannot read the manifest {self.path}: line {reader.line_num}: {exc}"
                ) from None

    def _jsonl(self) -> Iterator[tuple[int, dict[str, object] | str]]:
        with self._open() as file:
            for line, text in enumerate(file, 1):
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield line, f"is not valid JSON ({exc.msg} at column {exc.colno})"
                    continue
                if not isinstance(value, dict):
                    yield line, f"must be a JSON object, not {type(value).__name__}"
                    continue
                self.ignored_keys.update(key for key in value if key not in KEYS)
                yield line, value

    # --- one row ----------------------------------------------------------------------

    def _check(
        self,
        index: int,
        line: int,
        values: dict[str, object] | str,
        outputs: dict[Path, int],
    ) -> Row:
        if isinstance(values, str):
            return Row(index, line, {}, problem=values)
        fields: dict[str, str] = {}
        for key in KEYS:
            value = values.get(key)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                return Row(index, line, fields, problem=f"{key} must be text, not {value!r}")
            if value.strip():
                fields[key] = value.strip()
        output = fields.pop("output", None)
        row = Row(index, line, fields)
        try:
            validate_video_url(fields.get("video_url", ""))
            validate_prompt(fields.get("prompt", ""))
            if "callback_url" in fields:
                validate_callback_url(
                    fields["callback_url"], allow_loopback_http=self.allow_loopback_callbacks
                )
        except ValidationError as exc:
            missing = exc.field if exc.field and exc.field not in fields else None
            problem = f"{missing} is missing or empty" if missing else str(exc)
            return attrs.evolve(row, problem=problem)
        if output is None:
            return row
        path = self.path.parent / Path(output).expanduser()
        same = path.resolve()
        if same in outputs:
            return attrs.evolve(
                row, problem=f"output {output} is also the output of line {outputs[same]}"
            )
        outputs[same] = line
        return attrs.evolve(row, output=path)
