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
- the update backlog (received, not yet acknowledged) is kept under a limit that follows the
  acknowledgement latency, the figure an agent cares about (``BacklogLimit``): a pass launches
  no more tasks than there is room left under it, since each launched task soon has an update
  waiting (one at a time: the agent sends the next once the previous is acknowledged), and
  one pass fills at most ``PASS_SHARE`` of the limit (smaller waves, one after another). The
  limit grows by half each ``WINDOW`` in which it held a pass's launches back (``held_back``)
  and no acknowledgement
  took longer than ``ACK_TARGET``, and halves in a window in which one did (additive increase
  would be too slow to follow a rate that changes with every wave of launches). An earlier
  version derived it from the measured update-handling rate; but that rate is itself limited by
  the launches the limit allows, so the measurement held the limit at whatever it started from
  (at the floor, half the throughput) or, counted in bursts, overshot it (waves of 7,000
  launches and 3 s stalls in B6).

The confirmation rate is an exponential average over ``WINDOW``-second windows; a window in
which nothing was in flight leaves it as it was. The bound therefore grows while launches are
confirmed quickly, and shrinks when they are not.
"""

from __future__ import annotations

import math

import structlog

log = structlog.get_logger(__name__)

HORIZON = 2.0
"""Seconds of confirmations the bound allows in flight."""
ACK_TARGET = 0.3
"""Seconds: the worst acknowledgement latency (from the update's arrival) a window may see
without the backlog limit shrinking. An agent resends after 10 s; B6's target is 1 s (p99)."""
BACKLOG_FLOOR = 1000
"""A backlog this small never pauses launches (and where the limit starts)."""
BACKLOG_MAX = 20_000
"""The limit never grows past this (the tracker stops reading the event stream there)."""
GROWTH = 1.5
"""Factor of the backlog limit after a window in which it held launches back and every
acknowledgement was on time."""
CUT = 0.5
"""Factor of the backlog limit after a window with a late acknowledgement."""
WINDOW = 0.5
"""Seconds over which events are counted before an average moves."""
PASS_SHARE = 0.5
"""Share of the backlog limit one offer pass may fill. A wave of launches moves in step: its
updates arrive together, are stored in one burst and acknowledged together, so its first task
finishes only once the whole wave has gone through each state, and the pass that launches it
(intents, ACCEPTs) holds up the updates of the waves before it. Filled by one pass, the limit
made waves of up to 5,000 tasks that took over a second to finish a first task, launched into
a pipeline the previous wave had just left empty (B6's gaps without a finished task, up to
2.4 s); two or more smaller waves under the same limit keep tasks finishing all the time."""
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


class BacklogLimit:
    """The update backlog launches may fill, adapted to the acknowledgement latency."""

    __slots__ = ("_binding", "_filled", "_start", "_worst", "limit")

    def __init__(self, now: float) -> None:
        self.limit = float(BACKLOG_FLOOR)
        self._start = now
        self._worst = 0.0
        """The slowest acknowledgement answered in the current window."""
        self._binding = False
        """The last budget was smaller under this limit than under the bound on tasks in
        flight."""
        self._filled = False
        """The limit held launches back in the current window."""

    def acknowledged(self, worst: float, now: float) -> None:
        """Acknowledgements were answered, the slowest ``worst`` seconds after its update."""
        self.roll(now)
        self._worst = max(self._worst, worst)

    def room(self, backlog: int, wanted: int, now: float) -> int:
        """Launches the backlog leaves room for, of the ``wanted`` the bound allows (in one
        pass: at most ``PASS_SHARE`` of the limit)."""
        self.roll(now)
        room = min(max(0, int(self.limit) - backlog), self.per_pass())
        self._binding = room < wanted
        return room

    def per_pass(self) -> int:
        """Most launches one pass may make under the limit."""
        return int(self.limit * PASS_SHARE)

    def held_back(self, now: float) -> None:
        """A pass left tasks queued that its offers would have taken (only a limit that
        holds launches back, by its room or by a pass's share of it, is grown)."""
        self.roll(now)
        if self._binding:
            self._filled = True

    def roll(self, now: float) -> None:
        if now - self._start < WINDOW:
            return
        previous = self.limit
        if self._worst > ACK_TARGET:
            self.limit = max(float(BACKLOG_FLOOR), self.limit * CUT)
        elif self._filled:
            self.limit = min(float(BACKLOG_MAX), self.limit * GROWTH)
        if self.limit != previous or self._worst > ACK_TARGET:
            log.info(
                "backlog_limit_moved",
                limit=int(self.limit),
                previous=int(previous),
                worst_ack_s=round(self._worst, 3),
                held_back=self._filled,
            )
        self._start = now
        self._worst = 0.0
        self._filled = False


class LaunchFlow:
    """Tracks confirmations and acknowledgements; says how many launches a pass may make."""

    __slots__ = ("backlog", "confirmations", "floor", "max_in_flight")

    def __init__(self, max_in_flight: int, now: float, floor: int = FLOOR) -> None:
        self.max_in_flight = max_in_flight
        self.floor = min(floor, max_in_flight)
        self.confirmations = RateMeter(now)
        self.backlog = BacklogLimit(now)

    def confirmed(self, count: int, now: float) -> None:
        """``count`` tasks left the in-flight states (RUNNING, or ended, or requeued)."""
        self.confirmations.add(count, now)

    def handled(self, now: float, worst_latency: float) -> None:
        """A burst of updates was stored and acknowledged, the slowest acknowledgement
        ``worst_latency`` seconds after its update arrived."""
        self.backlog.acknowledged(worst_latency, now)

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

    def held_back(self, now: float) -> None:
        """The last budget held launches back: a pass declined offers for flow control."""
        self.backlog.held_back(now)

    def backlog_limit(self, now: float) -> int:
        """Update backlog up to which launches may fill."""
        self.backlog.roll(now)
        return int(self.backlog.limit)

    def most(self, now: float) -> int:
        """Most launches one pass could make with nothing in flight and no backlog."""
        self.backlog.roll(now)
        return min(self.bound(now), self.backlog.per_pass())

    def budget(self, in_flight: int, now: float, backlog: int = 0) -> int | None:
        """How many tasks may be launched now (None: no limit, ``max_in_flight`` 0)."""
        if not self.max_in_flight:
            return None
        self.note(in_flight, now)
        wanted = max(0, self.bound(now) - in_flight)
        return min(wanted, self.backlog.room(backlog, wanted, now))
