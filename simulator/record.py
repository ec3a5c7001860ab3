"""What a simulated cluster saw, kept for tests: launches, calls, subscriptions, TEARDOWN,
FrameworkInfos.

Owns `ClusterRecord`. It survives master failovers (it belongs to the cluster, not a master), so
a test can assert "no task was ever launched twice" across the whole run. Times are the
cluster's loop clock (`Timers.now()`, the event loop's monotonic time), so a test in the same
process can compare them with its own `loop.time()`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any


@dataclass(slots=True)
class SubscriptionRecord:
    """One SUBSCRIBE stream a master admitted: when it began and ended, and the calls the
    master accepted on its stream id (validated against the framework's current stream)."""

    framework_id: str
    stream_id: str
    master: int
    hostname: str | None
    began: float
    ended: float | None = None
    calls: int = 0
    first_call: float | None = None
    last_call: float | None = None


@dataclass(slots=True)
class ClusterRecord:
    """Counters and logs of everything the frameworks asked the cluster for."""

    # task id -> times it was actually launched on an agent (valid LAUNCH on valid offers)
    launch_counts: Counter[str] = field(default_factory=Counter)
    # task id -> times it appeared in any LAUNCH, valid or not
    launch_attempts: Counter[str] = field(default_factory=Counter)
    # call type -> number of well-formed calls that reached a leading master (SUBSCRIBE too)
    calls: Counter[str] = field(default_factory=Counter)
    teardown_received: bool = False
    # every FrameworkInfo exactly as received in SUBSCRIBE, in order
    framework_infos: list[dict[str, Any]] = field(default_factory=list)
    # every admitted subscription, in the order the masters admitted them
    subscriptions: list[SubscriptionRecord] = field(default_factory=list)
    # (time, task id, agent host name) of every launch on an agent, in order
    launch_log: list[tuple[float, str, str]] = field(default_factory=list)
    _by_stream: dict[str, SubscriptionRecord] = field(default_factory=dict)

    def subscription_began(
        self, framework_id: str, stream_id: str, master: int, hostname: str | None, now: float
    ) -> None:
        sub = SubscriptionRecord(framework_id, stream_id, master, hostname, now)
        self.subscriptions.append(sub)
        self._by_stream[stream_id] = sub

    def subscription_ended(self, stream_id: str, now: float) -> None:
        """The master no longer serves this stream (failed over, disconnected, removed); the
        first end counts."""
        sub = self._by_stream.get(stream_id)
        if sub is not None and sub.ended is None:
            sub.ended = now

    def call_accepted(self, stream_id: str, now: float) -> None:
        """A non-SUBSCRIBE call on ``stream_id`` passed the master's framework and stream checks."""
        sub = self._by_stream.get(stream_id)
        if sub is None:
            return
        sub.calls += 1
        if sub.first_call is None:
            sub.first_call = now
        sub.last_call = now

    def launched(self, task_id: str, hostname: str, now: float) -> None:
        self.launch_counts[task_id] += 1
        self.launch_log.append((now, task_id, hostname))

    def launched_more_than_once(self) -> dict[str, int]:
        """Task ids launched two or more times (empty when no task ran twice)."""
        return {task_id: n for task_id, n in self.launch_counts.items() if n > 1}

    def overlapping_subscriptions(self) -> list[tuple[SubscriptionRecord, SubscriptionRecord]]:
        """Pairs of subscriptions of one framework that were live at the same time (empty
        when there was never more than one subscribed scheduler at a time)."""
        overlaps = []
        by_framework: dict[str, list[SubscriptionRecord]] = {}
        for sub in self.subscriptions:
            by_framework.setdefault(sub.framework_id, []).append(sub)
        for subs in by_framework.values():
            for earlier, later in pairwise(subs):
                if earlier.ended is None or earlier.ended > later.began:
                    overlaps.append((earlier, later))
        return overlaps

    def calls_after_takeover(self) -> list[tuple[SubscriptionRecord, SubscriptionRecord]]:
        """Pairs (old, new) where a call on the old subscription's stream was accepted after
        the new subscription of the same framework began (empty when none was)."""
        late = []
        by_framework: dict[str, list[SubscriptionRecord]] = {}
        for sub in self.subscriptions:
            by_framework.setdefault(sub.framework_id, []).append(sub)
        for subs in by_framework.values():
            for earlier, later in pairwise(subs):
                if earlier.last_call is not None and earlier.last_call > later.began:
                    late.append((earlier, later))
        return late

    def to_json(self) -> dict[str, Any]:
        return {
            "launch_counts": dict(self.launch_counts),
            "launch_attempts": dict(self.launch_attempts),
            "calls": dict(self.calls),
            "teardown_received": self.teardown_received,
            "framework_infos": self.framework_infos,
            "launched_more_than_once": self.launched_more_than_once(),
            "subscriptions": [asdict(sub) for sub in self.subscriptions],
        }
