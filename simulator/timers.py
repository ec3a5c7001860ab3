"""Due callbacks of the whole simulated cluster, driven by a single asyncio timer handle.

Owns time-ordered work (task transitions, update resends, offer timeouts, failover timeouts)
so that 100,000 tasks cost no asyncio timer each. Work due after a delay goes to a FIFO lane
of that delay (due times in a lane only grow: appending and popping are O(1)); the few
delays beyond `MAX_LANES`, and absolute times, go to one heap. Firing merges lanes and heap in
due-time order (a lane keeps insertion order among equal times), every callback due by now in
one go. Entries cannot be cancelled: callers pass a generation number and ignore stale firings.
The clock is the running event loop; a test passes one it advances itself.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)

MAX_LANES = 16
"""Distinct delays with a lane of their own (task defaults, resend backoffs, timeouts)."""

_Lane = deque[tuple[float, Callable[..., Any], tuple[Any, ...]]]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class LoopClock(Protocol):
    """What the timers need of an event loop (`asyncio.AbstractEventLoop` is one)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> Cancellable: ...


class Timers:
    """`at(when, fn, *args)` runs `fn(*args)` once the loop clock reaches `when`."""

    def __init__(self, loop: LoopClock) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._lanes: dict[float, _Lane] = {}
        self._version = 0  # bumped when the set of lanes changes
        self._firing = False
        self._seq = itertools.count()
        self._handle: Cancellable | None = None
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
        if when < self._handle_when and not self._firing:
            self._arm(when)

    def after(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        when = self._loop.time() + delay
        lane = self._lanes.get(delay)
        if lane is None:
            lane = self._new_lane(delay)
            if lane is None:
                self.at(when, fn, *args)
                return
        if self._closed:
            return
        lane.append((when, fn, args))
        if when < self._handle_when and not self._firing:
            self._arm(when)

    def _new_lane(self, delay: float) -> _Lane | None:
        lanes = self._lanes
        if len(lanes) >= MAX_LANES:
            for key in [k for k, lane in lanes.items() if not lane]:
                del lanes[key]
            self._version += 1
            if len(lanes) >= MAX_LANES:
                return None
        lane: _Lane = deque()
        lanes[delay] = lane
        self._version += 1
        return lane

    def __len__(self) -> int:
        return len(self._heap) + sum(len(lane) for lane in self._lanes.values())

    def close(self) -> None:
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._heap.clear()
        self._lanes.clear()

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle_when = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._handle_when = float("inf")
        self._firing = True  # callbacks only queue; the next arm happens below
        now = self._loop.time()
        heap = self._heap
        inf = float("inf")
        when = inf
        version = -1
        lanes: list[_Lane] = []
        try:
            while not self._closed:
                if version != self._version:
                    version = self._version
                    lanes = list(self._lanes.values())
                when = heap[0][0] if heap else inf
                best: _Lane | None = None
                for lane in lanes:
                    if lane and lane[0][0] < when:
                        when = lane[0][0]
                        best = lane
                if when > now:
                    break
                if best is None:
                    _, _, fn, args = heapq.heappop(heap)
                else:
                    _, fn, args = best.popleft()
                try:
                    fn(*args)
                except Exception:
                    log.exception("sim_timer_callback_failed", callback=getattr(fn, "__name__", fn))
        finally:
            self._firing = False
        if when < inf and not self._closed:
            self._arm(when)
