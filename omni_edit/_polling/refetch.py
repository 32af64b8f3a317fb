"""Re-reading a task on news from outside (a callback), without letting news set the pace.

Callbacks carry no signature, so each is verified by reading the task from the API
(docs/reliability.md#callbacks). Anyone who knows the callback URL can send them, as
fast as they like, so the reads they cause are bounded here, per task:

- **one in flight**: callers that arrive while a read is waiting to start share it;
- **one per ``interval``**: a read starts at least ``interval`` after the previous one
  ended, so repeats of one callback cost at most one request per ``interval``;
- **none missed**: a caller that arrives while a read is already sending gets the next
  read, which starts after it arrived, never an answer that may predate its news.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from .._models import Task

__all__ = ["REFETCH_INTERVAL_SECONDS", "Refetcher"]

# At most one verifying read per task per second: a genuine callback is verified within
# a second, and a flood of repeats costs one request a second at most.
REFETCH_INTERVAL_SECONDS = 1.0
# Tasks whose last read time is kept; an older one is simply read again at once.
_REMEMBERED = 10_000


class Refetcher:
    """Coalesced, rate-limited re-reads of tasks through ``fetch``."""

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[Task]],
        *,
        interval: float = REFETCH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._interval = interval
        self._clock = clock
        # The read of each task that has not started yet: new callers join it.
        self._queued: dict[str, asyncio.Future[Task]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._last: OrderedDict[str, float] = OrderedDict()
        self._closed = False

    async def read(self, task_id: str) -> Task:
        """The task as read by a request that starts after this call.

        Raises what ``fetch`` raises, and ``RuntimeError`` once closed.
        """
        if self._closed:
            raise RuntimeError("this omni_edit client is closed")
        future = self._queued.get(task_id)
        if future is None:
            future = self._queued[task_id] = asyncio.get_running_loop().create_future()
            # Every caller may have left by the time it fails: mark the error as seen.
            future.add_done_callback(_consume)
            if task_id not in self._workers:
                worker = asyncio.get_running_loop().create_task(
                    self._work(task_id), name=f"omni_edit re-read {task_id}"
                )
                self._workers[task_id] = worker
        # Shielded: one caller leaving must not cancel the read the others wait for.
        return await asyncio.shield(future)

    async def _work(self, task_id: str) -> None:
        try:
            while (future := self._queued.get(task_id)) is not None:
                last = self._last.get(task_id)
                if last is not None and (wait := last + self._interval - self._clock()) > 0:
                    await asyncio.sleep(wait)
                # From here on, a new caller's news may be newer than this read: it queues
                # the next one.
                del self._queued[task_id]
                try:
                    task = await self._fetch(task_id)
                except Exception as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(task)
                finally:
                    self._last[task_id] = self._clock()
                    self._last.move_to_end(task_id)
                    if len(self._last) > _REMEMBERED:
                        self._last.popitem(last=False)
                    if not future.done():  # cancelled mid-read: the client is closing
                        future.set_exception(RuntimeError("this omni_edit client is closed"))
        finally:
            del self._workers[task_id]
            queued = self._queued.pop(task_id, None)
            if queued is not None and not queued.done():
                queued.set_exception(RuntimeError("this omni_edit client is closed"))

    async def aclose(self) -> None:
        """Cancel every read; callers still waiting get ``RuntimeError``."""
        self._closed = True
        workers = list(self._workers.values())
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def _consume(future: asyncio.Future[Task]) -> None:
    if not future.cancelled():
        future.exception()
