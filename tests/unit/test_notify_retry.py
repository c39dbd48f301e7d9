"""The retry policy: exponential backoff with equal jitter (never sooner than half the
step, never later than the step), capped, and dead after max_attempts or a refusal that
retrying cannot change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.notify import retry
from softswitch.notify.retry import Outcome, RetryPolicy, after_attempt, http_outcome, smtp_outcome

NOW = datetime(2026, 12, 4, 4, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=5, initial_s=10.0, max_s=60.0)


@pytest.mark.parametrize(
    ("failures", "low", "high"), [(1, 5, 10), (2, 10, 20), (3, 20, 40), (4, 30, 60), (9, 30, 60)]
)
def test_the_wait_doubles_per_failure_up_to_the_cap(failures: int, low: float, high: float) -> None:
    assert POLICY.delay_s(failures, 0.0) == low
    assert POLICY.delay_s(failures, 0.999999) == pytest.approx(high, rel=1e-5)


@settings(deadline=None)
@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0, max_value=1, exclude_max=True))
def test_the_wait_is_always_within_half_the_step_and_the_step(failures: int, draw: float) -> None:
    step = min(60.0, 10.0 * 2.0 ** min(failures - 1, 62))
    assert step / 2 <= POLICY.delay_s(failures, draw) <= step


def test_a_failure_is_retried_after_the_backoff_until_the_last_attempt() -> None:
    failed = http_outcome(500)
    assert failed.reason == retry.HTTP_STATUS and failed.status == 500 and not failed.permanent
    first = after_attempt(failed, 1, POLICY, NOW, 0.5)
    assert first.state == "failed" and first.next_attempt_at == NOW + timedelta(seconds=7.5)
    assert first.delivered_at is None
    assert after_attempt(failed, 4, POLICY, NOW, 0.5).state == "failed"
    assert after_attempt(failed, 5, POLICY, NOW, 0.5).state == "dead"


def test_delivered_and_permanent_refusals() -> None:
    done = after_attempt(http_outcome(204), 3, POLICY, NOW, 0.5)
    assert done.state == "delivered" and done.delivered_at == NOW
    assert after_attempt(http_outcome(410), 1, POLICY, NOW, 0.5).state == "dead"
    assert http_outcome(302).reason == retry.HTTP_STATUS  # redirects are not followed
    assert after_attempt(smtp_outcome(550, "no such user"), 1, POLICY, NOW, 0.5).state == "dead"
    assert after_attempt(smtp_outcome(451, "try later"), 1, POLICY, NOW, 0.5).state == "failed"
    # the platform's own login refused: the operator fixes it, the delivery waits
    login = smtp_outcome(535, "bad credentials", about_the_message=False)
    assert (
        login.reason == retry.SMTP_TEMPORARY and after_attempt(login, 1, POLICY, NOW, 0.5).state == "failed"
    )
    assert after_attempt(Outcome.failed(retry.TIMEOUT, "slow"), 1, POLICY, NOW, 0).state == "failed"


def test_an_error_text_is_bounded() -> None:
    assert len(Outcome.failed(retry.PROTOCOL_ERROR, "x" * 2000).error) == 500
