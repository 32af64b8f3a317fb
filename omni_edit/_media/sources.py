"""Where ``read_media_info`` gets a clip's bytes: a local file, or an HTTP(S) URL.

``HttpSource`` asks for byte ranges (RFC 9110, ``Range: bytes=a-b``), so checking a
clip costs a few kilobytes whatever its size. A server that ignores Range answers 200
with the whole file; then at most ``max_bytes`` of it are read, from the start, and the
response is closed: a big file is never downloaded to learn its length.

The media host is not the API: no credential is attached to its requests. The session
given must carry none by default either (no ``Authorization``, ``Proxy-Authorization``
or ``Cookie`` default header, no default auth, no ``trust_env`` and so no ``.netrc``),
and a URL with a user name or password in it is refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
from types import TracebackType
from urllib.parse import urlsplit

import aiohttp
import anyio
import anyio.to_thread

from .._exceptions import ValidationError
from .._wire.ranges import parse_content_range
from .boxes import FIELD

__all__ = ["FileSource", "HttpSource"]

logger = logging.getLogger("omni_edit")

_CHUNK_BYTES = 64 * 1024
_CREDENTIAL_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie")


class FileSource:
    """A local file, read in a worker thread so the event loop never blocks."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = anyio.Path(path)
        self._received = 0

    @property
    def bytes_received(self) -> int:
        return self._received

    def _failed(self, exc: OSError) -> ValidationError:
        reason = exc.strerror or type(exc).__name__
        return ValidationError(f"could not read the video file {self._path}: {reason}", field=FIELD)

    async def size(self) -> int | None:
        """The file's size.

        Raises:
            ValidationError: the file is missing or unreadable.
        """
        try:
            return (await self._path.stat()).st_size
        except OSError as exc:
            raise self._failed(exc) from exc

    async def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``.

        Raises:
            ValidationError: the file is missing or unreadable.
        """
        try:
            data = await anyio.to_thread.run_sync(_read_at, str(self._path), offset, length)
        except OSError as exc:
            raise self._failed(exc) from exc
        self._received += len(data)
        return data


def _read_at(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read(length)


def _refuse_credentials(session: aiohttp.ClientSession, url: str) -> None:
    """Make sure no credential can ride along to the media host."""
    carried = [name for name in _CREDENTIAL_HEADERS if name in session.headers]
    if carried or session.auth is not None or session.trust_env:
        raise ValueError(
            "HttpSource needs a session without default credentials "
            f"(headers {carried}, auth set: {session.auth is not None}, "
            f"trust_env: {session.trust_env})"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        return  # aiohttp refuses it on the first read, as a ValidationError
    if parts.username is not None or parts.password is not None:
        raise ValidationError("the video URL must not contain a user name or password", field=FIELD)


def _host_of(url: str) -> str:
    """The host to name in messages: never the whole URL, whose query may be a credential."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


