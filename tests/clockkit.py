"""A clock the test drives: the event-loop calls a timer needs (``time``, ``call_at``,
``call_later``), with time that moves only when the test calls ``advance``.

Code that takes a loop clock (the simulator's ``Timers``, the drivers' ``Watchdog``) runs its
timers on it; ``advance`` runs every callback that falls due, in due-time order, so a test
states "after 0.3 s" without waiting for 0.3 s to pass, and cannot lose a race to a busy machine.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any


class ManualHandle:
    def __init__(self, when: float) -> None:
        self.when = when
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._due: list[tuple[float, int, ManualHandle, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> ManualHandle:
        handle = ManualHandle(when)
        heapq.heappush(self._due, (when, next(self._seq), handle, callback, args))
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> ManualHandle:
        return self.call_at(self.now + delay, callback, *args)

    @property
    def pending(self) -> int:
        """Callbacks scheduled and not cancelled."""
        return sum(1 for entry in self._due if not entry[2].cancelled)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``; run what falls due on the way, each at its time
        (a callback may schedule more, which runs too if it falls due by the end)."""
        assert seconds >= 0, "time does not go back"
        end = self.now + seconds
        while self._due and self._due[0][0] <= end:
            when, _, handle, callback, args = heapq.heappop(self._due)
            if handle.cancelled:
                continue
            self.now = max(self.now, when)
            callback(*args)
        self.now = end
