import pytest

from omni_edit import PollPolicy
from omni_edit._polling.policy import next_poll

POLICY = PollPolicy(min_interval=1.0, max_interval=30.0, jitter=0.0)


def test_first_poll_waits_for_half_the_estimate() -> None:
    assert next_poll(POLICY, elapsed=0, progress=0, estimated_time=60).delay == 30


@pytest.mark.parametrize("estimate", [None, 0, 0.0])
def test_a_missing_or_zero_estimate_is_polled_soon_then_at_doubling_gaps(
    estimate: float | None,
) -> None:
    delays = []
    elapsed = 0.0
    for blind in range(7):
        plan = next_poll(
            POLICY, elapsed=elapsed, progress=0, estimated_time=estimate, blind_polls=blind
        )
        assert plan.blind
        assert plan.end is None
        delays.append(plan.delay)
        elapsed += plan.delay
    assert delays[0] <= POLICY.min_interval
    assert delays == [0.5, 1, 2, 4, 8, 16, 30]


@pytest.mark.parametrize("r", [0.0, 0.5, 0.999])
def test_a_blind_first_poll_stays_within_min_interval_whatever_the_jitter(r: float) -> None:
    policy = PollPolicy(min_interval=1.0, jitter=0.5)
    plan = next_poll(policy, elapsed=0, progress=0, estimated_time=None, rng=lambda: r)
    assert 0 < plan.delay <= 0.5


def test_a_blind_task_first_seen_late_is_read_at_once() -> None:
    assert next_poll(POLICY, elapsed=5, progress=0, estimated_time=None).delay == 0


def test_a_first_rate_halves_the_predicted_time_left() -> None:
    # 25% after 15 s: the end predicted at 60 s, 45 s from now: poll again in 22.5 s.
    plan = next_poll(POLICY, elapsed=15, progress=25, estimated_time=30)
    assert plan.end == 60
    assert plan.delay == 22.5
    assert plan.slack > 0


def test_agreeing_predictions_send_the_poll_to_the_predicted_end() -> None:
    first = next_poll(POLICY, elapsed=15, progress=25, estimated_time=30)
    # 62% after 37.5 s predicts 60.48 s: it agrees with 60, the earlier of the two is
    # kept (whole points of progress make a prediction late, never early).
    second = next_poll(POLICY, elapsed=37.5, progress=62, estimated_time=30, previous_end=first.end)
    assert second.end == 60
    assert second.delay == pytest.approx(22.5)
    assert second.slack == 0  # never taken early: it is aimed at the end


def test_disagreeing_predictions_keep_halving() -> None:
    plan = next_poll(POLICY, elapsed=30, progress=50, estimated_time=60, previous_end=100)
    assert plan.end == 60
    assert plan.delay == 15


def test_a_precise_single_prediction_needs_no_second() -> None:
    # 80% after 20 s: one point more would move the end (25 s) by 0.31 s.
    plan = next_poll(POLICY, elapsed=20, progress=80, estimated_time=30)
    assert plan.end == 25
    assert plan.delay == 5
    assert plan.slack == 0


def test_a_task_running_past_its_predicted_end_is_polled_at_growing_gaps() -> None:
    gaps = [
        next_poll(POLICY, elapsed=e, progress=99, estimated_time=30, previous_end=40).delay
        for e in (40.5, 42, 46)
    ]
    assert gaps == [1.0, 2.0, 6.0]


def test_gaps_are_bounded_by_the_policy() -> None:
    assert next_poll(POLICY, elapsed=59.9, progress=99, estimated_time=60).delay == 1.0
    assert next_poll(POLICY, elapsed=0, progress=0, estimated_time=3600).delay == 30.0


def test_overdue_task_without_progress_is_polled_in_proportion_to_its_age() -> None:
    assert next_poll(POLICY, elapsed=100, progress=0, estimated_time=60).delay == 10


def test_rate_counts_only_progress_seen_since_the_origin() -> None:
    plan = next_poll(POLICY, elapsed=10, progress=60, estimated_time=60, started_progress=50)
    assert plan.end == 50  # 10 points in 10 s: 40 s left, poll in half of it
    assert plan.delay == 20


@pytest.mark.parametrize("r", [0.0, 0.5, 1.0])
def test_jitter_spreads_within_its_fraction(r: float) -> None:
    policy = PollPolicy(min_interval=1, max_interval=30, jitter=0.2)
    delay = next_poll(policy, elapsed=0, progress=0, estimated_time=20, rng=lambda: r).delay
    assert 8 <= delay <= 12
    assert delay == pytest.approx(10 * (1 + 0.2 * (2 * r - 1)))


def test_policy_rejects_inverted_bounds_and_a_negative_window() -> None:
    with pytest.raises(ValueError, match="min_interval"):
        PollPolicy(min_interval=5, max_interval=1)
    with pytest.raises(ValueError, match="batch_window"):
        PollPolicy(batch_window=-1)
