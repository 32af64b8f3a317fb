"""Upload of a local clip to S3-compatible storage (issue 15, docs/storage.md).

An S3 server (moto's server mode, in a process of its own so that its work and its
memory are not counted as ours) runs on loopback. Two figures:

- throughput: ``Client.upload`` of a 50 MB clip (checked, hashed, streamed in parts and
  verified, then presigned) against a raw ``obstore.put_async`` of the same bytes, held
  in memory, with the same library to the same server. Rounds alternate; medians.
  Target: at least 0.8x the raw put's throughput.
- memory: the peak resident size (``VmHWM``) of a fresh process that uploads a 500 MB
  clip with ``Client.upload``, above its resident size just before. Target: under 64 MB.
  Linux only (``/proc/self/status``).

The clips are built at run time from a committed fixture's ``ftyp`` and ``moov`` and an
``mdat`` padded to size (so they pass the preflight), in a temporary folder deleted after.
Needs the s3 extra and moto's server: ``pip install -e '.[dev]'``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import omni_edit as oe

FIXTURE = Path(__file__).parent.parent / "tests" / "data" / "media" / "clip_9_9s.mp4"
MB = 1024 * 1024
THROUGHPUT_BYTES = 50 * MB
MEMORY_BYTES = 500 * MB
ROUNDS = 7
THROUGHPUT_TARGET = 0.8
MEMORY_TARGET_MB = 64
BUCKET = "bench-upload"
# Prefixes of this run: objects of an earlier run on the same server are not reused.
RUN = time.time_ns()


def _boxes(data: bytes) -> dict[bytes, bytes]:
    boxes: dict[bytes, bytes] = {}
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes[kind] = data[offset : offset + size]
        offset += size
    return boxes


def build_clip(path: Path, size: int) -> None:
    """A valid 9.9 s MP4 of ``size`` bytes (moov first), written a megabyte at a time."""
    boxes = _boxes(FIXTURE.read_bytes())
    head = boxes[b"ftyp"] + boxes[b"moov"]
    payload = size - len(head) - 8
    with path.open("wb") as file:
        file.write(head + struct.pack(">I4s", payload + 8, b"mdat"))
        left = payload
        while left:
            # Random bytes: nothing on the way can shortcut a run of zeros.
            chunk = os.urandom(min(MB, left))
            file.write(chunk)
            left -= len(chunk)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_s3() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            request = urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")
            with urllib.request.urlopen(request, timeout=2) as answer:
                answer.read()
            return server, endpoint
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("the S3 server did not start") from None
            time.sleep(0.1)


def _client(storage: oe.Storage) -> oe.Client:
    # No request goes to the API: an upload talks to the storage only.
    return oe.Client("bench-key", base_url="http://127.0.0.1:9", storage=storage)


async def throughput(endpoint: str, clip: Path) -> None:
    import obstore
    from obstore.store import S3Store

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret")
    data = clip.read_bytes()
    raw_store = S3Store(
        BUCKET,
        endpoint=endpoint,
        region="us-east-1",
        client_options={"allow_http": True},
    )
    ours, raw = [], []
    # Round 0 warms both up (connections, the server's first bucket writes): not counted.
    for round_ in range(ROUNDS + 1):
        # A fresh prefix a round: the object is not there yet, so it is uploaded.
        storage = oe.S3Storage(BUCKET, f"ours-{RUN}-{round_}", endpoint_url=endpoint)
        async with _client(storage) as client:
            start = time.perf_counter()
            stored = await client.upload(clip)
            took = time.perf_counter() - start
        assert stored.uploaded
        start = time.perf_counter()
        await obstore.put_async(raw_store, f"raw-{RUN}-{round_}/clip.mp4", data)
        if round_:
            ours.append(took)
            raw.append(time.perf_counter() - start)
    size_mb = len(data) / MB
    ours_rate = size_mb / statistics.median(ours)
    raw_rate = size_mb / statistics.median(raw)
    ratio = ours_rate / raw_rate
    print(f"upload: a {size_mb:.0f} MB clip to moto's S3 server on loopback, {ROUNDS} rounds")
    print(
        f"  Client.upload (check, hash, stream, verify, sign)  {ours_rate:7.1f} MB/s"
        f"   (median {statistics.median(ours) * 1e3:.0f} ms)"
    )
    print(
        f"  obstore.put_async of the bytes in memory          {raw_rate:7.1f} MB/s"
        f"   (median {statistics.median(raw) * 1e3:.0f} ms)"
    )
    verdict = "PASS" if ratio >= THROUGHPUT_TARGET else "FAIL"
    print(f"  ratio {ratio:.2f}x: {verdict} (target >= {THROUGHPUT_TARGET}x)")


async def _upload_once(endpoint: str, clip: Path) -> None:
    """In a fresh process: the peak resident size an upload adds."""
    storage = oe.S3Storage(BUCKET, f"memory-{RUN}", endpoint_url=endpoint)
    async with _client(storage) as client:
        # Everything loaded and made before the baseline: what is measured is the upload.
        await client.probe(clip)
        baseline = _status_mb("VmRSS")
        start = time.perf_counter()
        stored = await client.upload(clip)
        took = time.perf_counter() - start
        # The high-water mark of this process's memory (reset by exec, unlike
        # getrusage's ru_maxrss, which a child inherits from its parent).
        peak = _status_mb("VmHWM")
    assert stored.uploaded
    print(f"{peak - baseline:.1f} {baseline:.1f} {took:.2f}")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def memory(endpoint: str, clip: Path) -> None:
    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret")
    child = subprocess.run(
        [sys.executable, __file__, "--memory-child", endpoint, str(clip)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if child.returncode != 0:
        raise RuntimeError(f"the upload failed ({child.returncode}): {child.stderr[-2000:]}")
    out = child.stdout.split()
    added, baseline, took = float(out[0]), float(out[1]), float(out[2])
    size_mb = clip.stat().st_size / MB
    verdict = "PASS" if added < MEMORY_TARGET_MB else "FAIL"
    print(f"memory: Client.upload of a {size_mb:.0f} MB clip in a fresh process ({took:.1f} s)")
    print(
        f"  peak RSS {added:.1f} MB above the baseline of {baseline:.0f} MB:"
        f" {verdict} (target < {MEMORY_TARGET_MB} MB)"
    )


def main() -> None:
    server, endpoint = start_s3()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            clip = Path(tmp) / "clip50.mp4"
            build_clip(clip, THROUGHPUT_BYTES)
            asyncio.run(throughput(endpoint, clip))
            clip.unlink()
        # A folder of its own, made after the first is gone: at most one clip on disk.
        with tempfile.TemporaryDirectory() as tmp:
            big = Path(tmp) / "clip500.mp4"
            build_clip(big, MEMORY_BYTES)
            memory(endpoint, big)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--memory-child":
        asyncio.run(_upload_once(sys.argv[2], Path(sys.argv[3])))
    else:
        main()
