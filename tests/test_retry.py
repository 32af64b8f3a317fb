import pytest

from omni_edit._constants import RETRY_AFTER_CAP_SECONDS
from omni_edit._http.limits import Pause, RetryBudget
from omni_edit._http.retry import backoff_delay, retry_delay


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    assert backoff_delay(0, rng=lambda: 0.999) == pytest.approx(0.4995)
    assert backoff_delay(3, rng=lambda: 1.0) == pytest.approx(4.0)
    assert backoff_delay(50, rng=lambda: 1.0) == pytest.approx(20.0)
    assert backoff_delay(5, rng=lambda: 0.0) == 0.0


def test_retry_after_wins_but_is_capped() -> None:
    assert retry_delay(0, 7.0) == 7.0
    assert retry_delay(0, 3600.0) == RETRY_AFTER_CAP_SECONDS


def test_budget_runs_dry_and_refills_on_success() -> None:
    budget = RetryBudget(capacity=12)
    assert budget.acquire() == 5
    assert budget.acquire() == 5
    assert budget.acquire() == 0  # 2 left: too few for a retry
    budget.release(5)
    assert budget.tokens == 7
    budget.release(0)  # a first-try success refunds 1
    assert budget.tokens == 8


def test_budget_charges_more_after_a_timeout_and_never_overfills() -> None:
    budget = RetryBudget(capacity=20)
    assert budget.acquire(after_timeout=True) == 10
    budget.release(10)
    budget.release(10)
    assert budget.tokens == 20


def test_pause_extends_but_never_shortens() -> None:
    now = [100.0]
    pause = Pause(clock=lambda: now[0])
    pause.pause_for(5)
    pause.pause_for(2)
    assert pause.remaining() == 5
    now[0] = 104.0
    assert pause.remaining() == pytest.approx(1.0)
