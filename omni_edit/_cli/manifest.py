"""A batch manifest: CSV with a header row, or JSON Lines, one input per data row.

Keys (CSV columns): ``video_url`` (or ``video``) and ``prompt`` (required),
``callback_url`` and ``output`` (optional). A ``video_url`` may be a local clip: a path
relative to the manifest's folder (and inside it), or an absolute one; it is uploaded to
the client's storage (docs/storage.md#in-a-batch-and-its-journal). An ``output`` is a
file name, or a relative path, inside the batch's output folder: nothing a manifest
says is written anywhere else. The n-th data row is input n of the batch whatever is
wrong with it, so reports name rows by their place; the journal knows inputs by what
they ask for, so a bad row is reported, skipped, and once fixed is a new input.
Blank lines are not data rows. A row's problem is found here, before anything is sent,
and named by the line it starts on in the file.

The file is read twice (``Manifest.rows`` is a fresh generator each time): once to
count and check, once to feed the batch, so a million-row manifest never sits in memory.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import TextIO

import attrs

from .._constants import FILE_NAME_MAX_BYTES, TEMP_NAME_ROOM_BYTES
from .._exceptions import ValidationError
from .._media.storage import is_local_clip, local_clip_path
from .._wire.validation import validate_callback_url, validate_prompt, validate_video_url
from .errors import UsageError

__all__ = ["KEYS", "FolderManifest", "Manifest", "Row", "is_inside"]

REQUIRED = ("video_url", "prompt")
# "video": the same as video_url, for a manifest that names clips rather than URLs.
KEYS = (*REQUIRED, "video", "callback_url", "output")
_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
# The longest path when the system does not say.
_PATH_MAX_FALLBACK = 1024


@attrs.frozen
class Row:
    """One data row: its input position, the line it starts on, and either the input
    (``fields``: video_url, prompt, maybe callback_url) or the ``problem`` with it."""

    index: int
    line: int
    fields: dict[str, str]
    # Inside the batch's output folder (checked as the row was read).
    output: Path | None = None
    problem: str | None = None


class Manifest:
    """The inputs of a batch, read from ``path``.

    A row's ``output`` is taken under ``out_dir`` (not the manifest's folder, which
    need not be where results go). ``allow_loopback_callbacks`` mirrors the client's
    rule: plain http callbacks to a loopback host are fine against a local emulator,
    never against the real API. ``ignored_keys`` collects keys a row had that no input
    uses (after ``rows`` ran).
    """

    def __init__(
        self, path: Path, *, out_dir: Path, allow_loopback_callbacks: bool = False
    ) -> None:
        self.path = path
        self.out_dir = out_dir
        self.allow_loopback_callbacks = allow_loopback_callbacks
        self.ignored_keys: set[str] = set()

    def place(self, line: int, video_url: str) -> str:
        """How messages name a row: by its line."""
        return f"manifest line {line}"

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
            if self._is_blank():
                raise UsageError(
                    f"the manifest {self.path} is empty: write a header row naming the"
                    " columns video_url and prompt, then one row per clip (or, as JSON"
                    " Lines, one object per clip)"
                )
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

    def _is_blank(self) -> bool:
        # Read until the first character that is not white space: one read for any
        # manifest with content, however large.
        with self._open() as file:
            while chunk := file.read(1 << 16):
                if not chunk.isspace():
                    return False
        return True

    def _open(self) -> TextIO:
        # utf-8-sig: spreadsheets put a byte-order mark in front of the header.
        return open(self.path, encoding="utf-8-sig", newline="")

    # --- the two formats --------------------------------------------------------------

    def _csv(self) -> Iterator[tuple[int, dict[str, object] | str]]:
        with self._open() as file:
            reader = csv.reader(file)
            try:
                header = [name.strip() for name in next(reader, [])]
                named = {*header, "video_url"} if "video" in header else set(header)
                missing = [key for key in REQUIRED if key not in named]
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
        video = fields.pop("video", None)
        if video is not None and "video_url" not in fields:
            fields["video_url"] = video
        row = Row(index, line, fields)
        try:
            clip = fields.get("video_url", "")
            if clip and is_local_clip(clip):
                fields["video_url"] = self._local_clip(clip)
            else:
                validate_video_url(clip)
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
        try:
            same = self._output_path(output)
        except ValueError as exc:
            return attrs.evolve(row, problem=f"output {_shown(output)} {exc}")
        if same in outputs:
            return attrs.evolve(
                row,
                problem=f"output {_shown(output)} is also the output of line {outputs[same]}",
            )
        outputs[same] = line
        # As the user wrote it, under the output folder: that is what the report shows.
        return attrs.evolve(row, output=self.out_dir / output)

    def _output_path(self, output: str) -> Path:
        """Where ``output`` is saved: under ``out_dir``, symbolic links resolved.
        ``ValueError`` (the reason) for a path that would lead out of it, or that the
        file system could not take, so the row is refused before it is billed."""
        if "\0" in output:
            raise ValueError("contains a NUL character")
        relative = PurePath(output)
        # "~" is not expanded: it would lead out of the folder, as "/" and ".." do.
        if relative.anchor or output.startswith("~") or ".." in relative.parts:
            raise ValueError(
                "must be a file name or a relative path inside the output folder"
                " (--out-dir), without '..', '~' or a leading '/'"
            )
        if not relative.parts:
            raise ValueError("names no file")
        for part in relative.parts:
            room = FILE_NAME_MAX_BYTES - (TEMP_NAME_ROOM_BYTES if part == relative.name else 0)
            if len(os.fsencode(part)) > room:
                raise ValueError(f"has a name longer than {room} bytes")
        try:
            base = self.out_dir.resolve()
            # Resolved, so that a symbolic link among the folders already there cannot
            # lead out of the output folder either.
            path = (base / relative).resolve()
            if not path.is_relative_to(base):
                raise ValueError("leads out of the output folder (--out-dir) through a link")
            if len(os.fsencode(path)) + TEMP_NAME_ROOM_BYTES > _path_max(base):
                raise ValueError("makes a path longer than the file system takes")
            if path.is_dir():
                raise ValueError("is a folder")
        except (OSError, RuntimeError) as exc:  # RuntimeError: a loop of links (< 3.13)
            raise ValueError(f"cannot be used: {getattr(exc, 'strerror', None) or exc}") from None
        return path

    def _local_clip(self, text: str) -> str:
        """A local clip's absolute path: a relative one is taken in the manifest's folder
        (not the working directory) and must stay inside it, so a manifest cannot climb
        out with ``..`` (docs/storage.md#in-a-batch-and-its-journal)."""
        path = local_clip_path(text)
        if path.is_absolute():
            return os.path.normpath(path)
        base = Path(os.path.abspath(self.path.parent))
        joined = Path(os.path.normpath(base / path))
        if not joined.is_relative_to(base):
            raise ValidationError(
                f"the clip {_shown(text)} leads out of the manifest's folder: name it"
                " inside the folder, or by an absolute path",
                field="video_url",
            )
        return str(joined)


class FolderManifest(Manifest):
    """A folder of clips as a batch: every file matching ``pattern`` (in name order),
    each edited with ``prompt``. Files under ``out_dir`` are results, not clips."""

    def __init__(self, folder: Path, *, pattern: str, prompt: str, out_dir: Path) -> None:
        super().__init__(folder, out_dir=out_dir)
        try:
            validate_prompt(prompt)
        except ValidationError as exc:
            raise UsageError(f"--prompt: {exc}") from None
        self.pattern = pattern
        self.prompt = prompt

    def place(self, line: int, video_url: str) -> str:
        """How messages name a clip: by its file's name."""
        return f"clip {PurePath(video_url).name}"

    @property
    def is_jsonl(self) -> bool:
        return False

    def rows(self) -> Iterator[Row]:
        results = Path(os.path.abspath(self.out_dir))
        try:
            files = sorted(
                Path(os.path.abspath(p))
                for p in self.path.glob(self.pattern)
                if p.is_file() and not Path(os.path.abspath(p)).is_relative_to(results)
            )
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot list the folder {self.path}: {exc}") from None
        if not files:
            raise UsageError(
                f"no file in {self.path} matches {self.pattern!r} (--glob chooses which)"
            )
        for index, file in enumerate(files):
            yield Row(index, index + 1, {"video_url": str(file), "prompt": self.prompt})


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` stays inside ``folder`` once symbolic links are resolved."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def _shown(output: str) -> str:
    # Quoted, with control characters escaped, and bounded: a row's text must not
    # garble the terminal or flood it.
    text = repr(output)
    return text if len(text) <= 80 else text[:76] + "...'"


def _path_max(folder: Path) -> int:
    """The longest path the file system under ``folder`` takes (its nearest existing
    parent is asked: the output folder itself may not exist yet)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            try:
                return os.pathconf(candidate, "PC_PATH_MAX")
            except (OSError, ValueError, AttributeError):
                break
    return _PATH_MAX_FALLBACK
