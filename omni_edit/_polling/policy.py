"""When to poll a task next: a pure function of the policy and what was seen so far.

The API reports ``estimated_time`` at creation and a ``progress`` percentage while the
task runs (docs/architecture.md#poll-timing):

- **No rate yet, an estimate.** A task cannot finish much before its estimate, so the
  first poll waits for a good part of it, and later ones close in on it.
- **No rate yet, no estimate** (absent, or 0): nothing to go by, so the task is polled
  soon (within ``min_interval``) and then at doubling gaps up to ``max_interval``,
  until its progress moves.
- **A rate.** Progress since the first sight predicts the end. While consecutive
  readings disagree, each gap is half the predicted time left; once two agree, the poll
  goes to the predicted end itself (the earlier of the two: progress is reported in whole
  points, so a prediction from it errs late, and the earlier one is the closer), as it
  does at once when a single prediction is precise (far enough into the task). A task
  still running at its predicted end is polled at growing gaps from there.

Jitter keeps thousands of tasks from polling in lockstep; a poll at a predicted end has
none, as tasks' ends are their own. Every poll but one aimed at a predicted end may be
taken early, by its ``slack``, to share a batch read that goes out anyway.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import NamedTuple

from .._models import PollPolicy

__all__ = ["NextPoll", "next_poll"]

# The first poll comes at this fraction of the estimate: the provider's estimates are
# rough, and tasks have been seen to finish in half the time.
FIRST_POLL_FRACTION = 0.5
# While predictions disagree, each gap is this fraction of the predicted time left:
# halving converges on the end while never overshooting an accurate prediction.
REMAINING_FRACTION = 0.5
# Past its estimate with no progress to go by, a task is polled at this fraction of the
# time it has already taken: patient with slow tasks, quick with nearly done ones.
OVERDUE_FRACTION = 0.1
# Two predicted ends agree when they differ by at most this fraction of the time left
# (or by ``min_interval``, whichever is more).
AGREEMENT_FRACTION = 0.1
# A single prediction is trusted without a second when one more point of progress
# would move it by at most this fraction of ``min_interval``.
PRECISE_FRACTION = 0.5
# A poll that only gathers information may be taken this fraction of its gap early, to
# ride along in a batch read; a poll at a predicted end is never taken early.
SLACK_FRACTION = 0.5


class NextPoll(NamedTuple):
    """``delay`` seconds until the next poll, which may be taken up to ``slack`` seconds
    sooner; ``end`` is the predicted end (on the ``elapsed`` scale) to hand back next
    time, ``None`` while there is no rate; ``blind`` whether this delay was a guess with
    neither an estimate nor a rate (the count of those sets the backoff)."""

    delay: float
    slack: float
    end: float | None
    blind: bool = False


def next_poll(
    policy: PollPolicy,
    *,
    elapsed: float,
    progress: int,
    estimated_time: float | None,
    started_progress: int = 0,
    previous_end: float | None = None,
    blind_polls: int = 0,
    rng: Callable[[], float] = random.random,
) -> NextPoll:
    """When to poll a task next.

    ``elapsed`` is the time since the task's origin: its first sight, or its creation
    when that is known; ``progress`` the last value read and ``started_progress`` the
    value at the origin. ``previous_end`` is the ``end`` the last call returned;
    ``blind_polls`` how many polls so far were timed with nothing to go by.
    """
    low, high = policy.min_interval, policy.max_interval
    gained = progress - started_progress
    if 0 < progress < 100 and gained > 0 and elapsed > 0:
        end = elapsed * (100 - started_progress) / gained
        if previous_end is not None and elapsed >= previous_end:
            # Still running at a predicted end: back off from there.
            delay = max(low, elapsed - previous_end)
            return NextPoll(min(high, delay), 0.0, previous_end)
        tolerance = max(low, AGREEMENT_FRACTION * (end - elapsed))
        if previous_end is not None and abs(end - previous_end) <= tolerance:
            end = min(end, previous_end)
            return NextPoll(min(high, max(low, end - elapsed)), 0.0, end)
        if end / (gained + 1) <= low * PRECISE_FRACTION:
            # One more point of progress would move this prediction by little: it
            # needs no second opinion.
            return NextPoll(min(high, max(low, end - elapsed)), 0.0, end)
        delay = (end - elapsed) * REMAINING_FRACTION
        found: float | None = end
    else:
        found = None
        estimate = estimated_time if estimated_time and estimated_time > 0 else None
        if estimate is None:
            # Nothing to go by: half ``min_interval`` after the origin, then at doubling
            # gaps from ``min_interval``. Jitter only brings a poll forward, so even
            # after waiting for company (at most half ``min_interval``: the scheduler's
            # batch window) the first comes within ``min_interval`` of the origin.
            target = low * (2.0**blind_polls - 0.5)
            delay = target - elapsed if blind_polls == 0 else max(low, target - elapsed)
            delay = min(high, delay) * (1.0 - policy.jitter * rng())
            return NextPoll(max(0.0, delay), max(0.0, delay - low) * SLACK_FRACTION, None, True)
        if elapsed < estimate * FIRST_POLL_FRACTION:
            delay = estimate * FIRST_POLL_FRACTION - elapsed
        elif elapsed < estimate:
            delay = (estimate - elapsed) * REMAINING_FRACTION
        else:
            delay = elapsed * OVERDUE_FRACTION
    delay = min(high, max(low, delay))
    if policy.jitter:
        delay *= 1.0 + policy.jitter * (2.0 * rng() - 1.0)
    delay = max(0.0, delay)
    return NextPoll(delay, max(0.0, delay - low) * SLACK_FRACTION, found)
