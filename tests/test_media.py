"""The media extra: PyAV work off the event loop in bounded threads, the emulator's real
results, and a clear refusal without the extra (docs/media.md)."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from without_av import env_without_av

import omni_edit as oe
from omni_edit._media.extra import MEDIA_WORKERS, run_media_work
from omni_edit._media.render import make_clip

if TYPE_CHECKING:
    from conftest import ClientFactory, EmulatorFactory

av = pytest.importorskip("av", reason="needs the media extra: pip install -e '.[media]'")

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parents[1]
FAST = oe.PollPolicy(min_interval=0.02, max_interval=0.1)


def _facts(data: bytes) -> tuple[float, int, int, bool, tuple[float, float, float]]:
    """(duration, width, height, has audio, mean R, G, B of the middle frame)."""
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        frames = list(container.decode(video))
        duration = float(container.duration or 0) / 1e6
        has_audio = bool(container.streams.audio)
        middle = frames[len(frames) // 2].reformat(format="rgb24")
        width, height = middle.width, middle.height
        pixels = bytes(middle.planes[0])
    # Plane rows may be padded: take each row's pixels only.
    stride = len(pixels) // height
    rows = b"".join(pixels[r * stride : r * stride + width * 3] for r in range(height))
    count = width * height
    mean = tuple(sum(rows[c::3]) / count for c in range(3))
    return duration, width, height, has_audio, (mean[0], mean[1], mean[2])


async def test_media_work_runs_off_the_loop_within_the_bound() -> None:
    lock = threading.Lock()
    running, peak, names = 0, 0, set()

    def work(seconds: float) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(seconds)
        with lock:
            running -= 1
        return threading.current_thread().name

    loop_ticks = 0

    async def tick() -> None:
        nonlocal loop_ticks
        while True:
            await asyncio.sleep(0.005)
            loop_ticks += 1

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        names = set(
            await asyncio.gather(*(run_media_work(work, 0.05) for _ in range(3 * MEDIA_WORKERS)))
        )
    finally:
        ticker.cancel()
    assert peak == MEDIA_WORKERS
    assert all(name.startswith("omni_edit-media") for name in names)
    assert loop_ticks > 3  # the loop went on while the work ran


def test_a_restyled_clip_keeps_duration_and_size_and_gains_a_look_and_sound() -> None:
    source = make_clip(2.0, width=160, height=90, tone_hz=None)
    duration, width, height, has_audio, _ = _facts(source)
    assert (round(duration, 2), width, height, has_audio) == (2.0, 160, 90, False)
    from omni_edit._media.render import restyle_clip

    grey = restyle_clip(source, look=(("hue", "s=0"),), tone_hz=330.0)
    duration, width, height, has_audio, (r, g, b) = _facts(grey)
    assert abs(duration - 2.0) <= 1 / 24
    assert (width, height) == (160, 90)
    assert has_audio
    assert abs(r - g) < 2
    assert abs(g - b) < 2
    with pytest.raises(ValueError, match="readable"):
        restyle_clip(b"not a clip at all", look=(), tone_hz=330.0)


@pytest.fixture
async def clip_url(tmp_path: Path) -> AsyncIterator[str]:
    (tmp_path / "in.mp4").write_bytes(make_clip(3.0, width=192, height=108, tone_hz=None))
    app = web.Application()
    app.router.add_static("/clips", tmp_path)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/clips/in.mp4"
    finally:
        await runner.cleanup()


async def test_real_results_are_the_input_restyled_by_the_prompt(
    make_emulator: EmulatorFactory, make_client: ClientFactory, clip_url: str, tmp_path: Path
) -> None:
    emu = await make_emulator(processing_time=(0.0, 0.05), real_results=True)
    client = await make_client(emu, poll=FAST)

    async def edit(url: str, prompt: str, name: str) -> bytes:
        task = await client.wait(await client.submit(url, prompt))
        return (await client.download(task, tmp_path / name)).read_bytes()

    fetched, made, again = await asyncio.gather(
        edit(clip_url, "Make it black and white", "a.mp4"),
        edit("https://media.example.com/x.mp4", "warmer please", "b.mp4"),
        edit("https://media.example.com/y.mp4", "warmer please", "c.mp4"),
    )
    duration, width, height, has_audio, (r, g, b) = _facts(fetched)
    assert abs(duration - 3.0) <= 1 / 24
    assert (width, height) == (192, 108)
    assert has_audio
    assert abs(r - g) < 2
    assert abs(g - b) < 2
    # A made-up host cannot be fetched: a generated clip of the task's duration, warmer.
    duration, width, height, has_audio, (r, g, b) = _facts(made)
    assert (round(duration, 2), width, height, has_audio) == (5.0, 640, 360, True)
    assert r > b + 20
    # Rendered once for both tasks with that look.
    assert made == again


def test_without_the_extra_real_results_are_refused_naming_it(tmp_path: Path) -> None:
    script = (
        "from omni_edit._media.extra import media_available\n"
        "from omni_edit._media.render import make_clip\n"
        "from omni_edit.emulator import Emulator\n"
        "assert not media_available()\n"
        "for attempt in (lambda: Emulator(real_results=True), lambda: make_clip(1.0)):\n"
        "    try:\n"
        "        attempt()\n"
        "    except RuntimeError as exc:\n"
        "        print(exc)\n"
        "Emulator()  # placeholders need nothing\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env_without_av(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert all("pip install 'omni-edit[media]'" in line for line in lines)
    assert lines[0].startswith("Emulator(real_results=True) needs the media extra")


def test_the_emulator_command_says_its_results_are_placeholders_without_the_extra(
    tmp_path: Path,
) -> None:
    argv = [sys.executable, "-m", "omni_edit", "emulator", "--port", "0"]
    with subprocess.Popen(
        argv, env=env_without_av(tmp_path), stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    said = "".join(lines)
    assert "Results are placeholders" in said
    assert "pip install 'omni-edit[media]'" in said


@pytest.mark.parametrize(
    ("prompt", "look"),
    [
        ("Make the lighting warmer and keep everything else unchanged", "warmer"),
        ("Turn the scene into a snowy winter evening", "cooler"),
        ("Make it Black and White like an old film", "black and white"),
        ("A brighter, sunny afternoon", "brighter"),
    ],
)
def test_the_look_is_keyed_from_the_prompt(prompt: str, look: str) -> None:
    from omni_edit.emulator._looks import look_for

    assert look_for(prompt).name == look


def test_any_other_prompt_gets_its_own_steady_tint() -> None:
    from omni_edit.emulator._looks import look_for

    first, again = look_for("Give it a 1970s film look"), look_for("Give it a 1970s film look")
    other = look_for("Replace the sky with stars")
    assert first == again
    assert first.name.startswith("tint")
    assert first.filters != other.filters
