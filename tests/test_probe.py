"""probe() and preflight: a clip's duration known before anything is paid for."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

import omni_edit as oe
from omni_edit.emulator import Emulator

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory

pytestmark = pytest.mark.anyio

MEDIA = Path(__file__).parent / "data" / "media"
KEY = "sk-test-probe-SECRET"
FAST = oe.PollPolicy(min_interval=0.02, max_interval=0.2)


@pytest.fixture
async def media_url() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A static server of the fixtures (Range supported) that records request headers."""
    seen: list[dict[str, str]] = []

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_static("/media", MEDIA)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/media", seen
    await runner.cleanup()


@pytest.fixture
async def emu(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator(processing_time=(0.05, 0.1))


@pytest.fixture
async def client(make_client: ClientFactory, emu: Emulator) -> oe.Client:
    return await make_client(emu, KEY, poll=FAST)


@pytest.mark.parametrize(
    ("name", "duration", "has_audio"),
    [
        ("faststart.mp4", 3.0, False),
        ("moov_at_end.mp4", 3.0, True),
        ("clip_9_9s.mp4", 9.9, True),
        ("clip_10_1s.mp4", 10.1, False),
        ("fragmented.mp4", 3.128, True),
        ("v1_largesize.mp4", 3.0, None),
    ],
)
async def test_probe_reads_a_local_file(
    client: oe.Client, name: str, duration: float, has_audio: bool | None
) -> None:
    info = await client.probe(MEDIA / name)
    assert info.duration == pytest.approx(duration, abs=0.05)
    assert info.width == 64
    assert info.height == 36
    if has_audio is not None:
        assert info.has_audio is has_audio


@pytest.mark.parametrize("name", ["faststart.mp4", "moov_at_end.mp4", "clip_9_9s.mp4"])
async def test_probe_over_http_reads_a_part_and_sends_no_credentials(
    client: oe.Client, media_url: tuple[str, list[dict[str, str]]], name: str
) -> None:
    base, seen = media_url
    info = await client.probe(f"{base}/{name}")
    size = (MEDIA / name).stat().st_size
    assert info.bytes_read < size
    assert seen
    assert all("authorization" not in h and "cookie" not in h for h in seen)
    assert all("range" in h for h in seen)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("clip.webm", "WebM"),
        ("html_page.mp4", "HTML"),
        ("empty.mp4", "empty"),
        ("truncated.mp4", "truncated"),
    ],
)
async def test_probe_refuses_what_is_not_an_mp4(
    client: oe.Client, media_url: tuple[str, list[dict[str, str]]], name: str, match: str
) -> None:
    base, _ = media_url
    with pytest.raises(oe.ValidationError, match=match):
        await client.probe(f"{base}/{name}")
    with pytest.raises(oe.ValidationError, match=match):
        await client.probe(MEDIA / name)


async def test_preflight_refuses_a_long_clip_before_any_request(
    client: oe.Client, emu: Emulator, media_url: tuple[str, list[dict[str, str]]]
) -> None:
    base, _ = media_url
    with pytest.raises(oe.ValidationError, match=r"10\.10 s long") as info:
        await client.submit(f"{base}/clip_10_1s.mp4", "warmer", preflight=True)
    assert info.value.field == "video_url"
    assert emu.stats.requests == []


async def test_preflight_lets_a_clip_under_ten_seconds_through(
    client: oe.Client, emu: Emulator, media_url: tuple[str, list[dict[str, str]]]
) -> None:
    base, _ = media_url
    task = await client.submit(f"{base}/clip_9_9s.mp4", "warmer", preflight=True)
    assert task.id in emu.tasks


async def test_the_emulator_refuses_a_long_clip_it_can_read(
    client: oe.Client, emu: Emulator, media_url: tuple[str, list[dict[str, str]]]
) -> None:
    base, _ = media_url
    with pytest.raises(oe.BadRequestError) as info:
        await client.submit(f"{base}/clip_10_1s.mp4", "warmer")
    assert info.value.param == "video_urls"
    with pytest.raises(oe.BadRequestError, match="WebM"):
        await client.submit(f"{base}/clip.webm", "warmer")
    assert emu.stats.creates == 0


async def test_edit_many_with_preflight_fails_only_the_bad_clips(
    client: oe.Client, emu: Emulator, media_url: tuple[str, list[dict[str, str]]]
) -> None:
    base, _ = media_url
    inputs = [(f"{base}/{n}", "warmer") for n in ("clip_9_9s.mp4", "clip_10_1s.mp4", "clip.webm")]
    outcomes = {o.index: o async for o in client.edit_many(inputs, preflight=True)}
    assert outcomes[0].ok
    assert isinstance(outcomes[1].error, oe.ValidationError)
    assert isinstance(outcomes[2].error, oe.ValidationError)
    assert emu.stats.creates == 1
