"""FileSource and HttpSource: the same answers as from disk, over Range or without it."""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from omni_edit._exceptions import ValidationError
from omni_edit._media.mp4 import MediaFacts, read_media_info
from omni_edit._media.sources import FileSource, HttpSource

pytestmark = pytest.mark.anyio

MEDIA = Path(__file__).parent / "data" / "media"
NAMES = [
    "faststart.mp4",
    "moov_at_end.mp4",
    "v1_largesize.mp4",
    "clip_9_9s.mp4",
    "clip_10_1s.mp4",
    "fragmented.mp4",
    "fragmented_moov_samples.mp4",
    "fragmented_sidx.mp4",
    "fragmented_global_sidx.mp4",
    "fragmented_mehd.mp4",
]
LIMIT = 4 * 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@functools.cache
def big_faststart(mdat_bytes: int) -> bytes:
    """faststart.mp4 with its final mdat padded out: moov first, then a lot of media."""
    data = (MEDIA / "faststart.mp4").read_bytes()
    at = data.rindex(b"mdat") - 4
    size = struct.unpack_from(">I", data, at)[0]
    return data[:at] + struct.pack(">I", size + mdat_bytes) + data[at + 4 :] + bytes(mdat_bytes)


@functools.cache
def big_moov_at_end(mdat_bytes: int) -> bytes:
    """moov_at_end.mp4 with its mdat padded out, pushing the moov far from the start."""
    data = (MEDIA / "moov_at_end.mp4").read_bytes()
    at = data.index(b"mdat") - 4
    size = struct.unpack_from(">I", data, at)[0]
    end = at + size
    return (
        data[:at]
        + struct.pack(">I", size + mdat_bytes)
        + data[at + 4 : end]
        + bytes(mdat_bytes)
        + data[end:]
    )


