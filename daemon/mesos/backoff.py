"""Exponential back-off with jitter for reconnecting to the Mesos master.

Pure arithmetic over an injectable random source: the caller sleeps. Delays double from
``initial`` up to ``maximum``; each is drawn uniformly from its upper half, so a fleet of
schedulers does not reconnect in lock-step and no delay is ever zero.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum <= 0:
            raise ValueError("back-off delays must be positive")
        self.initial = min(initial, maximum)
        self.maximum = maximum
        self.factor = factor
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The delay before the next attempt; grows with every call until ``reset``."""
        ceiling = min(self.maximum, self.initial * self.factor**self.attempts)
        if ceiling < self.maximum:
            self.attempts += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0
