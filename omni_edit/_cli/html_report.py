"""``--report report.html``: one self-contained page to watch a batch by.

A summary (counts, credits, wall time), then one row per input, in input order: the
source and the result in two players side by side, the prompt, status, error, task id,
credits and timings. It opens from disk with no server. Result files are linked by
relative paths, so the folder holding the page and the results can be moved or zipped;
a source is linked by its http(s) URL, or by a local copy when the caller has one (the
demo does).

Everything from the outside (prompts, file names, URLs, error messages) is escaped; only
an absolute http(s) URL or a path of our own making ever becomes a link or a player's
source, so a ``javascript:`` URL stays text. A strict Content-Security-Policy forbids
scripts and every load but media and the page's own style (docs/media.md#the-html-report).

Rows are streamed to a file beside the page as they arrive; ``close`` writes the page
(summary first) in one piece and replaces any earlier one, so memory stays flat however
long the batch.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO
from urllib.parse import quote, urlsplit

from .report import Report, ReportRow, Timing

__all__ = ["HtmlReport", "is_html"]

_STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; }
dl.summary { display: flex; flex-wrap: wrap; gap: 0.5em 2em; }
dl.summary div { display: flex; gap: 0.4em; }
dt { color: #666; }
dd { margin: 0; font-weight: 600; }
article { border-top: 1px solid #ccc; padding: 1em 0; }
article header { display: flex; gap: 1em; align-items: baseline; flex-wrap: wrap; }
.status { font-weight: 700; text-transform: uppercase; font-size: 0.85em; }
.status-completed .status { color: #1a7f37; }
.status-failed .status, .status-uncertain .status, .status-invalid .status { color: #b42318; }
.prompt { font-size: 1.05em; margin: 0.5em 0; white-space: pre-wrap; }
.players { display: flex; gap: 1em; flex-wrap: wrap; }
figure { margin: 0; flex: 1 1 280px; max-width: 480px; }
figcaption { color: #666; font-size: 0.9em; overflow-wrap: anywhere; }
video { width: 100%; background: #000; aspect-ratio: 16 / 9; }
.none { display: flex; align-items: center; justify-content: center; aspect-ratio: 16 / 9;
        background: #f2f2f2; color: #666; }
dl.facts { display: flex; flex-wrap: wrap; gap: 0.2em 1.5em; font-size: 0.9em; }
dl.facts div { display: flex; gap: 0.4em; }
.error dd { color: #b42318; font-weight: 400; overflow-wrap: anywhere; }
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
# No script at all; media from the page's folder (file:) or the web; the style above.
_CSP = (
    "default-src 'none'; script-src 'none'; object-src 'none'; img-src 'none';"
    f" style-src 'sha256-{_STYLE_HASH}'; media-src file: http: https:;"
    " base-uri 'none'; form-action 'none'"
)
_STATUSES = ("completed", "failed", "uncertain", "invalid")


def is_html(path: Path) -> bool:
    """Whether ``--report`` asks for this page rather than CSV or JSON Lines."""
    return path.suffix.lower() in (".html", ".htm")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _web_url(url: str) -> str | None:
    """``url`` if it is an absolute http(s) URL a player may load, else ``None``."""
    if url != url.strip() or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


def _href(target: Path, base: Path) -> str:
    """A link from the page's folder ``base`` to the local file ``target``: relative,
    each part percent-encoded (so a name like ``javascript:x.mp4`` stays a path)."""
    try:
        relative = os.path.relpath(os.path.abspath(target), os.path.abspath(base))
    except ValueError:  # another drive (Windows): only an absolute link can reach it
        return target.resolve().as_uri()
    return "./" + "/".join(quote(part, safe="") for part in Path(relative).parts)


def _stamp(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _player(kind: str, src: str | None, label: str, missing: str) -> str:
    if src is None:
        caption = f"{kind}: {_e(label)}" if label else kind
        return (
            f'<figure><figcaption>{caption}</figcaption><div class="none {kind.lower()}">'
            f"{_e(missing)}</div></figure>"
        )
    return (
        f'<figure><figcaption>{kind}: <a href="{_e(src)}">{_e(label)}</a></figcaption>'
        f'<video class="{kind.lower()}" controls preload="metadata" src="{_e(src)}"></video>'
        "</figure>"
    )


class HtmlReport(Report):
    """The page of a batch, built as rows arrive and written by ``close``.

    ``sources`` maps an input's URL to a local copy of it, to be linked instead (the
    demo's clips are served only while it runs).
    """

    def __init__(self, path: Path, *, sources: Mapping[str, Path] | None = None) -> None:
        self._sources = dict(sources or {})
        self._base = path.parent
        self._rows_path = path.with_name(f".{path.name}.rows")
        self._started = time.monotonic()
        self._opened = datetime.now(timezone.utc)
        self._tally: Counter[str] = Counter()
        self._credits = 0.0
        super().__init__(path)

    def _open(self, path: Path) -> TextIO:
        # Opened now, in the page's folder: a folder that cannot be written is refused
        # before the batch starts.
        return open(self._rows_path, "w+", encoding="utf-8")

    def write(self, row: ReportRow, timing: Timing | None = None) -> None:
        self._tally[row.status] += 1
        self._credits += row.credits or 0.0
        super().write(row, timing)

    def _text(self, row: ReportRow, timing: Timing | None) -> str:
        status = row.status if row.status in _STATUSES else "failed"
        local = self._sources.get(row.video_url)
        source = _href(local, self._base) if local is not None else _web_url(row.video_url)
        source_label = local.name if local is not None else row.video_url
        result = None
        result_label = ""
        if row.output is not None and row.status == "completed":
            result, result_label = _href(Path(row.output), self._base), Path(row.output).name
        facts = [
            ("task id", row.task_id or "-"),
            ("credits", f"{row.credits:.2f}" if row.credits is not None else "-"),
            ("created", _stamp(timing.created if timing else None)),
            ("ended", _stamp(timing.ended if timing else None)),
        ]
        if timing is not None and timing.created is not None:
            took = (timing.ended - timing.created).total_seconds()
            facts.append(("took", f"{took:.1f} s"))
        if row.error_code or row.error_message:
            error = ": ".join(str(p) for p in (row.error_code, row.error_message) if p)
            facts.append(("error", error))
        fact_html = "".join(
            f'<div class="{"error" if name == "error" else "fact"}">'
            f"<dt>{_e(name)}</dt><dd>{_e(value)}</dd></div>"
            for name, value in facts
        )
        missing = "no result" if status != "completed" else "result not saved"
        return (
            f'<article class="input status-{status}" id="input-{row.index}"'
            f' data-status="{status}">\n'
            f'<header><span class="line">manifest line {row.line}</span>'
            f' <span class="status">{_e(row.status)}</span></header>\n'
            f'<p class="prompt">{_e(row.prompt) if row.prompt else "(no prompt)"}</p>\n'
            f'<div class="players">{_player("Source", source, source_label, "not playable here")}'
            f"{_player('Result', result, result_label, missing)}</div>\n"
            f'<dl class="facts">{fact_html}</dl>\n</article>\n'
        )

    def close(self) -> None:
        super().close()  # every row is in the rows file now
        part = self.path.with_name(self.path.name + ".part")
        try:
            with open(part, "w", encoding="utf-8") as page:
                page.write(self._head())
                with open(self._rows_path, encoding="utf-8") as rows:
                    while chunk := rows.read(1 << 16):
                        page.write(chunk)
                page.write("</main>\n</body>\n</html>\n")
            os.replace(part, self.path)
        finally:
            part.unlink(missing_ok=True)
            self._rows_path.unlink(missing_ok=True)

    def _head(self) -> str:
        total = sum(self._tally.values())
        wall = time.monotonic() - self._started
        summary = [
            ("inputs", str(total)),
            *((status, str(self._tally[status])) for status in _STATUSES),
            ("credits reserved", f"{self._credits:.2f}"),
            ("wall time", f"{wall:.1f} s"),
            ("started", _stamp(self._opened)),
        ]
        items = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in summary)
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">\n'
            '<meta name="referrer" content="no-referrer">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            "<title>omni-edit batch report</title>\n"
            f"<style>{_STYLE}</style>\n</head>\n<body>\n"
            "<h1>omni-edit batch report</h1>\n"
            f'<dl class="summary">{items}</dl>\n<main>\n'
        )
