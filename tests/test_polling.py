import pytest

from omni_edit import PollPolicy
from omni_edit._polling.policy import next_poll_delay

POLICY = PollPolicy(min_interval=1.0, max_interval=30.0, jitter=0.0)


def test_first_poll_waits_for_half_the_estimate() -> None:
    assert next_poll_delay(POLICY, elapsed=0, progress=0, estimated_time=60) == 30


def test_default_estimate_stands_in_when_the_api_gives_none() -> None:
    policy = PollPolicy(default_estimate=20, jitter=0)
    assert next_poll_delay(policy, elapsed=0, progress=0, estimated_time=None) == 10


def test_progress_rate_predicts_the_end_and_gaps_halve() -> None:
    # 50% after 30 s: 30 s left, poll again in 15 s.
    assert next_poll_delay(POLICY, elapsed=30, progress=50, estimated_time=60) == 15
    assert next_poll_delay(POLICY, elapsed=45, progress=75, estimated_time=60) == 7.5


def test_gaps_are_bounded_by_the_policy() -> None:
    assert next_poll_delay(POLICY, elapsed=59.9, progress=99, estimated_time=60) == 1.0
    assert next_poll_delay(POLICY, elapsed=0, progress=0, estimated_time=3600) == 30.0


def test_overdue_task_without_progress_is_polled_in_proportion_to_its_age() -> None:
    assert next_poll_delay(POLICY, elapsed=100, progress=0, estimated_time=60) == 10


def test_rate_counts_only_progress_seen_since_first_sight() -> None:
    delay = next_poll_delay(POLICY, elapsed=10, progress=60, estimated_time=60, started_progress=50)
    assert delay == 20  # 10 points in 10 s: 40 s left, half of it


@pytest.mark.parametrize("r", [0.0, 0.5, 1.0])
def test_jitter_spreads_within_its_fraction(r: float) -> None:
    policy = PollPolicy(min_interval=1, max_interval=30, jitter=0.2)
    delay = next_poll_delay(policy, elapsed=0, progress=0, estimated_time=20, rng=lambda: r)
    assert 8 <= delay <= 12
    assert delay == pytest.approx(10 * (1 + 0.2 * (2 * r - 1)))


def test_policy_rejects_inverted_bounds() -> None:
    with pytest.raises(ValueError, match="min_interval"):
        PollPolicy(min_interval=5, max_interval=1)
