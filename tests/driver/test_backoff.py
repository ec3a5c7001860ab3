"""Exponential back-off with jitter."""

from __future__ import annotations

import random

import pytest

from scale_scheduler.daemon.mesos.backoff import Backoff


def test_delays_double_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    backoff = Backoff(0.5, 15.0, rng=random.Random(7))
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    for ceiling in ceilings:
        delay = backoff.next()
        assert ceiling / 2 <= delay <= ceiling


def test_jitter_varies_the_delays() -> None:
    delays = {Backoff(1.0, 15.0, rng=random.Random(seed)).next() for seed in range(20)}
    assert len(delays) > 10


def test_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(0.5, 15.0, rng=random.Random(1))
    for _ in range(10):
        backoff.next()
    assert backoff.next() > 7.5
    backoff.reset()
    assert backoff.next() <= 0.5


def test_initial_above_the_cap_is_capped() -> None:
    assert Backoff(30.0, 15.0).next() <= 15.0


def test_non_positive_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Backoff(0, 15.0)
