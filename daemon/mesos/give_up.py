"""When the driver stops trying to subscribe: ``mesos.give_up_after`` seconds without a
subscription (0: never). The daemon then exits with status 6 (``SUBSCRIPTION_LOST``).

Pure arithmetic over an injectable time source; the resubscribe loop asks it between attempts.
"""

from __future__ import annotations

from collections.abc import Callable


class GiveUpDeadline:
    """Counts from the start, and again from the end of every subscription."""

    def __init__(self, limit: float, now: Callable[[], float]) -> None:
        self.limit = limit
        self._now = now
        self._since = now()

    def restart(self) -> None:
        """A subscription just ended: the count starts again."""
        self._since = self._now()

    def remaining(self) -> float | None:
        """Seconds left before giving up; ``None`` when the limit is off."""
        if self.limit <= 0:
            return None
        return max(0.0, self._since + self.limit - self._now())

    @property
    def expired(self) -> bool:
        return self.remaining() == 0.0

    def bound(self, delay: float | None) -> float | None:
        """A wait of ``delay`` seconds (``None``: unbounded), cut short at the deadline."""
        remaining = self.remaining()
        if remaining is None:
            return delay
        return remaining if delay is None else min(delay, remaining)
