"""One heap of due callbacks driven by a single asyncio timer handle.

Owns time-ordered work for the whole simulated cluster (task transitions, update resends, offer
timeouts, failover timeouts) so that 100,000 tasks cost one heap, not 100,000 timers. Entries
cannot be cancelled: callers pass a generation number and ignore stale firings.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class Timers:
    """`at(when, fn, *args)` runs `fn(*args)` once the loop clock reaches `when`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._handle_when = float("inf")
        self._closed = False

    def now(self) -> float:
        return self._loop.time()

    @staticmethod
    def wall() -> float:
        """Wall-clock seconds, for `TaskStatus.timestamp` and operator TimeInfos."""
        return time.time()

    def at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        if self._closed:
            return
        heapq.heappush(self._heap, (when, next(self._seq), fn, args))
        if when < self._handle_when:
            self._arm(when)

    def after(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self.at(self._loop.time() + delay, fn, *args)

    def __len__(self) -> int:
        return len(self._heap)

    def close(self) -> None:
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._heap.clear()

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle_when = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._handle_when = float("inf")
        now = self._loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now and not self._closed:
            _, _, fn, args = heapq.heappop(heap)
            try:
                fn(*args)
            except Exception:
                log.exception("sim_timer_callback_failed", callback=getattr(fn, "__name__", fn))
        if heap and not self._closed:
            self._arm(heap[0][0])
