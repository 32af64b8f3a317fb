"""Saving a result file: streamed, resumed, verified, published atomically.

Result links live 24 hours, so a result is worth saving the moment it exists, and a
saved file must be whole. The rules (docs/reliability.md#downloads, RFC 9110):

- stream to a temporary file beside the destination; on a dropped connection resume
  with ``Range: bytes=N-`` (and ``If-Range`` when an ETag is known), accepting only a
  206 whose ``Content-Range`` starts at N; a 200 means start again from zero;
- check the final size against the total length, fsync, ``os.replace`` into place,
  fsync the directory; on any failure, or cancellation, remove the temporary file;
- the result host is another origin: requests go through a session of their own with
  no default headers and no cookie jar, so neither the API key nor a cookie can reach it,
  redirects included.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import aiohttp
import anyio
import attrs

from .._constants import RESULT_URL_LIFETIME_HOURS
from .._exceptions import DownloadError, ResultExpiredError
from .._redact import redact_url
from .._wire.ranges import parse_content_range
from .limits import ClientLimits
from .retry import backoff_delay

__all__ = ["ResultFetcher"]

logger = logging.getLogger("omni_edit")

CHUNK_BYTES = 256 * 1024
MAX_ATTEMPTS = 6
# Result hosts are CDNs: a short backoff between attempts is enough.
BACKOFF_CAP_SECONDS = 5.0


class _Restart(Exception):
    """The server ignored or mangled a range: start the file again from zero."""


class _Transient(Exception):
    """A 5xx or 429 from the result host: worth another try."""


class ResultFetcher:
    """Downloads result files with a session that carries no credentials."""

    def __init__(self, limits: ClientLimits, *, timeout: float) -> None:
        # Downloads take the client's in-flight slots; the API's 429 pause is not theirs.
        self._slots = limits.slots
        # A stalled transfer fails after ``timeout`` without data, however long the file.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    def bare_session(self) -> aiohttp.ClientSession:
        """A session with no default headers and no cookie jar: safe for any host."""
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(
        self,
        url: str,
        dest: Path,
        *,
        refresh: Callable[[], Awaitable[str | None]] | None = None,
    ) -> Path:
        """Save ``url`` at ``dest``; return ``dest``.

        ``refresh`` re-reads the task for a new link when the host refuses this one.
        Raises ``ResultExpiredError`` when the link is refused (403/404/410) and no fresh
        one exists, ``DownloadError`` for any other failure after retries.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
        try:
            # Opening a local file is as quick as the writes below (see there).
            with open(tmp, "wb") as out:  # noqa: ASYNC230
                total = await self._transfer(url, out, refresh)
                out.flush()
                await anyio.to_thread.run_sync(os.fsync, out.fileno())
            size = tmp.stat().st_size
            if total is not None and size != total:
                raise DownloadError(f"incomplete download: {size} of {total} bytes")
            os.replace(tmp, dest)
            await anyio.to_thread.run_sync(_fsync_dir, dest.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return dest

    async def _transfer(
        self,
        url: str,
        out: BinaryIO,
        refresh: Callable[[], Awaitable[str | None]] | None,
    ) -> int | None:
        state = _State()
        refreshed = False
        failures = 0
        while True:
            # The file is written strictly in order, so its position is the resume point.
            offset = out.tell()
            headers = {}
            if offset:
                headers["Range"] = f"bytes={offset}-"
                if state.etag:
                    headers["If-Range"] = state.etag
            try:
                async with (
                    self._slots,
                    self.bare_session().get(url, headers=headers, timeout=self._timeout) as r,
                ):
                    if r.status in (403, 404, 410):
                        refused = r.status
                    elif r.status == 416 and state.total is not None and offset == state.total:
                        return state.total
                    else:
                        await _stream(r, out, offset, state, url)
                        if state.total is None or out.tell() >= state.total:
                            return state.total
                        raise aiohttp.ClientPayloadError(
                            f"body ended at {out.tell()} of {state.total}"
                        )
                # Outside the limiter: re-reading the task takes a token of its own.
                new_url = await refresh() if refresh and not refreshed else None
                refreshed = True
                if not new_url or new_url == url:
                    raise ResultExpiredError(
                        f"the result link was refused (HTTP {refused}): result links"
                        f" expire {RESULT_URL_LIFETIME_HOURS} hours after the task"
                        f" completes; {redact_url(url)} can no longer be downloaded"
                    )
                url, state = new_url, _State()
                _rewind(out)
            except _Restart:
                state = _State()
                _rewind(out)
            except (aiohttp.ClientError, TimeoutError, _Transient) as exc:
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    raise DownloadError(
                        f"could not download {redact_url(url)}: {exc}"
                        + (f" (after {failures} attempts)" if failures > 1 else "")
                    ) from exc
                logger.debug("download interrupted at %d bytes (%s); resuming", out.tell(), exc)
                await anyio.sleep(backoff_delay(failures - 1, cap=BACKOFF_CAP_SECONDS))


@attrs.define
class _State:
    """What the result host said of the file: its total length and validator."""

    total: int | None = None
    etag: str | None = None


def _rewind(out: BinaryIO) -> None:
    out.seek(0)
    out.truncate()


async def _stream(
    r: aiohttp.ClientResponse, out: BinaryIO, offset: int, state: _State, url: str
) -> None:
    """Append one response's body to ``out``, after checking it continues the file."""
    if r.status >= 500 or r.status == 429:
        raise _Transient(f"HTTP {r.status} from the result host")
    if r.status >= 400:
        raise DownloadError(f"the result host refused {redact_url(url)}: HTTP {r.status}")
    if r.status == 206 and offset:
        state.total = _check_resume(r.headers.get("Content-Range"), offset)
    else:
        if offset:
            logger.debug("result host ignored Range; restarting download")
        _rewind(out)
        state.total = r.content_length
    state.etag = r.headers.get("ETag")
    # Local page-cache writes take microseconds: cheaper inline than a thread hop per
    # chunk. The fsync, which can block, runs in a thread.
    async for chunk in r.content.iter_chunked(CHUNK_BYTES):
        out.write(chunk)


def _check_resume(content_range: str | None, offset: int) -> int | None:
    parsed = parse_content_range(content_range)
    if parsed is None or parsed.first != offset:
        raise _Restart
    return parsed.length


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
