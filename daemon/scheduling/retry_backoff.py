"""How long a task waits before its next attempt after a failure of its own. Pure.

Marathon's back-off: the first retry waits ``initial`` seconds, each further failure multiplies
the wait by ``factor``, and no wait exceeds ``maximum`` (defaults 1 s, 1.15, 300 s:
``scheduler.retry_backoff_*``, overridable per task). Only ``task`` failures wait
(``failure_classes``); a failure of the cluster retries at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_BACKOFF_SECONDS = 86_400.0
"""The longest wait anyone may configure: a day."""


@dataclass(frozen=True, slots=True)
class RetryBackoff:
    initial: float = 1.0
    factor: float = 1.15
    maximum: float = 300.0

    def problems(self) -> list[str]:
        """What is wrong with these settings, one phrase per field (empty: usable)."""
        found = []
        for name in ("initial", "factor", "maximum"):
            value = getattr(self, name)
            if not math.isfinite(value):
                found.append(f"{name} must be a finite number")
        if found:
            return found
        if not 0 <= self.initial <= MAX_BACKOFF_SECONDS:
            found.append(f"initial must be between 0 and {MAX_BACKOFF_SECONDS:g} seconds")
        if not 1 <= self.factor <= 100:
            found.append("factor must be between 1 and 100")
        if not self.initial <= self.maximum <= MAX_BACKOFF_SECONDS:
            found.append(f"maximum must be between initial and {MAX_BACKOFF_SECONDS:g} seconds")
        return found

    def delay(self, task_failures: int) -> float:
        """The wait before the attempt that follows the ``task_failures``-th failure."""
        if task_failures <= 0 or self.initial <= 0:
            return 0.0
        steps = task_failures - 1
        # Compared in logarithms: factor ** steps overflows long before steps gets large.
        if self.factor > 1 and steps * math.log(self.factor) >= math.log(
            self.maximum / self.initial
        ):
            return self.maximum
        return min(self.maximum, self.initial * self.factor**steps)
