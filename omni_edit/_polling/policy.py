"""When to poll a task next: a pure function of the policy and what was seen so far.

The API reports ``estimated_time`` at creation and a ``progress`` percentage while the
task runs. A task cannot finish much before its estimate, so the first poll waits for a
good part of it; once progress moves, the observed rate predicts the end, and each gap
halves the predicted remaining time, converging on completion in a handful of polls
instead of one every second. Jitter keeps thousands of tasks from polling in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .._models import PollPolicy

__all__ = ["next_poll_delay"]

# The first poll comes at this fraction of the estimate: the provider's estimates are
# rough, and tasks have been seen to finish in half the time.
FIRST_POLL_FRACTION = 0.5
# Each later gap is this fraction of the predicted time left: halving converges on the
# end while never overshooting an accurate prediction.
REMAINING_FRACTION = 0.5
# Past its estimate with no progress to go by, a task is polled at this fraction of the
# time it has already taken: patient with slow tasks, quick with nearly done ones.
OVERDUE_FRACTION = 0.1


def next_poll_delay(
    policy: PollPolicy,
    *,
    elapsed: float,
    progress: int,
    estimated_time: float | None,
    started_progress: int = 0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds until the next poll of a task.

    ``elapsed`` is the time since the task was first seen, ``progress`` the last value
    read and ``started_progress`` the value at first sight, so a task first seen half
    done is rated from there.
    """
    estimate = estimated_time if estimated_time and estimated_time > 0 else None
    estimate = estimate or policy.default_estimate
    gained = progress - started_progress
    if 0 < progress < 100 and gained > 0 and elapsed > 0:
        remaining = (100 - progress) * elapsed / gained
        delay = remaining * REMAINING_FRACTION
    elif elapsed < estimate * FIRST_POLL_FRACTION:
        delay = estimate * FIRST_POLL_FRACTION - elapsed
    elif elapsed < estimate:
        delay = (estimate - elapsed) * REMAINING_FRACTION
    else:
        delay = elapsed * OVERDUE_FRACTION
    delay = min(policy.max_interval, max(policy.min_interval, delay))
    if policy.jitter:
        delay *= 1.0 + policy.jitter * (2.0 * rng() - 1.0)
    return max(0.0, delay)
