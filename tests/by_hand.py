"""Driving the emulator's tasks from a test, where a test must decide when they end."""

from __future__ import annotations

import anyio

from omni_edit.emulator import Emulator


async def finish_tasks_by_hand(emu: Emulator) -> None:
    """Complete every running task of ``emu`` as soon as it appears, until cancelled."""
    while True:
        for task in list(emu.tasks.values()):
            if task.status in ("pending", "processing"):
                emu.complete(task.id)
        await anyio.sleep(0.01)
