"""Probe: bytes read and time to learn a 10 s clip's duration, against downloading it.

Two 5 MB files are assembled at run time from a committed fixture's boxes (its ``ftyp``
and ``moov``, and an ``mdat`` padded to 5 MB), one with ``moov`` first (faststart) and
one with ``moov`` at the end, and served over loopback HTTP with Range support. Each is
probed with ``Client.probe`` and downloaded whole with a plain aiohttp GET, in the same
run. Target (issue 6): the probe reads under 1% of the file's bytes.
"""

from __future__ import annotations

import asyncio
import statistics
import struct
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

import omni_edit as oe

FIXTURE = Path(__file__).parent.parent / "tests" / "data" / "media" / "clip_9_9s.mp4"
SIZE = 5 * 1024 * 1024
ROUNDS = 5


def _boxes(data: bytes) -> dict[bytes, bytes]:
    boxes: dict[bytes, bytes] = {}
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes[kind] = data[offset : offset + size]
        offset += size
    return boxes


def _build(directory: Path) -> dict[str, Path]:
    boxes = _boxes(FIXTURE.read_bytes())
    ftyp, moov = boxes[b"ftyp"], boxes[b"moov"]
    payload = SIZE - len(ftyp) - len(moov) - 8
    mdat = struct.pack(">I4s", payload + 8, b"mdat") + bytes(payload)
    files = {"moov first": ftyp + moov + mdat, "moov last": ftyp + mdat + moov}
    paths = {}
    for name, data in files.items():
        path = directory / (name.replace(" ", "_") + ".mp4")
        path.write_bytes(data)
        paths[name] = path
    return paths


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = _build(Path(tmp))
        app = web.Application()
        app.router.add_static("/media", tmp)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}/media"
        print(f"probe: a {FIXTURE.name}-based clip padded to {SIZE / 2**20:.0f} MB, over HTTP")
        print(f"  {'layout':<11} {'probe bytes':>11} {'share':>7} {'probe ms':>9} {'GET ms':>8}")
        try:
            async with (
                oe.Client("bench-key", base_url="http://127.0.0.1:9") as client,
                aiohttp.ClientSession() as session,
            ):
                for name, path in paths.items():
                    url = f"{base}/{path.name}"
                    probe_times, get_times = [], []
                    info = None
                    for _ in range(ROUNDS):
                        start = time.perf_counter()
                        info = await client.probe(url)
                        probe_times.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        async with session.get(url) as r:
                            whole = len(await r.read())
                        get_times.append(time.perf_counter() - start)
                    assert info is not None
                    assert whole == path.stat().st_size
                    share = info.bytes_read / whole
                    print(
                        f"  {name:<11} {info.bytes_read:>11,} {share:>7.3%}"
                        f" {statistics.median(probe_times) * 1e3:>9.2f}"
                        f" {statistics.median(get_times) * 1e3:>8.2f}"
                        f"   duration {info.duration:.2f} s,"
                        f" {'PASS' if share < 0.01 else 'MISS'} (target < 1%)"
                    )
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
