"""``omni-edit demo``: the whole product working in one command, with no API key.

It starts the emulator in-process, makes six small sample clips, serves them from a
local web server so that preflight and the emulator really read them, writes a manifest
of two dozen edits and runs the real ``batch`` command on it: progress bar, journal,
reports, results under ``./omni-edit-demo/results/``. It ends with a table of every edit
and the page to watch them by, ``report.html``.

With the ``media`` extra (PyAV), the clips are real videos and so are the emulator's
results: each input re-rendered with a look keyed from its prompt (docs/media.md).
Without it, the clips are MP4 header boxes over filler bytes, built here, and the
results placeholders; the demo says so.

Three rows go wrong on purpose, to show how each kind of failure is reported: a prompt
the (emulated) safety filter blocks, a 12-second clip that preflight refuses before it
costs anything, and a row with no prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import random
import shlex
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
from aiohttp import web

from .._media.extra import MEDIA_EXTRA_HINT, media_available
from .._media.render import make_clip
from .._models import PollPolicy
from ..emulator import Emulator
from .batch_command import BatchSettings, run_batch
from .context import Context

__all__ = ["run_demo"]

# (file name, seconds): five clips the API takes, and one over its 10-second limit.
CLIPS = (
    ("harbour.mp4", 4.0),
    ("market.mp4", 5.5),
    ("forest.mp4", 6.0),
    ("skyline.mp4", 7.5),
    ("beach.mp4", 9.0),
    ("concert.mp4", 12.0),
)
TOO_LONG = "concert.mp4"
PROMPTS = (
    "Make the lighting warmer and keep everything else unchanged",
    "Turn the scene into a snowy winter evening; keep the camera motion",
    "Give it a 1970s film look with soft grain; no text on screen",
    "Replace the sky with a dramatic sunset and keep the people unchanged",
)
# A row that names its own output file, to show the manifest's "output" column.
RAINY_PROMPT = "Make it a rainy night with lit windows; keep the boats as they are"
# The emulated safety filter blocks the task with this prompt.
BLOCKED_PROMPT = "Replace every face with a famous actor's face"
CONCURRENCY = 8  # fewer than the edits, so the progress bar has something to show


async def run_demo(ctx: Context, out_dir: Path) -> int:
    """Run the demo; return 0 when every edit but the three deliberate failures
    succeeded, else 1."""
    started = time.monotonic()
    clips_dir, results_dir = out_dir / "clips", out_dir / "results"
    manifest, report = out_dir / "manifest.csv", out_dir / "report.csv"
    page = out_dir / "report.html"
    real = media_available()
    settings = BatchSettings(
        manifest=manifest,
        out_dir=results_dir,
        concurrency=CONCURRENCY,
        report=report,
        html_report=page,
        # The 12 s clip shows preflight refusing a clip before it costs anything: not
        # split (that needs a storage the demo does not have).
        split=False,
    )
    _prepare(clips_dir, settings.journal_path, real=real)

    async with (
        Emulator(processing_time=(1.0, 3.0), estimated_time=2, seed=2026, real_results=real) as emu,
        _serve(clips_dir) as clips_url,
        _block(emu, BLOCKED_PROMPT),
    ):
        ctx.say(f"Emulator of the API at {emu.base_url} (no key needed).")
        rows = _write_manifest(manifest, clips_url)
        shortest, longest = CLIPS[0][1], CLIPS[-1][1]
        ctx.say(
            f"Made {len(CLIPS)} sample clips of {shortest:g} to {longest:g} s in {clips_dir}/,"
            f" served at {clips_url}/; wrote {rows} edits to {manifest}."
        )
        if not real:
            ctx.say(
                "The media extra is not installed, so the clips and the results are"
                " placeholders (MP4 headers over filler bytes: no player can play them)."
                f" For real videos: {MEDIA_EXTRA_HINT}"
            )
        command = ["omni-edit", "batch", str(manifest), "--out-dir", str(results_dir)]
        command += ["--concurrency", str(CONCURRENCY), "--report", str(report)]
        ctx.say(f"\n$ {shlex.join(command)}")
        demo_ctx = attrs.evolve(ctx, api_key="demo-key", base_url=emu.base_url, json=False)
        # The page links the local copies: the clip server is gone when it is read.
        local = {f"{clips_url}/{name}": clips_dir / name for name, _ in CLIPS}
        settings = attrs.evolve(settings, local_sources=local)
        await run_batch(demo_ctx, settings, poll=PollPolicy(min_interval=0.25))
        polls = sum(1 for r in emu.stats.requests if r.method == "GET")
    return _summary(ctx, report, out_dir, time.monotonic() - started, polls, page, real=real)


def _prepare(clips_dir: Path, journal: Path, *, real: bool) -> None:
    """Write the sample clips, and forget an earlier demo's journal: it names clips on
    another port, so this run starts afresh."""
    clips_dir.mkdir(parents=True, exist_ok=True)
    for number, (name, seconds) in enumerate(CLIPS):
        if real:
            # One moving pattern, each clip in its own colours, its own tone.
            hue = (("hue", f"h={number * 60}"),)
            clip = make_clip(seconds, fps=12, tone_hz=300.0 + 40 * number, look=hue)
        else:
            clip = sample_clip(seconds, seed=name)
        (clips_dir / name).write_bytes(clip)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal}{suffix}").unlink(missing_ok=True)


def _write_manifest(path: Path, clips_url: str) -> int:
    good = [name for name, _ in CLIPS if name != TOO_LONG]
    rows = [(f"{clips_url}/{name}", prompt, "") for prompt in PROMPTS for name in good]
    rows.append((f"{clips_url}/{good[0]}", RAINY_PROMPT, "harbour-at-night.mp4"))
    rows.append((f"{clips_url}/{good[1]}", BLOCKED_PROMPT, ""))
    rows.append((f"{clips_url}/{TOO_LONG}", PROMPTS[0], ""))
    rows.append((f"{clips_url}/{good[2]}", "", ""))
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(("video_url", "prompt", "output"))
        # A row's output is taken under --out-dir: this one lands in results/.
        writer.writerows(rows)
    return len(rows)


def _summary(
    ctx: Context,
    report: Path,
    out_dir: Path,
    elapsed: float,
    polls: int,
    page: Path,
    *,
    real: bool,
) -> int:
    with open(report, newline="", encoding="utf-8") as file:
        rows = sorted(csv.DictReader(file), key=lambda row: int(row["index"]))
    ctx.say(f"\n{'line':>4}  {'clip':<12} {'status':<10} result")
    for row in rows:
        clip = row["video_url"].rsplit("/", 1)[-1]
        if row["status"] == "completed":
            detail = _relative(Path(row["output"]), out_dir)
        else:
            detail = f"{row['error_code']}: {row['error_message']}"
            detail = detail if len(detail) <= 72 else detail[:71] + "…"
        ctx.say(f"{row['line']:>4}  {clip:<12} {row['status']:<10} {detail}")
    completed = sum(1 for row in rows if row["status"] == "completed")
    ctx.say(
        f"\n{completed} of {len(rows)} edits saved under {out_dir}/results/ in {elapsed:.1f} s,"
        f" with {polls} status polls in all ({polls / max(completed, 1):.1f} per edit).\n"
        "The three failures are deliberate: a prompt the emulated safety filter blocks, a"
        " 12 s clip that preflight refuses before it costs anything, and a row with no"
        f" prompt.\nEvery outcome is in {out_dir}/report.csv. Against the real API, running"
        " the same batch command again resumes it from its journal."
    )
    if not real:
        ctx.say(
            "The results are placeholders, not playable: install the media extra"
            f" ({MEDIA_EXTRA_HINT}) and run the demo again for real edited videos."
        )
    ctx.say(
        f"\nWatch every source and result side by side: open {page.resolve().as_uri()}"
        " in a browser."
    )
    return 0 if completed == len(rows) - 3 else 1


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path)


# --- the sample clips and their server --------------------------------------------------

_TIMESCALE = 1000
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", flags), *parts)  # version 0: 32-bit times


def sample_clip(seconds: float, *, seed: str, width: int = 320, height: int = 180) -> bytes:
    """A small MP4 that says it lasts ``seconds``: ``ftyp``, a ``moov`` with the movie
    header and one video track, and an ``mdat`` of filler bytes. Enough for every MP4
    reader that learns a clip's length from its boxes, as preflight and the API do."""
    duration = round(seconds * _TIMESCALE)
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    mvhd = _full_box(
        b"mvhd",
        0,
        struct.pack(">4I", 0, 0, _TIMESCALE, duration),
        struct.pack(">IH", 0x10000, 0x100),  # rate 1.0, volume 1.0
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", 2),  # next track id
    )
    tkhd = _full_box(
        b"tkhd",
        0x3,  # enabled, in movie
        struct.pack(">5I", 0, 0, 1, 0, duration),
        bytes(8),
        struct.pack(">hhHH", 0, 0, 0, 0),
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = _full_box(
        b"mdhd", 0, struct.pack(">4I", 0, 0, _TIMESCALE, duration), struct.pack(">HH", 0x55C4, 0)
    )
    hdlr = _full_box(b"hdlr", 0, bytes(4), b"vide", bytes(12), b"omni-edit demo\0")
    moov = _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr)))
    filler = random.Random(seed).randbytes(int(2048 * seconds))
    return ftyp + moov + _box(b"mdat", filler)


@contextlib.asynccontextmanager
async def _serve(folder: Path) -> AsyncIterator[str]:
    """Serve ``folder`` on a free loopback port (Range requests included); yield its URL."""
    app = web.Application()
    app.router.add_static("/clips", folder)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}/clips"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _block(emu: Emulator, prompt: str) -> AsyncIterator[None]:
    """Fail every task with ``prompt`` as a content-policy violation, as it is created."""

    async def watch() -> None:
        blocked: set[str] = set()
        while True:
            for task in list(emu.tasks.values()):
                if task.prompt == prompt and task.id not in blocked and not task.finished:
                    emu.fail(task.id, code="content_policy_violation")
                    blocked.add(task.id)
            await asyncio.sleep(0.05)

    watcher = asyncio.get_running_loop().create_task(watch(), name="omni-edit demo filter")
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
