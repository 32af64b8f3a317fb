"""``omni-edit demo``: the whole product working in one command, with no API key.

Starts the emulator in-process, submits a dozen edits through the public SDK, waits for
them all on the shared scheduler while printing each one's progress, saves the results
under ``./omni-edit-demo/`` and ends with a summary. One edit is made to fail, so the
output also shows what a failure looks like.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from . import Client, OmniEditError, PollPolicy, Task, TaskFailedError
from .emulator import Emulator

__all__ = ["run_demo"]

PROMPTS = (
    "Make the lighting warmer and keep everything else unchanged",
    "Turn the scene into a snowy winter evening; keep the camera motion",
    "Give it a 1970s film look with soft grain; no text on screen",
    "Replace the sky with a dramatic sunset and keep the people unchanged",
)
CLIPS = 12


async def run_demo(out_dir: Path, *, clips: int = CLIPS) -> int:
    """Run the demo; return 0 when every edit but the deliberate failure succeeded."""
    started = time.monotonic()
    async with (
        Emulator(processing_time=(1.0, 4.0), estimated_time=3, seed=2026) as emu,
        Client("demo-key", base_url=emu.base_url, poll=PollPolicy(min_interval=0.2)) as client,
    ):
        print(f"Emulator running at {emu.base_url} (results served from {emu.result_base_url})")
        tasks: list[Task] = []
        for i in range(clips):
            url = f"https://media.example.com/demo/clip-{i + 1:02d}.mp4"
            tasks.append(await client.submit(url, PROMPTS[i % len(PROMPTS)]))
        print(f"Submitted {len(tasks)} edits; waiting on one shared poll scheduler...")
        emu.fail(tasks[-1].id, code="content_policy_violation")

        rows: list[tuple[str, str, str]] = []

        async def finish(n: int, task: Task) -> None:
            last = [-1]

            def show(t: Task) -> None:
                if t.progress // 25 != last[0] // 25 or t.is_terminal:
                    print(f"  clip {n:02d}  {t.status.value:<10} {t.progress:>3}%")
                last[0] = t.progress

            try:
                done = await client.wait(task, on_progress=show)
                path = await client.download(done, out_dir / f"clip-{n:02d}.mp4")
                rows.append((f"clip {n:02d}", "completed", str(path)))
            except TaskFailedError as exc:
                rows.append((f"clip {n:02d}", "failed", f"{exc.code}"))
            except OmniEditError as exc:
                rows.append((f"clip {n:02d}", "error", str(exc)))

        async with anyio.create_task_group() as tg:
            for n, task in enumerate(tasks, 1):
                tg.start_soon(finish, n, task)

        gets = sum(1 for r in emu.stats.requests if r.method == "GET")
    print()
    print(f"{'clip':<8} {'status':<10} result")
    for name, status, detail in sorted(rows):
        print(f"{name:<8} {status:<10} {detail}")
    ok = sum(1 for _, status, _ in rows if status == "completed")
    print()
    print(
        f"{ok} of {len(rows)} edits saved under {out_dir}/ in"
        f" {time.monotonic() - started:.1f} s, with {gets} status polls in all"
        f" ({gets / len(rows):.1f} per clip). The failure is deliberate:"
        " it shows how a content-policy rejection is reported."
    )
    return 0 if ok == len(rows) - 1 else 1
