"""One poll scheduler per client: every wait shares it.

A single runner keeps a heap of (next poll time, task id). A watched task costs a slot
in a dict and a heap entry, not a coroutine: ``wait`` and ``edit_many`` attach
*listeners* (plain callables) that the scheduler calls whenever the task changes. The
runner starts with the first watch, polls due tasks concurrently through the client's
limiter, and ends by itself when nothing is watched; ``aclose`` cancels it.

Guarantees: a task with no listener left is never polled again; a 429 (the transport's
client-wide pause) holds every poll back; a callback or any other fresh read of a task
(``deliver``) wakes its listeners at once and reschedules its next poll.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections.abc import Awaitable, Callable

from ._exceptions import (
    APIConnectionError,
    OmniEditError,
    RateLimitError,
    ServerError,
)
from ._models import PollPolicy, Task
from ._polling import next_poll_delay
from ._retry import Pause, backoff_delay

__all__ = ["Listener", "PollScheduler"]

logger = logging.getLogger("omni_edit")

Listener = Callable[[Task | None, BaseException | None], None]
"""Called with the task's new state, or with the error that ends the watch."""

# Transient poll failures (after the transport's own retries) tolerated before the
# error is handed to the listeners; a long outage still ends waits, a blip does not.
MAX_CONSECUTIVE_POLL_FAILURES = 5


class _Watch:
    __slots__ = (
        "callback",
        "due",
        "estimate",
        "failures",
        "first_at",
        "first_progress",
        "listeners",
        "poll",
        "polling",
        "task",
        "task_id",
    )

    def __init__(self, task_id: str, task: Task | None, now: float, callback: bool) -> None:
        self.task_id = task_id
        self.task = task
        self.listeners: list[Listener] = []
        self.due = 0.0
        self.polling = False
        self.poll: asyncio.Task[None] | None = None
        self.failures = 0
        self.callback = callback
        # Progress is rated from the first observation onwards, and the first estimate
        # is kept: API.md does not say whether later ones mean total or remaining time.
        self.first_at = now
        self.first_progress = task.progress if task else 0
        self.estimate = task.estimated_time if task else None


