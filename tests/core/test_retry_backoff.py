"""Marathon's retry back-off: initial, times factor per failure, capped."""

from __future__ import annotations

import math

import pytest

from scale_scheduler.daemon.scheduling.retry_backoff import RetryBackoff


def test_marathon_defaults() -> None:
    backoff = RetryBackoff()
    assert backoff.delay(0) == 0.0
    assert backoff.delay(1) == 1.0
    assert backoff.delay(2) == pytest.approx(1.15)
    assert backoff.delay(3) == pytest.approx(1.3225)
    assert backoff.delay(41) == pytest.approx(1.15**40)  # 267.9 s, still under the cap
    assert backoff.delay(42) == 300.0
    assert backoff.delay(10**9) == 300.0  # no overflow however many failures


def test_waits_never_shrink_and_never_pass_the_cap() -> None:
    backoff = RetryBackoff(initial=0.5, factor=2.0, maximum=60.0)
    delays = [backoff.delay(n) for n in range(1, 200)]
    assert delays == sorted(delays)
    assert max(delays) == 60.0
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]


def test_no_wait_when_initial_is_zero_and_constant_with_factor_one() -> None:
    assert RetryBackoff(initial=0.0).delay(5) == 0.0
    assert RetryBackoff(initial=3.0, factor=1.0, maximum=10.0).delay(50) == 3.0


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"initial": -1.0}, "initial must be between 0"),
        ({"factor": 0.5}, "factor must be between 1 and 100"),
        ({"initial": 10.0, "maximum": 5.0}, "maximum must be between initial"),
        ({"maximum": 1e9}, "maximum must be between initial"),
        ({"initial": math.nan}, "initial must be a finite number"),
        ({"factor": math.inf}, "factor must be a finite number"),
    ],
)
def test_problems_name_the_field(settings: dict[str, float], problem: str) -> None:
    found = RetryBackoff(**settings).problems()
    assert any(problem in text for text in found), found
    assert RetryBackoff().problems() == []
