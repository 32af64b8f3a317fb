"""The API's input rule, applied where the emulator can see the input: an mp4 of at most
10 seconds (docs/api.md#create-a-task).

The real API fetches every input; the emulator can reach only loopback hosts, so it
checks those (test servers, the demo's own clip server) and takes other URLs on trust.
It reads just the header boxes, as the SDK's preflight does.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

from .._constants import MAX_PROBE_BYTES, MAX_VIDEO_SECONDS
from .._exceptions import ValidationError
from .._media.mp4 import read_media_info
from .._media.sources import HttpSource
from .._wire.validation import is_loopback_host
from ._validation import Rejection

__all__ = ["InputChecker"]

_PROBE_TIMEOUT = 5.0


class InputChecker:
    """Rejects a reachable input that is not an mp4 of at most 10 s."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def check(self, video_url: str) -> None:
        """Raise ``Rejection`` (400, param ``video_urls``) for a bad reachable input."""
        host = urlsplit(video_url).hostname
        if self._session is None or host is None or not is_loopback_host(host):
            return
        try:
            async with HttpSource(
                self._session, video_url, timeout=_PROBE_TIMEOUT, max_bytes=MAX_PROBE_BYTES
            ) as source:
                facts = await read_media_info(source, max_bytes=MAX_PROBE_BYTES)
        except ValidationError as exc:
            raise Rejection(
                400, "invalid_parameter", f"video_urls[0]: {exc}", param="video_urls"
            ) from None
        if facts.duration > MAX_VIDEO_SECONDS:
            raise Rejection(
                400,
                "invalid_parameter",
                f"video_urls[0] is {facts.duration:.2f} s long; edit mode accepts at most"
                f" {MAX_VIDEO_SECONDS:g} s",
                param="video_urls",
            )
