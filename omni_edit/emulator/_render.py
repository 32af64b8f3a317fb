"""Real result files: the input clip re-rendered with the prompt's look and a
generated sound track (the ``media`` extra; docs/media.md#the-emulators-results).

A result is rendered when it is first asked for, in a media worker thread, and kept:
the same input and look are rendered once however many tasks or Range requests ask.
An input on a loopback host (a test's server, the demo's clips) is fetched as the API
would, bounded in size and time; any other URL, or one that cannot be fetched or
decoded, gets a generated clip of the task's ``video_duration`` instead, so tests and
benchmarks that name made-up hosts stay fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterator
from urllib.parse import urlsplit

import aiohttp

from .._media.extra import require_media, run_media_work
from .._media.render import make_clip, restyle_clip
from .._wire.validation import is_loopback_host
from ._looks import Look, look_for
from ._state import ASSUMED_CLIP_SECONDS, EmulatedTask

__all__ = ["RenderedFile", "ResultRenderer"]

logger = logging.getLogger("omni_edit.emulator")

# An input larger or slower than this is not fetched: a generated clip stands in.
MAX_INPUT_BYTES = 64 * 1024 * 1024
_FETCH_TIMEOUT = 10.0
# Rendered files kept; the demo has a few dozen distinct ones.
_CACHE_ENTRIES = 64
_CHUNK = 64 * 1024
# The generated stand-in: a 360p frame, cheap to render, plain to see.
_GENERATED_SIZE = (640, 360)

_Key = tuple[str, str, Look]


class RenderedFile:
    """A rendered result held in memory, readable by range like ``ResultFile``."""

    def __init__(self, data: bytes) -> None:
        self.size = len(data)
        self.etag = f'"{hashlib.sha256(data).hexdigest()[:24]}"'
        self._data = data

    def chunks(self, start: int, stop: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``stop`` (exclusive), in pieces of at most 64 KiB."""
        view = memoryview(self._data)
        for pos in range(start, stop, _CHUNK):
            yield bytes(view[pos : min(stop, pos + _CHUNK)])


class ResultRenderer:
    """Renders and keeps the result files of completed tasks."""

    def __init__(self) -> None:
        require_media("Emulator(real_results=True)")
        self._session: aiohttp.ClientSession | None = None
        self._cache: OrderedDict[_Key, asyncio.Task[RenderedFile]] = OrderedDict()
        # Every render not yet ended, evicted from the cache or not: close() ends them.
        self._running: set[asyncio.Task[RenderedFile]] = set()

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        renders = list(self._running)
        self._cache.clear()
        for render in renders:
            render.cancel()
        for render in renders:
            with contextlib.suppress(BaseException):
                await render
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def file_for(self, task: EmulatedTask) -> RenderedFile:
        """The result of ``task``, rendered now or earlier."""
        look = look_for(task.prompt)
        host = urlsplit(task.video_url).hostname
        fetchable = host is not None and is_loopback_host(host)
        key: _Key = ("url", task.video_url, look) if fetchable else ("made", "", look)
        render = self._cache.get(key)
        if render is None:
            render = asyncio.get_running_loop().create_task(
                self._render(task.video_url if fetchable else None, look),
                name=f"omni_edit.emulator render {task.result_name}",
            )
            self._cache[key] = render
            self._running.add(render)
            render.add_done_callback(self._running.discard)
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        try:
            # Shielded: a client that hangs up does not waste the render for the next.
            return await asyncio.shield(render)
        except Exception:
            self._cache.pop(key, None)
            raise

    async def _render(self, video_url: str | None, look: Look) -> RenderedFile:
        data = await self._fetch(video_url) if video_url is not None else None
        if data is not None:
            try:
                return RenderedFile(await run_media_work(_restyle, data, look))
            except ValueError as exc:
                logger.warning("emulator: cannot re-render %s (%s); generating one", video_url, exc)
        made = await run_media_work(_generate, float(ASSUMED_CLIP_SECONDS), look)
        return RenderedFile(made)

    async def _fetch(self, url: str) -> bytes | None:
        """The input's bytes, or ``None`` when they cannot be had within the bounds."""
        assert self._session is not None
        try:
            async with self._session.get(
                url,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=_FETCH_TIMEOUT),
            ) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                if (response.content_length or 0) > MAX_INPUT_BYTES:
                    raise ValueError("larger than the emulator fetches")
                body = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK):
                    body += chunk
                    if len(body) > MAX_INPUT_BYTES:
                        raise ValueError("larger than the emulator fetches")
                return bytes(body)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            logger.warning("emulator: cannot fetch the input %s (%s)", url, exc)
            return None


def _restyle(data: bytes, look: Look) -> bytes:
    return restyle_clip(data, look=look.filters, tone_hz=look.tone_hz)


def _generate(seconds: float, look: Look) -> bytes:
    width, height = _GENERATED_SIZE
    return make_clip(seconds, width=width, height=height, tone_hz=look.tone_hz, look=look.filters)
