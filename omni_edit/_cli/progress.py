"""How a batch shows its progress: a bar on a terminal, plain lines elsewhere.

A terminal gets a ``tqdm`` bar on stderr (finished/total, rate, ETA, and done, failed,
running, credits reserved), redrawn in place. Anywhere else (a CI log, a pipe, a file) a
carriage return would garble the output, so a plain line is printed when the counts
changed, at most every two seconds, and once at the end. ``--json`` shows no progress:
its outcome objects on stdout are the progress.

Outcomes are counted as the report names them (completed, failed, uncertain, invalid:
see ``report``), so the progress and the summary agree; the batch's own counts give
what is running and the credits.

tqdm is imported here only, and this module only by the batch command: ``import
omni_edit`` and the other commands never pay for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import TextIO

from .._models import BatchProgress
from .streams import put

__all__ = ["Progress", "make_progress", "status_line", "ticking"]

PLAIN_INTERVAL = 2.0  # seconds between two plain progress lines, at most one per gap
TICK_INTERVAL = 0.5  # how often a display may move while no count changes


def status_line(total: int, ended: Counter[str], counts: BatchProgress, elapsed: float) -> str:
    """``12/24 done, 1 failed, 2 invalid, 3 running, 2.1/s, ETA 5s, credits 1234.5``:
    ``ended`` counts outcomes by report status; uncertain and invalid show when nonzero."""
    finished = ended.total()
    # Not over less than a second: the rows refused at once would make a silly rate.
    rate = finished / max(elapsed, 1.0)
    eta = _duration((total - finished) / rate) if rate > 0 else "?"
    others = "".join(f" {ended[key]} {key}," for key in ("uncertain", "invalid") if ended[key])
    return (
        f"{ended['completed']}/{total} done, {ended['failed']} failed,{others}"
        f"{_uploads(counts, ' ', ',')}"
        f" {counts.running} running, {rate:.1f}/s, ETA {eta},"
        f" credits {counts.credits_reserved:.1f}"
    )


def _uploads(counts: BatchProgress, before: str, after: str) -> str:
    """Local clips uploading and uploaded (docs/storage.md), when there are any."""
    if not counts.uploading and not counts.uploaded:
        return ""
    return f"{before}{counts.uploading} uploading, {counts.uploaded} uploaded{after}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts only, shown nowhere: the ``--json`` mode, and the base of the others."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.counts = BatchProgress()
        self.ended: Counter[str] = Counter()
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, counts: BatchProgress) -> None:
        """The batch's counts changed (``BatchOptions.on_progress``)."""
        self.counts = counts

    def ended_one(self, status: str) -> None:
        """An input's outcome arrived, with its report status."""
        self.ended[status] += 1

    def message(self, text: str) -> None:
        """A line that must stay readable (a failure): printed above any bar."""

    def tick(self) -> None:
        """Called every half second or so, so a display can move while nothing ends."""

    def close(self) -> None:
        """The batch is over (or interrupted): leave the display in its final state."""


class PlainProgress(Progress):
    def __init__(self, total: int, stream: TextIO) -> None:
        super().__init__(total, stream)
        self._shown: tuple[BatchProgress, Counter[str]] | None = None
        self._shown_at = float("-inf")

    def update(self, counts: BatchProgress) -> None:
        super().update(counts)
        self.tick()

    def ended_one(self, status: str) -> None:
        super().ended_one(status)
        self.tick()

    @property
    def _state(self) -> tuple[BatchProgress, Counter[str]]:
        return self.counts, self.ended

    def message(self, text: str) -> None:
        put(self.stream, text)

    def tick(self) -> None:
        if self._state != self._shown and time.monotonic() - self._shown_at >= PLAIN_INTERVAL:
            self._show()

    def close(self) -> None:
        if self._state != self._shown:
            self._show()

    def _show(self) -> None:
        self._shown, self._shown_at = (self.counts, self.ended.copy()), time.monotonic()
        put(self.stream, status_line(self.total, self.ended, self.counts, self.elapsed))


class BarProgress(Progress):
    def __init__(self, total: int, stream: TextIO) -> None:
        from tqdm import tqdm

        super().__init__(total, stream)
        self._bar = tqdm(total=total, file=stream, unit="clip", dynamic_ncols=True, mininterval=0.2)

    def update(self, counts: BatchProgress) -> None:
        super().update(counts)
        self._redraw()

    def ended_one(self, status: str) -> None:
        super().ended_one(status)
        self._redraw()

    def _redraw(self) -> None:
        ended = self.ended
        others = "".join(f", {key} {ended[key]}" for key in ("uncertain", "invalid") if ended[key])
        self._bar.set_postfix_str(
            f"done {ended['completed']}, failed {ended['failed']}{others},"
            f"{_uploads(self.counts, ' ', ',')}"
            f" running {self.counts.running}, credits {self.counts.credits_reserved:.1f}",
            refresh=False,
        )
        # update() redraws, but no more often than mininterval.
        self._bar.update(ended.total() - self._bar.n)

    def message(self, text: str) -> None:
        self._bar.write(text, file=self.stream)

    def tick(self) -> None:
        self._bar.refresh()

    def close(self) -> None:
        self._bar.refresh()
        self._bar.close()


def make_progress(total: int, stream: TextIO, *, json: bool) -> Progress:
    """The display that suits ``stream``: nothing for ``--json``, a bar on a terminal,
    plain lines anywhere else."""
    if json:
        return Progress(total, stream)
    if _is_terminal(stream):
        return BarProgress(total, stream)
    return PlainProgress(total, stream)


def _is_terminal(stream: TextIO) -> bool:
    # A pseudo-terminal of no width (some CI runners, `script` without a size) would get
    # an empty bar: plain lines suit it better.
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError):
        return False


@contextlib.asynccontextmanager
async def ticking(progress: Progress) -> AsyncIterator[None]:
    """Tick ``progress`` while the body runs, so the bar's clock and ETA move and a plain
    line catches up with counts that changed just after the previous one.

    The ticker is a task owned here and cancelled on the way out, rather than a task
    group, so that an error of the body reaches the caller as itself and not wrapped in
    an exception group.
    """

    async def tick() -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            progress.tick()

    ticker = asyncio.get_running_loop().create_task(tick(), name="omni-edit progress")
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