class HttpSource:
    """A clip behind an HTTP(S) URL, read with Range requests.

    ``timeout`` bounds each request, body included. ``max_bytes`` bounds what is read in
    all, and what is buffered from a server that ignores Range. Use it as an async
    context manager, or call ``aclose``, to release a response kept open for a server
    that ignores Range.
    """

    def __init__(
        self, session: aiohttp.ClientSession, url: str, *, timeout: float, max_bytes: int
    ) -> None:
        _refuse_credentials(session, url)
        self._session = session
        self._url = url
        self._host = _host_of(url)
        self._timeout_seconds = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_bytes = max_bytes
        self._size: int | None = None
        self._received = 0
        # Set once the server has answered 200 to a Range request: the body from byte 0,
        # read lazily into ``_buffer`` while ``_whole`` is open.
        self._whole: aiohttp.ClientResponse | None = None
        self._buffer: bytearray | None = None

    @property
    def bytes_received(self) -> int:
        """Body bytes received from the host so far."""
        return self._received

    async def __aenter__(self) -> HttpSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close a response still open; reads from the buffer keep working."""
        if self._whole is not None:
            self._whole.close()
            self._whole = None

    async def size(self) -> int | None:
        """The total size, known once a response has said it (after the first read)."""
        return self._size

    async def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; fewer at the end of the file.

        Raises:
            ValidationError: the host answered an HTTP error or could not be reached, or
                ignores Range and the bytes wanted lie beyond ``max_bytes``.
        """
        if length <= 0 or (self._size is not None and offset >= self._size):
            return b""
        try:
            if self._buffer is None:
                return await self._read_range(offset, length)
            return await self._read_buffered(self._buffer, offset, length)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            await self.aclose()
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: BaseException) -> ValidationError:
        if isinstance(exc, asyncio.TimeoutError):
            detail = f"no answer from host {self._host} within {self._timeout_seconds:g} s"
        else:
            detail = f"host {self._host} failed: {type(exc).__name__}"
        return ValidationError(f"could not read the video: {detail}", field=FIELD)

    def _over_limit(self) -> ValidationError:
        return ValidationError(
            f"could not check the video: host {self._host} ignores Range requests and the "
            f"MP4 header is not within its first {self._max_bytes} bytes",
            field=FIELD,
        )

    async def _read_range(self, offset: int, length: int) -> bytes:
        if self._received + length > self._max_bytes:
            raise ValidationError(
                f"could not check the video within the {self._max_bytes}-byte read limit",
                field=FIELD,
            )
        headers = {
            "Range": f"bytes={offset}-{offset + length - 1}",
            # Offsets must count the file's own bytes, not a compressed transfer.
            "Accept-Encoding": "identity",
        }
        response = await self._session.get(
            self._url,
            headers=headers,
            timeout=self._timeout,
            allow_redirects=True,
            auto_decompress=False,
        )
        if response.status != 200:
            try:
                return await self._ranged_body(response, offset, length)
            finally:
                response.release()  # closes the connection if the body was not all read
        logger.debug("host %s ignores Range: reading at most %d bytes", self._host, self._max_bytes)
        self._whole, self._buffer = response, bytearray()
        try:
            self._check_identity(response)
        except ValidationError:
            await self.aclose()
            raise
        self._size = response.content_length
        return await self._read_buffered(self._buffer, offset, length)

    async def _ranged_body(
        self, response: aiohttp.ClientResponse, offset: int, length: int
    ) -> bytes:
        content_range = parse_content_range(response.headers.get("Content-Range"))
        if content_range is not None and content_range.length is not None:
            self._size = content_range.length
        if response.status == 416:  # Range Not Satisfiable: the file ends before offset
            return b""
        self._check_status(response.status)
        if response.status != 206 or content_range is None or content_range.first is None:
            raise ValidationError(
                f"could not read the video: host {self._host} answered HTTP "
                f"{response.status} without a usable Content-Range",
                field=FIELD,
            )
        if content_range.first != offset:
            raise ValidationError(
                f"could not read the video: host {self._host} sent bytes from "
                f"{content_range.first} when asked for {offset}",
                field=FIELD,
            )
        self._check_identity(response)
        data = bytearray()
        while len(data) < length:
            chunk = await response.content.read(length - len(data))
            if not chunk:
                break
            data += chunk
            self._received += len(chunk)
        return bytes(data)

    def _check_identity(self, response: aiohttp.ClientResponse) -> None:
        if response.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise ValidationError(
                f"could not read the video: host {self._host} sent it compressed", field=FIELD
            )

    def _check_status(self, status: int) -> None:
        if status >= 400:
            raise ValidationError(
                f"could not read the video: HTTP {status} from host {self._host}", field=FIELD
            )

    async def _read_buffered(self, buffer: bytearray, offset: int, length: int) -> bytes:
        """Serve from the start of the body, reading more of it only as far as needed."""
        end = offset + length
        while len(buffer) < end and self._whole is not None:
            room = self._max_bytes - len(buffer)
            if room <= 0:
                await self.aclose()
                break
            chunk = await self._whole.content.read(min(_CHUNK_BYTES, room))
            if not chunk:
                await self.aclose()
                self._size = len(buffer)  # the body has ended: now the size is certain
                break
            buffer += chunk
            self._received += len(chunk)
        if end > len(buffer) and (self._size is None or self._size > len(buffer)):
            raise self._over_limit()
        return bytes(buffer[offset:end])
