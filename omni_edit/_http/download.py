"""Saving a result file: streamed, resumed, verified, published atomically.

Result links live 24 hours, so a result is worth saving the moment it exists, and a
saved file must be whole. The rules (docs/reliability.md#downloads, RFC 9110):

- stream to a temporary file beside the destination; on a dropped connection resume
  with ``Range: bytes=N-`` (and ``If-Range`` when an ETag is known), accepting only a
  206 whose ``Content-Range`` starts at N; a 200 means start again from zero;
- check the final size against the total length, fsync, ``os.replace`` into place,
  fsync the directory; on any failure, or cancellation, remove the temporary file;
- the temporary file's name is fixed per destination (``.<name>.part``), so one left by
  a killed process is overwritten by the next download to that destination and gone
  once it succeeds;
- a result host is not trusted to end: a whole download has a deadline and a size cap,
  and what it sends must be a video (no ``text/html``, an ISO base media box first);
  only ``http(s)`` links are fetched;
- the result host is another origin: requests go through a session of their own with
  no default headers and no cookie jar, so neither the API key nor a cookie can reach it,
  redirects included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import aiohttp
import anyio
import attrs

from .._constants import RESULT_URL_LIFETIME_HOURS
from .._exceptions import DownloadError, ResultExpiredError
from .._media.sniff import describe_non_mp4
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
# A result is a clip of at most 10 s. 200 MiB is 168 Mbit/s for 10 s, above any
# delivery bitrate (4K HDR streams run at 15-100 Mbit/s), so a larger body is not a
# clip but a host that does not stop.
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
# A whole download, retries and resumes included: 200 MiB at 350 KB/s, and a 20 MB
# clip even at 35 KB/s. A host dripping a few bytes a second is cut off.
DEFAULT_DEADLINE_SECONDS = 600.0
# ISO base media files are a sequence of boxes (ISO/IEC 14496-12); these are the types
# a file may start with. Anything else in bytes 4-8 is not an MP4.
_TOP_BOXES = frozenset(
    {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid",
     b"sidx", b"moof", b"pdin", b"meta", b"mfra", b"jP  "}
)  # fmt: skip
# Media types that are certainly not a clip: an error or login page, an API answer.
_NOT_VIDEO_TYPES = ("text/", "application/json", "application/xml", "application/xhtml")


class _Restart(Exception):
    """The server ignored or mangled a range: start the file again from zero."""


class _Transient(Exception):
    """A 5xx or 429 from the result host: worth another try."""


class ResultFetcher:
    """Downloads result files with a session that carries no credentials."""

    def __init__(
        self,
        limits: ClientLimits,
        *,
        timeout: float,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        # Downloads take the client's in-flight slots; the API's 429 pause is not theirs.
        self._slots = limits.slots
        # A stalled transfer fails after ``timeout`` without data, however long the file;
        # a slow one fails at ``deadline``, a long one past ``max_bytes``.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._deadline = deadline
        self._max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None
        # Destinations being written: a second download to one waits for the first,
        # rather than share its temporary file.
        self._writing: dict[Path, _Writer] = {}

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
        one exists, ``DownloadError`` for any other failure after retries, and at once for
        a link that is not http(s), a body that is not a video or is over the size cap,
        and a download still unfinished at the deadline.
        """
        _check_scheme(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        writer = self._writing.get(dest)
        if writer is None:
            writer = self._writing[dest] = _Writer()
        writer.users += 1
        try:
            async with writer.lock:
                return await self._fetch(url, dest, refresh)
        finally:
            writer.users -= 1
            if not writer.users:
                del self._writing[dest]

    async def _fetch(
        self, url: str, dest: Path, refresh: Callable[[], Awaitable[str | None]] | None
    ) -> Path:
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            # Opening a local file is as quick as the writes below (see there).
            with open(tmp, "wb") as out:  # noqa: ASYNC230
                with anyio.CancelScope() as deadline:
                    total = await self._transfer(url, out, refresh, deadline)
                if deadline.cancelled_caught:
                    raise DownloadError(
                        f"could not download {redact_url(url)}: not finished within"
                        f" {self._deadline:g} s ({out.tell()} bytes received)"
                    )
                out.flush()
                await anyio.to_thread.run_sync(os.fsync, out.fileno())
            size = tmp.stat().st_size
            if total is not None and size != total:
                raise DownloadError(f"incomplete download: {size} of {total} bytes")
            _check_head(tmp, url)
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
        deadline: anyio.CancelScope,
    ) -> int | None:
        state = _State()
        refreshed = False
        failures = 0
        started = False
        while True:
            # The file is written strictly in order, so its position is the resume point.
            offset = out.tell()
            headers = {}
            if offset:
                headers["Range"] = f"bytes={offset}-"
                if state.etag:
                    headers["If-Range"] = state.etag
            try:
                async with self._slots:
                    if not started:
                        # Timed from the first slot, not from a wait for one behind a
                        # busy batch.
                        started = True
                        deadline.deadline = anyio.current_time() + self._deadline
                    async with self.bare_session().get(
                        url, headers=headers, timeout=self._timeout
                    ) as r:
                        if r.status in (403, 404, 410):
                            refused = r.status
                        elif r.status == 416 and state.total is not None and offset == state.total:
                            return state.total
                        else:
                            await _stream(r, out, offset, state, url, self._max_bytes)
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
                _check_scheme(new_url)
                url, state = new_url, _State()
                _rewind(out)
            except _Restart:
                state = _State()
                _rewind(out)
            except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
                # A redirect to file:, javascript: or a broken URL: never worth a retry.
                raise DownloadError(
                    f"could not download {redact_url(url)}: the result host redirected"
                    f" to a link that is not http(s): {exc}"
                ) from exc
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


