"""Flow control on launches: how many more tasks an offer pass may launch. Pure (a clock is
passed in), in the spirit of Marathon's launch tokens.

A task is *in flight* from its launch intent until an update moves it out of LAUNCHING,
STAGING or STARTING (RUNNING, or an end). Every launch costs status updates the daemon must
store and acknowledge, and an agent sends a task's next update only once the previous one is
acknowledged (resending it after 10 s). Launching faster than updates are handled only moves
the backlog into memory, delays every acknowledgement and ends in resends and stalls. So:

- the tasks in flight are bounded: never more than ``max_in_flight``
  (``scheduler.max_in_flight``; 0 turns flow control off); within it, about ``HORIZON``
  seconds' worth of the measured confirmation rate (tasks leaving the in-flight states per
  second), and never under ``floor`` (so a cold start, or a slow phase, still launches);
- the update backlog (received, not yet acknowledged) is kept under ``BACKLOG_HORIZON``
  seconds of the measured update-handling capacity (at least ``BACKLOG_FLOOR``): a pass
  launches no more tasks than there is room left under that limit, since each launched task
  soon has an update waiting (one at a time: the agent sends the next once the previous is
  acknowledged). An update then waits about that long at most, far under an agent's 10 s.

Rates are exponential averages over ``WINDOW``-second windows. A window in which nothing was in
flight leaves the confirmation rate as it was; the handling capacity is measured only over
windows in which acknowledgements were saturated (a backlog at least as long as the sender's
pool), so a quiet period is not taken for a slow daemon. The bound therefore grows while
launches are confirmed quickly, and shrinks when they are not.
"""

from __future__ import annotations

import math

HORIZON = 2.0
"""Seconds of confirmations the bound allows in flight."""
BACKLOG_HORIZON = 0.5
"""Seconds of update handling the backlog may hold before launches pause."""
BACKLOG_FLOOR = 1000
"""A backlog this small never pauses launches."""
WINDOW = 0.5
"""Seconds over which events are counted before an average moves."""
SMOOTHING = 0.5
"""Weight of the newest window in an average."""
FLOOR = 500
"""Least bound on tasks in flight (or ``max_in_flight`` if smaller)."""


class RateMeter:
    """Events per second, averaged over windows in which there was work to do."""

    __slots__ = ("_busy", "_count", "_last", "_start", "rate")

    def __init__(self, now: float) -> None:
        self.rate: float | None = None
        self._start = now
        self._last = now
        """When the current window last heard anything: a window that went quiet is measured
        up to then, not diluted by the silence."""
        self._count = 0
        self._busy = False

    def add(self, count: int, now: float, busy: bool = True) -> None:
        """``count`` events; ``busy=False``: they happened while there was little to do, so
        they say nothing of the rate that work allows (not measured)."""
        self.roll(now)
        if busy:
            self._count += count
            self._busy = True
        self._last = now

    def busy(self, busy: bool, now: float) -> None:
        self.roll(now)
        self._last = now
        self._busy |= busy

    def roll(self, now: float) -> None:
        if now - self._start < WINDOW:
            return
        if self._busy:
            end = now if now - self._last <= WINDOW else self._last
            rate = self._count / max(WINDOW, end - self._start)
            self.rate = (
                rate if self.rate is None else SMOOTHING * rate + (1 - SMOOTHING) * self.rate
            )
        self._start = now
        self._count = 0
        self._busy = False


class LaunchFlow:
    """Tracks confirmations and update handling; says how many launches a pass may make."""

    __slots__ = ("confirmations", "floor", "max_in_flight", "updates")

    def __init__(self, max_in_flight: int, now: float, floor: int = FLOOR) -> None:
        self.max_in_flight = max_in_flight
        self.floor = min(floor, max_in_flight)
        self.confirmations = RateMeter(now)
        self.updates = RateMeter(now)

    def confirmed(self, count: int, now: float) -> None:
        """``count`` tasks left the in-flight states (RUNNING, or ended, or requeued)."""
        self.confirmations.add(count, now)

    def handled(self, count: int, now: float, saturated: bool = True) -> None:
        """``count`` updates were stored and acknowledged; ``saturated``: with more waiting
        than the acknowledgement pool sends at once (only then is the capacity measured)."""
        self.updates.add(count, now, busy=saturated)

    def note(self, in_flight: int, now: float) -> None:
        """The current count: windows with tasks in flight measure the confirmation rate."""
        self.confirmations.busy(in_flight > 0, now)

    @property
    def rate(self) -> float | None:
        """Confirmations per second (None until measured)."""
        return self.confirmations.rate

    def bound(self, now: float) -> int:
        self.confirmations.roll(now)
        rate = self.confirmations.rate
        if rate is None:
            return self.floor
        return max(self.floor, min(self.max_in_flight, math.ceil(rate * HORIZON)))

    def backlog_limit(self, now: float) -> int:
        """Update backlog up to which launches may fill."""
        self.updates.roll(now)
        rate = self.updates.rate
        if rate is None:
            return BACKLOG_FLOOR
        return max(BACKLOG_FLOOR, math.ceil(rate * BACKLOG_HORIZON))

    def budget(self, in_flight: int, now: float, backlog: int = 0) -> int | None:
        """How many tasks may be launched now (None: no limit, ``max_in_flight`` 0)."""
        if not self.max_in_flight:
            return None
        self.note(in_flight, now)
        room = self.backlog_limit(now) - backlog
        return max(0, min(self.bound(now) - in_flight, room))