class PollScheduler:
    """Polls watched tasks at adaptive intervals and tells their listeners.

    ``fetch`` reads one task (``Client.get``); ``pause`` is the transport's client-wide
    429 gate.
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[Task]],
        policy: PollPolicy,
        pause: Pause,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self._fetch = fetch
        self._pause = pause
        self._clock = clock
        self._rng = rng
        self._watches: dict[str, _Watch] = {}
        self._heap: list[tuple[float, str]] = []
        self._runner: asyncio.Task[None] | None = None
        self._polls: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._closed = False
        self.polls_sent = 0

    def __len__(self) -> int:
        return len(self._watches)

    # --- Watching -----------------------------------------------------------------------

    def watch(
        self,
        task_id: str,
        listener: Listener,
        *,
        task: Task | None = None,
        callback: bool = False,
    ) -> None:
        """Start telling ``listener`` about ``task_id``. ``task`` is its last known state
        (its first poll is then timed from ``estimated_time``); without it the task is
        read at once. ``callback`` marks a task whose end will arrive by callback, which
        is then polled only as a slow safety net."""
        if self._closed:
            raise RuntimeError("this omni_edit client is closed")
        watch = self._watches.get(task_id)
        if watch is None:
            now = self._clock()
            watch = self._watches[task_id] = _Watch(task_id, task, now, callback)
            if task is None:
                self._schedule(watch, now)
            elif task.is_terminal:
                listener(task, None)
                del self._watches[task_id]
                return
            else:
                self._schedule(watch, now + self._delay(watch, now))
        elif callback:
            watch.callback = True
        watch.listeners.append(listener)
        self._ensure_runner()

    def unwatch(self, task_id: str, listener: Listener) -> None:
        """Stop telling ``listener``; the last one gone ends all polling of the task."""
        watch = self._watches.get(task_id)
        if watch is None:
            return
        try:
            watch.listeners.remove(listener)
        except ValueError:
            return
        if not watch.listeners:
            # Its heap entry stays behind and is skipped when popped.
            del self._watches[task_id]
            if watch.poll is not None:
                watch.poll.cancel()  # nobody waits for its answer any more
            if not self._watches:
                self._wakeup.set()  # let an idle runner end now

    def deliver(self, task: Task) -> None:
        """A fresh read of ``task`` (a verified callback, a user's ``get``): tell its
        listeners now and time the next poll from this observation."""
        watch = self._watches.get(task.id)
        if watch is not None:
            self._update(watch, task)

    # --- Runner -------------------------------------------------------------------------

    def _ensure_runner(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name="omni_edit poll scheduler"
            )
        else:
            self._wakeup.set()

    async def _run(self) -> None:
        try:
            while self._watches or self._polls:
                await self._pause.wait()
                now = self._clock()
                heap = self._heap
                while heap and heap[0][0] <= now:
                    due, task_id = heapq.heappop(heap)
                    watch = self._watches.get(task_id)
                    if watch is None or watch.due != due or watch.polling:
                        continue
                    watch.polling = True
                    poll = asyncio.get_running_loop().create_task(self._poll(watch))
                    watch.poll = poll
                    self._polls.add(poll)
                    poll.add_done_callback(self._poll_done)
                self._wakeup.clear()
                # A timer that sets the event, not a timeout scope: this loop turns once
                # per poll, and a plain timer handle is the cheapest way to sleep here.
                timer = (
                    asyncio.get_running_loop().call_later(heap[0][0] - now, self._wakeup.set)
                    if heap
                    else None
                )
                try:
                    await self._wakeup.wait()
                finally:
                    if timer is not None:
                        timer.cancel()
        finally:
            # Decided with no await in between: a watch added from now on starts a
            # new runner, and this one touches nothing again.
            self._runner = None

    def _poll_done(self, poll: asyncio.Task[None]) -> None:
        self._polls.discard(poll)
        self._wakeup.set()

    async def _poll(self, watch: _Watch) -> None:
        try:
            self.polls_sent += 1
            task = await self._fetch(watch.task_id)
            watch.poll = None
        except (RateLimitError, ServerError, APIConnectionError) as exc:
            watch.poll = None
            watch.polling = False
            watch.failures += 1
            if watch.failures >= MAX_CONSECUTIVE_POLL_FAILURES:
                self._fail(watch, exc)
            else:
                logger.debug("poll of %s failed (%s); will retry", watch.task_id, exc)
                now = self._clock()
                delay = max(self.policy.min_interval, backoff_delay(watch.failures))
                self._schedule(watch, now + delay)
            return
        except OmniEditError as exc:
            watch.poll = None
            watch.polling = False
            self._fail(watch, exc)
            return
        watch.polling = False
        watch.failures = 0
        if self._watches.get(watch.task_id) is watch:
            self._update(watch, task)

    # --- State ------------------------------------------------------------------------------

    def _update(self, watch: _Watch, task: Task) -> None:
        now = self._clock()
        previous = watch.task
        watch.task = task
        if previous is None:
            watch.first_at, watch.first_progress = now, task.progress
        if watch.estimate is None:
            watch.estimate = task.estimated_time
        if task.is_terminal:
            del self._watches[watch.task_id]
        else:
            self._schedule(watch, now + self._delay(watch, now))
        if previous != task:
            for listener in list(watch.listeners):
                listener(task, None)

    def _fail(self, watch: _Watch, exc: BaseException) -> None:
        if self._watches.get(watch.task_id) is watch:
            del self._watches[watch.task_id]
        for listener in list(watch.listeners):
            listener(None, exc)

    def _schedule(self, watch: _Watch, due: float) -> None:
        watch.due = due
        heapq.heappush(self._heap, (due, watch.task_id))
        if self._runner is not None and self._heap[0][0] == due:
            self._wakeup.set()

    def _delay(self, watch: _Watch, now: float) -> float:
        if watch.callback:
            return self.policy.callback_interval
        task = watch.task
        # Time is measured from our own first sight of the task, not from its ``created``
        # stamp: a skewed clock on either side would otherwise distort every interval.
        # Tasks are watched from submission on, so the two differ by one round trip.
        return next_poll_delay(
            self.policy,
            elapsed=now - watch.first_at,
            progress=task.progress if task else 0,
            estimated_time=watch.estimate,
            started_progress=watch.first_progress,
            rng=self._rng,
        )

    async def aclose(self) -> None:
        """Cancel the runner and every poll in flight, and wait for them to end."""
        self._closed = True
        jobs = [*self._polls, *([self._runner] if self._runner else [])]
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
        for watch in list(self._watches.values()):
            self._fail(watch, RuntimeError("the omni_edit client was closed"))
