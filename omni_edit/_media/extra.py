"""The optional ``media`` extra (PyAV) and the worker threads its work runs in.

PyAV wraps FFmpeg's libraries and its wheels carry them, so decoding and encoding need
no ``ffmpeg`` binary on the machine (docs/media.md). It is an extra, not a dependency:
the SDK's core reads MP4 header boxes itself and never decodes a frame.

Why threads and not processes: PyAV releases the GIL while FFmpeg decodes, filters and
encodes, so a few threads run media work in parallel without pickling frames or bytes
across processes, and they start at once. The pool is bounded, so however many edits
ask for media work at once, at most ``MEDIA_WORKERS`` of them use a core; the rest wait
their turn without blocking the event loop. A caller cancelled while its job runs stops
waiting at once; the job itself, bounded in size by its caller, runs to its end in its
thread and its result is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = [
    "MEDIA_EXTRA_HINT",
    "MEDIA_WORKERS",
    "MediaUnavailable",
    "media_available",
    "require_media",
    "run_media_work",
]

T = TypeVar("T")

MEDIA_EXTRA_HINT = "pip install 'omni-edit[media]'"
# Two to four: media work is CPU-bound, and the machine has other work to do.
MEDIA_WORKERS = max(2, min(4, os.cpu_count() or 1))


class MediaUnavailable(RuntimeError):
    """The ``media`` extra (PyAV) is not installed, or cannot be imported."""


_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def media_available() -> bool:
    """Whether PyAV can be imported (it is imported to find out, once)."""
    try:
        require_media()
    except MediaUnavailable:
        return False
    return True


@functools.cache
def _import_error() -> str | None:
    try:
        import av  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name == "av":
            return "PyAV (the 'av' package) is not installed"
        return f"PyAV cannot be imported ({exc})"
    except ImportError as exc:  # a broken install: say what broke
        return f"PyAV cannot be imported ({exc})"
    return None


def require_media(feature: str = "this feature") -> None:
    """Raise ``MediaUnavailable`` naming the extra to install when PyAV is missing."""
    problem = _import_error()
    if problem is not None:
        raise MediaUnavailable(
            f"{feature} needs the media extra: {problem}. Install it with: {MEDIA_EXTRA_HINT}"
        )


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(MEDIA_WORKERS, thread_name_prefix="omni_edit-media")
        return _pool


async def run_media_work(work: Callable[..., T], /, *args: object) -> T:
    """Run ``work(*args)`` in a media worker thread and return what it returns."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(work, *args))