@attrs.define
class _Writer:
    """The downloads to one destination: they take turns with its temporary file."""

    lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    users: int = 0


def _rewind(out: BinaryIO) -> None:
    out.seek(0)
    out.truncate()


def _check_scheme(url: str) -> None:
    """Only http(s) is fetched: ``file:``, ``javascript:``, ``data:`` fail at once."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https"):
        raise DownloadError(
            f"the result link {redact_url(url)[:100]!r} is not an http(s) URL:"
            " refused without fetching it"
        )


def _check_media_type(r: aiohttp.ClientResponse, url: str) -> None:
    media_type = r.content_type.lower()
    if media_type.startswith(_NOT_VIDEO_TYPES) or media_type.endswith(("+xml", "+json")):
        raise DownloadError(
            f"the result at {redact_url(url)} is not a video: the host sent {media_type!r}"
            " (an error or login page?)"
        )


def _check_start(head: bytes, url: str) -> None:
    """``head``, a file's first bytes (at least 8, or all of a shorter file), must open
    an ISO base media box."""
    if len(head) < 8 or head[4:8] not in _TOP_BOXES:
        raise DownloadError(
            f"the result at {redact_url(url)} is not a video: {describe_non_mp4(head)}"
        )


def _check_head(path: Path, url: str) -> None:
    with open(path, "rb") as file:
        _check_start(file.read(8), url)


async def _stream(
    r: aiohttp.ClientResponse,
    out: BinaryIO,
    offset: int,
    state: _State,
    url: str,
    max_bytes: int,
) -> None:
    """Append one response's body to ``out``, after checking it continues the file, is
    a video, and stays under ``max_bytes``."""
    if r.status >= 500 or r.status == 429:
        raise _Transient(f"HTTP {r.status} from the result host")
    if r.status >= 400:
        raise DownloadError(f"the result host refused {redact_url(url)}: HTTP {r.status}")
    _check_media_type(r, url)
    if r.status == 206 and offset:
        state.total = _check_resume(r.headers.get("Content-Range"), offset)
    else:
        if offset:
            logger.debug("result host ignored Range; restarting download")
        _rewind(out)
        state.total = r.content_length
    state.etag = r.headers.get("ETag")
    too_large = DownloadError(
        f"the file at {redact_url(url)} is over {max_bytes} bytes: stopped (raise"
        " Client(max_download_bytes=...) if it is genuine)"
    )
    if state.total is not None and state.total > max_bytes:
        raise too_large
    # The first bytes decide at once whether this is a video at all, rather than after
    # a whole body of something else (a file under 8 bytes is judged once complete).
    sniffing = out.tell() == 0
    head = b""
    # Local page-cache writes take microseconds: cheaper inline than a thread hop per
    # chunk. The fsync, which can block, runs in a thread.
    async for chunk in r.content.iter_chunked(CHUNK_BYTES):
        if sniffing:
            head += chunk
            if len(head) >= 8:
                _check_start(head, url)
                sniffing = False
        out.write(chunk)
        if out.tell() > max_bytes:
            raise too_large


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
