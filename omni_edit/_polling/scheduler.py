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

Polls go out through a ``TaskReader``, which sends the reads asked for in one turn of
the loop as one batch read (docs/api.md#batch-reads). To give it company, a due poll
waits for the polls that fall due within ``PollPolicy.batch_window`` after it (never
more than half ``min_interval``), and they all go when the last of them is due; the
request's free places are filled with polls that are due soon and may be taken early
(their ``slack``): polls that only gather information, never one aimed at a task's
predicted end.
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

from .._constants import TASKS_BATCH_MAX_IDS
from .._exceptions import (
    APIConnectionError,
    RateLimitError,
    ServerError,
)
from .._http.limits import Pause
from .._http.retry import backoff_delay
from .._models import PollPolicy, Task
from .policy import next_poll
from .reader import BatchRead, TaskReader

__all__ = ["Follower", "Listener", "PollScheduler"]

logger = logging.getLogger("omni_edit")

Listener = Callable[[Task | None, BaseException | None], None]
"""Called with the task's new state, or with the error that ends the watch."""

# Transient poll failures (after the transport's own retries) tolerated before the
# error is handed to the listeners; a long outage still ends waits, a blip does not.
MAX_CONSECUTIVE_POLL_FAILURES = 5
# A task first seen already under way is rated from its ``created`` stamp (the server's
# clock, in whole seconds) when it is at least this old, so that the stamp's rounding
# and a small clock skew matter little, and at most this old (no task runs a day).
CREATED_MIN_AGE_SECONDS = 5.0
CREATED_MAX_AGE_SECONDS = 86_400.0
# Heap entries looked at to find when a batch read is full enough to go.
_SEND_AT_VISITS = 4 * TASKS_BATCH_MAX_IDS


class _Watch:
    __slots__ = (
        "blind",
        "callback",
        "due",
        "early",
        "end",
        "estimate",
        "failures",
        "first_at",
        "first_progress",
        "listeners",
        "origin_known",
        "poll",
        "polling",
        "task",
        "task_id",
        "turn",
    )

    def __init__(
        self, task_id: str, task: Task | None, now: float, callback: bool, created_at: float | None
    ) -> None:
        self.task_id = task_id
        self.task = task
        self.listeners: list[Listener] = []
        self.due = 0.0
        # ``due`` less the slack it may be taken early by; equal to ``due`` when none.
        self.early = 0.0
        self.polling = False
        self.poll: asyncio.Task[None] | None = None
        # A parked follower's future: resolving it with True hands that follower the
        # next due poll (see ``PollScheduler.follow``).
        self.turn: asyncio.Future[bool] | None = None
        self.failures = 0
        self.callback = callback
        # Progress is rated from the origin (the first observation, or the task's
        # creation: ``PollScheduler._origin``) onwards, and the first estimate is kept:
        # docs/api.md#task-object does not say whether later ones mean total or
        # remaining time.
        self.first_at = now if created_at is None else created_at
        self.first_progress = 0
        self.origin_known = created_at is not None
        self.estimate = task.estimated_time if task else None
        # The predicted end (on the origin's scale) and the polls timed blind so far:
        # the policy's memory (``next_poll``).
        self.end: float | None = None
        self.blind = 0


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

    ``fetch`` reads one task (``Client.get``) and ``fetch_many`` several in one batch
    request (``None``: no batch reads); ``pause`` is the client-wide 429 gate
    (``ClientLimits.pause``). ``clock`` times polls, ``wall`` is Unix time (to read a
    task's ``created`` stamp against).
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[Task]],
        policy: PollPolicy,
        pause: Pause,
        *,
        fetch_many: BatchRead | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self._reader = TaskReader(fetch, fetch_many)
        self._pause = pause
        self._clock = clock
        self._wall = wall
        self._rng = rng
        self._watches: dict[str, _Watch] = {}
        self._heap: list[tuple[float, str]] = []
        # (early, task id) of polls with slack: ride-alongs for a batch read.
        self._early: list[tuple[float, str]] = []
        self._runner: asyncio.Task[None] | None = None
        self._polls: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._watches)

    def __contains__(self, task_id: object) -> bool:
        """Whether ``task_id`` is watched (some wait or batch is following it)."""
        return task_id in self._watches

    @property
    def batching(self) -> bool:
        """Whether polls go out as batch reads (until a deployment turns out to have none)."""
        return self._reader.batching

    # --- Watching -----------------------------------------------------------------------

    def watch(
        self,
        task_id: str,
        listener: Listener,
        *,
        task: Task | None = None,
        callback: bool = False,
        created_at: float | None = None,
    ) -> None:
        """Start telling ``listener`` about ``task_id``. ``task`` is its last known state
        (its first poll is then timed from ``estimated_time``); without it the task is
        read at once. ``callback`` marks a task whose end will arrive by callback, which
        is then polled only as a slow safety net. ``created_at`` is when the task was
        created (on the scheduler's clock), when known: its progress is rated from then."""
        self._attach(task_id, listener, task, callback, created_at, inline=False)

    def _attach(
        self,
        task_id: str,
        listener: Listener,
        task: Task | None,
        callback: bool,
        created_at: float | None,
        *,
        inline: bool,
    ) -> _Watch | None:
        """``watch``; with ``inline``, a first poll that is due at once is not scheduled
        but returned, marked as running, for the caller to run itself."""
        if self._closed:
            raise RuntimeError("this omni_edit client is closed")
        watch = self._watches.get(task_id)
        if watch is None:
            now = self._clock()
            watch = self._watches[task_id] = _Watch(task_id, task, now, callback, created_at)
            if task is not None and task.is_terminal:
                listener(task, None)
                del self._watches[task_id]
                return None
            watch.listeners.append(listener)
            if task is None:
                due, slack = now, 0.0
            else:
                self._origin(watch, task, now)
                delay, slack = self._plan(watch, now)
                due = now + delay
            if inline and due <= now and not self._pause.remaining():
                watch.polling = True
                watch.due = watch.early = now
                return watch
            self._schedule(watch, due, slack)
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
        created_at: float | None = None,
    ) -> Task:
        """Wait as ``follower`` until ``task_id`` ends, and return its last state.

        Due polls of the task are run here, in the waiter's own coroutine, rather than in
        a task of their own. ``on_change(task)`` (sync or async) hears every change.
        Raises the error that ended the watch (a failed poll, a closed client). If the
        waiter is cancelled mid-poll, the poll goes back to the runner. ``created_at`` as
        for ``watch``.
        """
        held = self._attach(task_id, follower, follower.latest, callback, created_at, inline=True)
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
                self._drop_stale()
                send_at = self._send_at()
                if send_at is not None and send_at <= now:
                    taken = 0
                    while heap and heap[0][0] <= now:
                        due, task_id = heapq.heappop(heap)
                        watch = self._watches.get(task_id)
                        if watch is None or watch.due != due or watch.polling:
                            continue
                        self._start(watch)
                        taken += 1
                    if taken and self._reader.batching:
                        self._ride_along(now, -taken % TASKS_BATCH_MAX_IDS)
                    self._drop_stale()
                    send_at = self._send_at()
                self._wakeup.clear()
                # A timer that sets the event, not a timeout scope: this loop turns once
                # per poll, and a plain timer handle is the cheapest way to sleep here.
                timer = (
                    asyncio.get_running_loop().call_later(send_at - now, self._wakeup.set)
                    if send_at is not None
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

    def _send_at(self) -> float | None:
        """When the next polls go out (``None``: none is scheduled).

        Without batch reads, when the first falls due. With them, that poll waits for
        those due within the window after it (``PollPolicy.batch_window``, at most half
        ``min_interval``), up to a full request, and all go when the last of them falls
        due: no poll waits longer than the window, and none goes before it is due.
        """
        heap = self._heap
        if not heap:
            return None
        first = heap[0][0]
        if not self._reader.batching or len(heap) < 2:
            return first
        cutoff = first + min(self.policy.batch_window, self.policy.min_interval / 2)
        # The entries due by the cutoff are a subtree at the heap's top: walk it, with
        # stale entries (their children may be live) but counting only live ones.
        dues: list[float] = []
        stack = [0]
        visited = 0
        while stack and visited < _SEND_AT_VISITS:
            i = stack.pop()
            due, task_id = heap[i]
            visited += 1
            watch = self._watches.get(task_id)
            if watch is not None and watch.due == due and not watch.polling:
                dues.append(due)
            stack.extend(
                c for c in (2 * i + 1, 2 * i + 2) if c < len(heap) and heap[c][0] <= cutoff
            )
        if stack:  # more due by the cutoff than worth counting: a full request at least
            return first
        if not dues:  # only a poll still running: its entry is passed over
            return first
        dues.sort()
        return dues[min(len(dues), TASKS_BATCH_MAX_IDS) - 1]

    def _drop_stale(self) -> None:
        """Pop entries left behind by rescheduled, running or forgotten watches, so the
        tops of both heaps are polls that are really waiting."""
        heap = self._heap
        while heap:
            due, task_id = heap[0]
            watch = self._watches.get(task_id)
            if watch is not None and watch.due == due:
                break
            heapq.heappop(heap)
        early = self._early
        if not self._reader.batching:
            early.clear()
        while early:
            when, task_id = early[0]
            watch = self._watches.get(task_id)
            if watch is not None and watch.early == when and not watch.polling:
                break
            heapq.heappop(early)

    def _ride_along(self, now: float, room: int) -> None:
        """Start up to ``room`` polls that are not due yet but may be taken early: they
        fill free places in the batch read about to go out."""
        early = self._early
        while room and early and early[0][0] <= now:
            when, task_id = heapq.heappop(early)
            watch = self._watches.get(task_id)
            if watch is None or watch.early != when or watch.polling or when >= watch.due:
                continue
            self._start(watch)
            room -= 1

    def _start(self, watch: _Watch) -> None:
        """Run the watch's poll: in its parked follower if it has one, else in a task."""
        watch.polling = True
        turn = watch.turn
        watch.turn = None
        if turn is not None and not turn.done():
            turn.set_result(True)  # the parked follower runs it
            return
        poll = asyncio.get_running_loop().create_task(self._poll(watch))
        watch.poll = poll
        self._polls.add(poll)
        poll.add_done_callback(self._poll_done)

    def _poll_done(self, poll: asyncio.Task[None]) -> None:
        self._polls.discard(poll)
        self._wakeup.set()

    async def _poll(self, watch: _Watch) -> None:
        try:
            task = await self._reader.read(watch.task_id)
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
        if self._watches.get(watch.task_id) is not watch:
            return
        if watch.task is not task:
            self._update(watch, task)
        elif not task.is_terminal:
            # ``fetch`` delivered this very answer already (``Client._read`` does), and
            # the poll it scheduled may have fallen due, and been passed over, while
            # this one ran: put it back (a second entry for it is harmless).
            self._schedule(watch, watch.due, watch.due - watch.early)

    # --- State ------------------------------------------------------------------------------

    def _update(self, watch: _Watch, task: Task) -> None:
        now = self._clock()
        previous = watch.task
        watch.task = task
        if previous is None:
            self._origin(watch, task, now)
        if watch.estimate is None:
            watch.estimate = task.estimated_time
        if task.is_terminal:
            self._forget(watch)
        else:
            delay, slack = self._plan(watch, now)
            self._schedule(watch, now + delay, slack)
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

    def _schedule(self, watch: _Watch, due: float, slack: float = 0.0) -> None:
        watch.due = due
        watch.early = due - slack
        heapq.heappush(self._heap, (due, watch.task_id))
        if slack > 0 and self._reader.batching:
            heapq.heappush(self._early, (watch.early, watch.task_id))
        if self._runner is None:
            if not self._closed:
                self._runner = asyncio.get_running_loop().create_task(
                    self._run(), name="omni_edit poll scheduler"
                )
        elif self._heap[0][0] == due:
            self._wakeup.set()

    def _origin(self, watch: _Watch, task: Task, now: float) -> None:
        """Where the task's progress is rated from: its first sight, or, for a task first
        seen already under way, its creation (the server's ``created``), which gives a
        rate from the first reading on instead of the second. A creation time given by
        the caller (this client created the task) is kept: it is on our own clock."""
        if watch.origin_known:
            return
        watch.first_at, watch.first_progress = now, task.progress
        if task.progress > 0 and task.created is not None:
            age = self._wall() - task.created.timestamp()
            if CREATED_MIN_AGE_SECONDS <= age <= CREATED_MAX_AGE_SECONDS:
                watch.first_at, watch.first_progress = now - age, 0

    def _plan(self, watch: _Watch, now: float) -> tuple[float, float]:
        """The delay until the watch's next poll, and the slack it may be taken early by."""
        if watch.callback:
            return self.policy.callback_interval, 0.0
        task = watch.task
        plan = next_poll(
            self.policy,
            elapsed=now - watch.first_at,
            progress=task.progress if task else 0,
            estimated_time=watch.estimate,
            started_progress=watch.first_progress,
            previous_end=watch.end,
            blind_polls=watch.blind,
            rng=self._rng,
        )
        watch.end = plan.end
        if plan.blind:
            watch.blind += 1
        return plan.delay, plan.slack

    async def aclose(self) -> None:
        """Cancel the runner and every poll in flight, and wait for them to end."""
        self._closed = True
        jobs = [*self._polls, *([self._runner] if self._runner else [])]
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
        await self._reader.aclose()
        for watch in list(self._watches.values()):
            self._fail(watch, RuntimeError("the omni_edit client was closed"))
