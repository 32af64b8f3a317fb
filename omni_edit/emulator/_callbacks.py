"""Callback delivery (docs/api.md#callbacks).

For each task with a ``callback_url``, one job sleeps until the task ends (or is woken
by a forced outcome), then POSTs the task object with a 10 s timeout; a non-2xx answer or
no answer is retried after each of the retry delays, so a receiver may see the same
callback several times.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

import aiohttp
import anyio

from .._constants import CALLBACK_TIMEOUT_SECONDS
from ._jobs import JobGroup
from ._state import EmulatedTask, clock
from ._stats import CallbackAttempt, Stats

__all__ = ["CallbackSender"]

logger = logging.getLogger("omni_edit.emulator")


class CallbackSender:
    """Watches tasks with a callback URL and delivers their final state."""

    def __init__(self, *, jobs: JobGroup, retry_delays: Sequence[float], stats: Stats) -> None:
        self._jobs = jobs
        self._retry_delays = tuple(retry_delays)
        self._stats = stats
        self._session: aiohttp.ClientSession | None = None
        self._wakers: dict[str, anyio.Event] = {}

    async def open(self) -> None:
        """Create the HTTP session deliveries use."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_SECONDS)
        )

    async def close(self) -> None:
        """Close the session; call after the jobs are cancelled."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def watch(self, task: EmulatedTask) -> None:
        """Deliver ``task``'s callback once it ends."""
        self._jobs.spawn(lambda: self._watch(task), f"callback {task.id}")

    def wake(self, task_id: str) -> None:
        """The task's end moved (a forced outcome): look again now."""
        waker = self._wakers.get(task_id)
        if waker is not None:
            waker.set()

    async def _watch(self, task: EmulatedTask) -> None:
        waker = self._wakers[task.id] = anyio.Event()
        try:
            while (left := task.ends - clock()) > 0:
                with anyio.move_on_after(left):
                    await waker.wait()
        finally:
            del self._wakers[task.id]
        await self._deliver(task)

    async def _deliver(self, task: EmulatedTask) -> None:
        assert task.callback_url is not None
        for delay in (0.0, *self._retry_delays):
            await anyio.sleep(delay)
            body = task.to_json(clock())
            http_status = await self._post(task.callback_url, body)
            self._stats.callbacks_sent.append(CallbackAttempt(task.id, body["status"], http_status))
            logger.debug("callback for %s (%s) answered %s", task.id, body["status"], http_status)
            if http_status is not None and 200 <= http_status < 300:
                return

    async def _post(self, url: str, body: dict[str, object]) -> int | None:
        assert self._session is not None
        try:
            async with self._session.post(
                url,
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                allow_redirects=False,
            ) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None
