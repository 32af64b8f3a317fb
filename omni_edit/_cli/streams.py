"""Writing to stdout and stderr when the reader may have gone.

``omni-edit --json batch m.csv | head -5`` closes the pipe after five lines while the
batch goes on: a write then raises ``BrokenPipeError``. Every line the command line
prints goes through ``put``, which ends that stream's output quietly instead, so the
batch still completes and its report still gets every row. The stream's descriptor is
pointed at the null device, so that later writes, and the interpreter's own flush at
exit, do not fail again (the remedy the Python documentation gives in its note on
SIGPIPE, in the ``signal`` module).
"""

from __future__ import annotations

import contextlib
import os
from typing import TextIO

__all__ = ["put"]


def put(stream: TextIO, text: str = "", *, end: str = "\n") -> None:
    """Print ``text`` on ``stream`` and flush it; nothing happens once its reader is gone."""
    try:
        print(text, end=end, file=stream, flush=True)
    except BrokenPipeError:
        _silence(stream)


def _silence(stream: TextIO) -> None:
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
