"""Splitting a long clip and stitching the edited segments (issue 16, docs/media.md#long-clips).

A 720p clip (FFmpeg's test pattern with a tone, H.264 + AAC, a keyframe every 2 s) of
``SECONDS`` seconds is made in a temporary folder, then each step runs in a fresh
process of its own, so that its peak memory is its own:

- the floor: reading the file once with PyAV, packets only (what a stream copy must at
  least do) and decoding every frame (what a re-encode must at least do);
- ``split_clip`` by stream copy (cuts at keyframes) and by re-encoding;
- ``stitch_clips`` of the copied segments, by stream copy and by re-encoding.

Times are scaled to a minute of input. Memory is the process's peak resident size
(``VmHWM``) above its size once PyAV is imported: Linux only. Needs the media extra:
``pip install -e '.[media]'``. Under a minute on two shared cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECONDS = 30.0
FPS = 24

_STEP = """
import json, sys, time
import av
from pathlib import Path
from omni_edit._media.segments import split_clip, stitch_clips

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0

step, source, folder = sys.argv[1:4]
base = rss("VmRSS")
start = time.perf_counter()
if step == "read-packets":
    with av.open(source) as clip:
        for packet in clip.demux():
            pass
elif step == "read-decode":
    with av.open(source) as clip:
        for frame in clip.decode(video=0):
            pass
elif step.startswith("split-"):
    out = Path(folder) / step
    out.mkdir()
    split_clip(source, out, mode=step.removeprefix("split-"))
else:
    parts = sorted((Path(folder) / "split-copy").glob("segment-*.mp4"))
    stitch_clips(parts, Path(folder) / f"{step}.mp4", mode=step.removeprefix("stitch-"))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mb": rss("VmHWM") - base}))
"""

STEPS = [
    ("read-packets", "floor: read once, packets only"),
    ("read-decode", "floor: read once, every frame decoded"),
    ("split-copy", "split, stream copy"),
    ("split-encode", "split, re-encoded"),
    ("stitch-copy", "stitch, stream copy"),
    ("stitch-encode", "stitch, re-encoded"),
]


def main() -> int:
    try:
        from omni_edit._media.render import make_clip
    except ImportError:
        print("skipped: needs the media extra (pip install -e '.[media]')")
        return 0
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="bench-media-") as folder:
        source = Path(folder) / "input-720p.mp4"
        made = time.perf_counter()
        source.write_bytes(make_clip(SECONDS, width=1280, height=720, keyframe_every=2 * FPS))
        print(
            f"input: {SECONDS:g} s of 1280x720 at {FPS} fps with sound,"
            f" {source.stat().st_size / 1e6:.1f} MB, made in {time.perf_counter() - made:.1f} s"
        )
        print(f"{'step':<40} {'s per min of input':>19} {'x floor':>8} {'peak MB':>8}")
        floor: dict[str, float] = {}
        for step, label in STEPS:
            done = subprocess.run(
                [sys.executable, "-c", _STEP, step, str(source), folder],
                capture_output=True,
                text=True,
                check=True,
                cwd=root,
            )
            figures = json.loads(done.stdout)
            per_minute = figures["seconds"] * 60 / SECONDS
            if step == "read-packets":
                floor["copy"] = per_minute
            elif step == "read-decode":
                floor["encode"] = per_minute
            base = floor["copy"] if step.endswith(("copy", "packets")) else floor["encode"]
            print(
                f"{label:<40} {per_minute:>19.2f} {per_minute / base:>8.1f}"
                f" {figures['peak_mb']:>8.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
