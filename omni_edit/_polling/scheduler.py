"""One poll scheduler per client: every wait shares it.

A single runner keeps a heap of (next poll time, task id). A watched task costs a slot
in a dict and a heap entry, not a coroutine: ``wait`` and ``edit_many`` attach
*listeners* (plain callables) that the scheduler calls whenever the task changes. The
runner starts with the first watch, polls due tasks concurrently through the client's
limiter, and ends by itself when nothing is watched; ``aclose`` cancels it.

Guarantees: a task with no listener left is never polled again; a 429 (the transport's
client-wide pause) holds every poll back; a callback or any other fresh read of a task
(``deliver``) wakes its listeners at once and reschedules its next poll; a poll that
fails, however, either is tried again (a transient error) or ends the task's waits
with its error: no failure silently stops the polling of a task.

A ``wait`` (``follow``) does more than listen: while it waits it offers to run its
task's polls itself. A due poll is then handed to the parked waiter, which was going to
wake for the answer anyway, instead of to a new task; a poll due at once (no
``estimated_time`` to wait for) runs inline, with no hop through the runner at all. A
waiter that leaves mid-poll gives the poll back, and the runner hands it to another
waiter or to a task of its own.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._exceptions import (
    APIConnectionError,
    RateLimitError,
    ServerError,
)
from .._http.limits import Pause
from .._http.retry import backoff_delay
from .._models import PollPolicy, Task
from .policy import next_poll_delay

__all__ = ["Follower", "Listener", "PollScheduler"]

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
        "turn",
    )

    def __init__(self, task_id: str, task: Task | None, now: float, callback: bool) -> None:
        self.task_id = task_id
        self.task = task
        self.listeners: list[Listener] = []
        self.due = 0.0
        self.polling = False
        self.poll: asyncio.Task[None] | None = None
        # A parked follower's future: resolving it with True hands that follower the
        # next due poll (see ``PollScheduler.follow``).
        self.turn: asyncio.Future[bool] | None = None
        self.failures = 0
        self.callback = callback
        # Progress is rated from the first observation onwards, and the first estimate is
        # kept: docs/api.md#task-object does not say whether later ones mean total or
        # remaining time.
        self.first_at = now
        self.first_progress = task.progress if task else 0
        self.estimate = task.estimated_time if task else None


class Follower:
    """A waiter's view of one task: the listener ``follow`` registers, keeping the latest
    state (for a timeout's report) and waking the waiter when it has something to do."""

    __slots__ = ("ended", "error", "latest", "reports", "signal")

    def __init__(self, task: Task | None, *, reports: bool) -> None:
        self.latest = task
        self.error: BaseException | None = None
        self.ended = False
        # A waiter that reports progress wakes on every change; one that does not wakes
        # only at the end (or for a poll turn).
        self.reports = reports
        self.signal: asyncio.Future[bool] | None = None

    def __call__(self, task: Task | None, error: BaseException | None) -> None:
        if self.ended:
            return
        if error is not None:
            self.error, self.ended = error, True
        elif task is not None:
            self.latest = task
            self.ended = task.is_terminal
        signal = self.signal
        if (self.ended or self.reports) and signal is not None and not signal.done():
            signal.set_result(False)


class PollScheduler:
    """Polls watched tasks at adaptive intervals and tells their listeners.

    ``fetch`` reads one task (``Client.get``); ``pause`` is the client-wide 429 gate
    (``ClientLimits.pause``).
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

    def __len__(self) -> int:
        return len(self._watches)

    def __contains__(self, task_id: object) -> bool:
        """Whether ``task_id`` is watched (some wait or batch is following it)."""
        return task_id in self._watches

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
        self._attach(task_id, listener, task, callback, inline=False)

    def _attach(
        self, task_id: str, listener: Listener, task: Task | None, callback: bool, *, inline: bool
    ) -> _Watch | None:
        """``watch``; with ``inline``, a first poll that is due at once is not scheduled
        but returned, marked as running, for the caller to run itself."""
        if self._closed:
            raise RuntimeError("this omni_edit client is closed")
        watch = self._watches.get(task_id)
        if watch is None:
            now = self._clock()
            watch = self._watches[task_id] = _Watch(task_id, task, now, callback)
            if task is not None and task.is_terminal:
                listener(task, None)
                del self._watches[task_id]
                return None
            watch.listeners.append(listener)
            due = now if task is None else now + self._delay(watch, now)
            if inline and due <= now and not self._pause.remaining():
                watch.polling = True
                watch.due = now
                return watch
            self._schedule(watch, due)
            return None
        if callback:
            watch.callback = True
        watch.listeners.append(listener)
        return None

    async def follow(
        self,
        task_id: str,
        follower: Follower,
        *,
        callback: bool = False,
        on_change: Callable[[Task], Any] | None = None,
    ) -> Task:
        """Wait as ``follower`` until ``task_id`` ends, and return its last state.

        Due polls of the task are run here, in the waiter's own coroutine, rather than in
        a task of their own. ``on_change(task)`` (sync or async) hears every change.
        Raises the error that ended the watch (a failed poll, a closed client). If the
        waiter is cancelled mid-poll, the poll goes back to the runner.
        """
        held = self._attach(task_id, follower, follower.latest, callback, inline=True)
        reported = follower.latest
        loop = asyncio.get_running_loop()
        try:
            while True:
                if held is not None:
                    if follower.ended:
                        break
                    await self._poll(held)
                    held = None
                latest = follower.latest
                if on_change is not None and latest is not None and latest != reported:
                    reported = latest
                    result = on_change(latest)
                    if inspect.isawaitable(result):
                        await result
                    continue  # the task may have moved on meanwhile
                if follower.ended:
                    break
                watch = self._watches.get(task_id)
                if watch is None:  # only ever ended through ``follower``; defensive
                    raise RuntimeError(f"task {task_id} is no longer watched")
                turn: asyncio.Future[bool] = loop.create_future()
                follower.signal = turn
                if watch.turn is None or watch.turn.done():
                    watch.turn = turn
                try:
                    mine = await turn
                except BaseException:
                    if turn.done() and not turn.cancelled() and turn.result():
                        held = watch  # handed a poll at the last moment: give it back
                    raise
                finally:
                    follower.signal = None
                    if watch.turn is turn:
                        watch.turn = None
                if mine:
                    held = watch
        finally:
            if held is not None:
                self._release(held)
            self.unwatch(task_id, follower)
        if follower.error is not None:
            raise follower.error
        assert follower.latest is not None  # ended means a terminal state or an error
        return follower.latest

    def _release(self, watch: _Watch) -> None:
        """A follower leaves without running (or finishing) the poll it held: the runner
        hands it to another follower or to a task of its own."""
        watch.polling = False
        if self._watches.get(watch.task_id) is watch:
            self._schedule(watch, self._clock())

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
            self._forget(watch)
            if watch.poll is not None:
                watch.poll.cancel()  # nobody waits for its answer any more

    def deliver(self, task: Task) -> None:
        """A fresh read of ``task`` (a verified callback, a user's ``get``): tell its
        listeners now and time the next poll from this observation."""
        watch = self._watches.get(task.id)
        if watch is not None:
            self._update(watch, task)

    # --- Runner -------------------------------------------------------------------------

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
                    turn = watch.turn
                    watch.turn = None
                    if turn is not None and not turn.done():
                        turn.set_result(True)  # the parked follower runs it
                        continue
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
        except Exception as exc:
            # Anything else ends the waits on this task with the error, whatever it is (a
            # 404, a malformed answer, a bug): a poll that died unreported would leave
            # the task marked as being polled, never polled again, and its waits hung.
            watch.poll = None
            watch.polling = False
            self._fail(watch, exc)
            return
        watch.polling = False
        watch.failures = 0
        # ``fetch`` may have delivered this very answer already (``Client._read`` does).
        if watch.task is not task and self._watches.get(watch.task_id) is watch:
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
            self._forget(watch)
        else:
            self._schedule(watch, now + self._delay(watch, now))
        if previous != task:
            for listener in list(watch.listeners):
                listener(task, None)

    def _forget(self, watch: _Watch) -> None:
        if self._watches.get(watch.task_id) is watch:
            del self._watches[watch.task_id]
            if not self._watches:
                self._wakeup.set()  # let an idle runner end now

    def _fail(self, watch: _Watch, exc: BaseException) -> None:
        self._forget(watch)
        for listener in list(watch.listeners):
            listener(None, exc)

    def _schedule(self, watch: _Watch, due: float) -> None:
        watch.due = due
        heapq.heappush(self._heap, (due, watch.task_id))
        if self._runner is None:
            if not self._closed:
                self._runner = asyncio.get_running_loop().create_task(
                    self._run(), name="omni_edit poll scheduler"
                )
        elif self._heap[0][0] == due:
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