class MediaHost:
    """A loopback web server for clips: with Range support, without it, and failing."""

    def __init__(self) -> None:
        self.files = {name: (MEDIA / name).read_bytes() for name in NAMES}
        self.files["big_faststart.mp4"] = big_faststart(20 * 1024 * 1024)
        self.files["big_moov_at_end.mp4"] = big_moov_at_end(20 * 1024 * 1024)
        self.seen: list[dict[str, str]] = []
        self.sent = 0
        self.base = ""
        self.stop = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ranged/{name}", self.ranged)
        app.router.add_get("/whole/{name}", self.whole)
        app.router.add_get("/chunked/{name}", self.chunked)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/redirect/{name}", self.redirect)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/shifted/{name}", self.shifted)
        return app

    def _file(self, request: web.Request) -> bytes:
        self.seen.append(dict(request.headers))
        return self.files[request.match_info["name"]]

    async def ranged(self, request: web.Request) -> web.StreamResponse:
        data = self._file(request)
        wanted = request.http_range
        start = wanted.start or 0
        if start >= len(data):
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        stop = min(len(data), wanted.stop if wanted.stop is not None else len(data))
        self.sent += stop - start
        return web.Response(
            status=206,
            body=data[start:stop],
            headers={"Content-Range": f"bytes {start}-{stop - 1}/{len(data)}"},
        )

    async def _stream(
        self, request: web.Request, data: bytes, *, length: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse()
        if length:
            response.content_length = len(data)
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for at in range(0, len(data), 65536):
                await response.write(data[at : at + 65536])
                self.sent += len(data[at : at + 65536])
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should once it has enough
        return response

    async def whole(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, self._file(request), length=True)

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, self._file(request), length=False)

    async def status(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        return web.Response(status=int(request.match_info["code"]), text="<html>nope</html>")

    async def redirect(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        raise web.HTTPFound(f"/ranged/{request.match_info['name']}")

    async def slow(self, request: web.Request) -> web.Response:
        await self.stop.wait()  # until the test is over: longer than any client timeout
        return web.Response(status=206)

    async def shifted(self, request: web.Request) -> web.Response:
        data = self._file(request)
        return web.Response(
            status=206, body=data[:16], headers={"Content-Range": f"bytes 100-115/{len(data)}"}
        )


@pytest.fixture
async def host() -> AsyncIterator[MediaHost]:
    media_host = MediaHost()
    runner = web.AppRunner(media_host.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    address = runner.addresses[0]
    media_host.base = f"http://127.0.0.1:{address[1]}"
    try:
        yield media_host
    finally:
        media_host.stop.set()
        await runner.cleanup()
    assert all("Authorization" not in headers for headers in media_host.seen)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        yield client


async def probe(
    session: aiohttp.ClientSession, url: str, *, max_bytes: int = LIMIT
) -> tuple[MediaFacts, HttpSource]:
    async with HttpSource(session, url, timeout=5, max_bytes=max_bytes) as source:
        return await read_media_info(source, max_bytes=max_bytes), source


@pytest.mark.parametrize("name", NAMES)
async def test_range_requests_give_the_same_facts_as_the_file(
    host: MediaHost, session: aiohttp.ClientSession, name: str
) -> None:
    from_file = await read_media_info(FileSource(MEDIA / name))
    facts, source = await probe(session, f"{host.base}/ranged/{name}")
    assert facts == from_file
    assert source.bytes_received == facts.bytes_read == host.sent
    assert all(h.get("Accept-Encoding") == "identity" for h in host.seen)
    assert all("Range" in h for h in host.seen)


@pytest.mark.parametrize("name", NAMES)
async def test_server_ignoring_range_gives_the_same_facts(
    host: MediaHost, session: aiohttp.ClientSession, name: str
) -> None:
    from_file = await read_media_info(FileSource(MEDIA / name))
    facts, _ = await probe(session, f"{host.base}/whole/{name}")
    assert facts.duration == from_file.duration
    assert (facts.width, facts.height, facts.has_audio) == (64, 36, from_file.has_audio)
    assert facts.bytes_read == len(host.files[name])  # small files come whole: counted whole
    assert len(host.seen) == 1


async def test_chunked_answer_without_length_still_works(
    host: MediaHost, session: aiohttp.ClientSession
) -> None:
    facts, _ = await probe(session, f"{host.base}/chunked/moov_at_end.mp4")
    assert facts.duration == pytest.approx(3.0)


async def test_big_file_is_not_downloaded_when_range_is_ignored(
    host: MediaHost, session: aiohttp.ClientSession
) -> None:
    facts, source = await probe(session, f"{host.base}/whole/big_faststart.mp4")
    assert facts.duration == pytest.approx(3.0)
    assert facts.bytes_read == source.bytes_received <= 128 * 1024
    assert len(host.files["big_faststart.mp4"]) > 20_000_000


async def test_moov_beyond_the_limit_is_refused_when_range_is_ignored(
    host: MediaHost, session: aiohttp.ClientSession
) -> None:
    url = f"{host.base}/whole/big_moov_at_end.mp4"
    async with HttpSource(session, url, timeout=5, max_bytes=LIMIT) as source:
        with pytest.raises(ValidationError, match="ignores Range requests"):
            await read_media_info(source, max_bytes=LIMIT)
        assert source.bytes_received <= LIMIT


async def test_big_moov_at_end_costs_a_few_kilobytes_with_range(
    host: MediaHost, session: aiohttp.ClientSession
) -> None:
    facts, _ = await probe(session, f"{host.base}/ranged/big_moov_at_end.mp4")
    assert facts.duration == pytest.approx(3.0)
    assert facts.bytes_read < 4096
    assert len(host.seen) <= 6


@pytest.mark.parametrize("code", [404, 403, 500, 503])
async def test_http_error_from_the_media_host_is_a_validation_error(
    host: MediaHost, session: aiohttp.ClientSession, code: int
) -> None:
    with pytest.raises(ValidationError, match=f"HTTP {code} from host 127.0.0.1") as caught:
        await probe(session, f"{host.base}/status/{code}")
    assert caught.value.field == "video_url"


async def test_redirect_is_followed_without_credentials(
    host: MediaHost, session: aiohttp.ClientSession
) -> None:
    facts, _ = await probe(session, f"{host.base}/redirect/faststart.mp4")
    assert facts.duration == pytest.approx(3.0)
    assert len(host.seen) >= 2


async def test_range_answer_for_other_bytes_is_refused(
    host: MediaHost, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ValidationError, match="sent bytes from 100 when asked for 0"):
        await probe(session, f"{host.base}/shifted/faststart.mp4")


async def test_read_past_the_end_is_empty(host: MediaHost, session: aiohttp.ClientSession) -> None:
    url = f"{host.base}/ranged/faststart.mp4"
    async with HttpSource(session, url, timeout=5, max_bytes=LIMIT) as source:
        assert await source.read(10**6, 16) == b""
        assert await source.size() == len(host.files["faststart.mp4"])


async def test_slow_host_times_out_as_a_validation_error(
    host: MediaHost, session: aiohttp.ClientSession
) -> None:
    async with HttpSource(session, f"{host.base}/slow", timeout=0.2, max_bytes=LIMIT) as source:
        with pytest.raises(ValidationError, match=r"no answer from host 127.0.0.1 within 0.2 s"):
            await read_media_info(source)


async def test_refused_connection_is_a_validation_error(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(
        ValidationError, match=r"could not read the video: host 127\.0\.0\.1 failed"
    ):
        await probe(session, f"http://127.0.0.1:{port}/clip.mp4")


async def test_url_with_credentials_is_refused(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValidationError, match="user name or password"):
        HttpSource(session, "http://user:pw@127.0.0.1/clip.mp4", timeout=5, max_bytes=LIMIT)


async def test_session_with_default_credentials_is_refused() -> None:
    headers = {"Authorization": "Bearer secret"}
    async with aiohttp.ClientSession(headers=headers) as with_key:
        with pytest.raises(ValueError, match="without default credentials"):
            HttpSource(with_key, "http://127.0.0.1/clip.mp4", timeout=5, max_bytes=LIMIT)


async def test_malformed_url_is_a_validation_error(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValidationError, match="could not read the video"):
        await probe(session, "http://[::1/clip.mp4")
