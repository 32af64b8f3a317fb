"""Regenerate the MP4 test fixtures in this folder (needs ffmpeg and ffprobe on PATH).

Run from anywhere: ``python3 tests/data/media/make_fixtures.py``. The clips are tiny
(64x36, 10 fps, crf 51, 8 kHz mono AAC) so the whole set stays under ~100 KB. Two of
them are rewritten by hand below, because ffmpeg never writes those layouts for a short
clip: version-1 header boxes with a 64-bit ``largesize`` mdat, and an ``mvex/mehd`` box.
The tests do not need ffmpeg: they read the committed files.
"""

from __future__ import annotations

import shlex
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent

VIDEO = shlex.split("-f lavfi -i testsrc2=size=64x36:rate=10")
AUDIO = shlex.split("-f lavfi -i sine=frequency=440:sample_rate=8000")
X264 = shlex.split(
    "-c:v libx264 -preset veryslow -crf 51 -pix_fmt yuv420p -g 10 -bf 0 -threads 1"
    " -x264-params log-level=none"
)
AAC = shlex.split("-c:a aac -b:a 8k -ac 1")
VP8 = shlex.split("-c:v libvpx -b:v 10k -deadline realtime")
PLAIN = shlex.split("-fflags +bitexact -map_metadata -1")
QUIET = shlex.split("ffmpeg -hide_banner -loglevel error -y")
# ISO/IEC 14496-12 container boxes that lie on the paths rewritten below.
CONTAINERS = {b"moov", b"trak", b"mdia", b"mvex"}


def ffmpeg(out: Path, seconds: float, *, audio: bool, movflags: str = "") -> None:
    args = [*QUIET, *VIDEO]
    if audio:
        args += AUDIO
    args += ["-t", str(seconds), *X264]
    if audio:
        args += AAC
    if movflags:
        args += ["-movflags", movflags]
    subprocess.run([*args, *PLAIN, str(out)], check=True)


def boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split ``data`` into (type, payload) pairs; plain 32-bit sizes only."""
    out, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        out.append((kind, data[pos + 8 : pos + size]))
        pos += size
    return out


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def to_version_1(kind: bytes, payload: bytes) -> bytes:
    """Rewrite a version-0 mvhd, tkhd or mdhd payload in its 64-bit version-1 layout."""
    if kind not in (b"mvhd", b"tkhd", b"mdhd") or payload[0] != 0:
        return payload
    flags = b"\x01" + payload[1:4]
    if kind == b"tkhd":  # creation, modification, track_ID, reserved, duration
        c, m, track, res, dur = struct.unpack_from(">5I", payload, 4)
        return flags + struct.pack(">QQIIQ", c, m, track, res, dur) + payload[24:]
    # mvhd and mdhd: creation, modification, timescale, duration
    c, m, scale, dur = struct.unpack_from(">4I", payload, 4)
    return flags + struct.pack(">QQIQ", c, m, scale, dur) + payload[20:]


def rewrite(payload: bytes, edit: Callable[[bytes, bytes], bytes]) -> bytes:
    """Rebuild a container's children, applying ``edit`` to every leaf on the way."""
    out = b""
    for kind, child in boxes(payload):
        if kind in CONTAINERS:
            out += box(kind, edit(kind, rewrite(child, edit)))
        else:
            out += box(kind, edit(kind, child))
    return out


def make_v1_largesize(src: Path, out: Path) -> None:
    """Version-1 headers, and the ``free`` + ``mdat`` pair fused into one largesize mdat.

    ffmpeg leaves an 8-byte ``free`` before ``mdat`` for exactly this; the fused 16-byte
    header ends where the old one did, so no chunk offset moves. The moov is last, so
    growing it moves nothing either.
    """
    data = src.read_bytes()
    out_bytes = b""
    parts = boxes(data)
    i = 0
    while i < len(parts):
        kind, payload = parts[i]
        if kind == b"free" and parts[i + 1][0] == b"mdat":
            mdat = parts[i + 1][1]
            out_bytes += struct.pack(">I4sQ", 1, b"mdat", 16 + len(mdat)) + mdat
            i += 2
            continue
        if kind == b"moov":
            out_bytes += box(b"moov", rewrite(payload, to_version_1))
        else:
            out_bytes += box(kind, payload)
        i += 1
    out.write_bytes(out_bytes)


def make_mehd(src: Path, out: Path, duration_ms: int) -> None:
    """Insert ``mvex/mehd`` (fragment_duration in the mvhd timescale, here 1000)."""

    def add_mehd(kind: bytes, payload: bytes) -> bytes:
        if kind == b"mvex":
            return box(b"mehd", b"\x01\x00\x00\x00" + struct.pack(">Q", duration_ms)) + payload
        return payload

    data = b""
    for kind, payload in boxes(src.read_bytes()):
        data += box(kind, rewrite(payload, add_mehd) if kind == b"moov" else payload)
    out.write_bytes(data)


HTML = b"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in to continue</title></head>
<body><form action="/login" method="post"><input name="user"><button>Sign in</button></form></body>
</html>
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        ffmpeg(HERE / "faststart.mp4", 3, audio=False, movflags="+faststart")
        ffmpeg(HERE / "moov_at_end.mp4", 3, audio=True)
        ffmpeg(HERE / "fragmented.mp4", 3, audio=True, movflags="frag_keyframe+empty_moov")
        ffmpeg(HERE / "fragmented_moov_samples.mp4", 3, audio=False, movflags="frag_keyframe")
        ffmpeg(
            HERE / "fragmented_sidx.mp4",
            3,
            audio=False,
            movflags="frag_keyframe+empty_moov+default_base_moof+dash",
        )
        ffmpeg(
            HERE / "fragmented_global_sidx.mp4",
            3,
            audio=False,
            movflags="frag_keyframe+empty_moov+dash+global_sidx",
        )
        base = tmp / "base_moof.mp4"
        ffmpeg(
            base, 3, audio=False, movflags="frag_keyframe+empty_moov+default_base_moof+skip_trailer"
        )
        make_mehd(base, HERE / "fragmented_mehd.mp4", 3000)
        end = tmp / "end.mp4"
        ffmpeg(end, 3, audio=True)
        make_v1_largesize(end, HERE / "v1_largesize.mp4")
        ffmpeg(HERE / "clip_9_9s.mp4", 9.9, audio=True, movflags="+faststart")
        ffmpeg(HERE / "clip_10_1s.mp4", 10.1, audio=False, movflags="+faststart")
        ffmpeg(HERE / "clip_12s.mp4", 12, audio=False, movflags="+faststart")
        whole = (HERE / "moov_at_end.mp4").read_bytes()
        (HERE / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
        (HERE / "empty.mp4").write_bytes(b"")
        (HERE / "html_page.mp4").write_bytes(HTML)
        webm = [*QUIET, *VIDEO, "-t", "2", *VP8, *PLAIN, str(HERE / "clip.webm")]
        subprocess.run(webm, check=True)
    for path in [*sorted(HERE.glob("*.mp4")), HERE / "clip.webm"]:
        duration = shlex.split("-v error -show_entries format=duration -of csv=p=0")
        probe = subprocess.run(
            ["ffprobe", *duration, str(path)], capture_output=True, text=True, check=False
        )
        print(f"{path.name:32} {path.stat().st_size:7} bytes  {probe.stdout.strip() or '-'}")


if __name__ == "__main__":
    main()
