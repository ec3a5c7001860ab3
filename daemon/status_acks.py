"""Acknowledgements of stored status updates, sent in the background by a bounded pool.

A burst of updates is acknowledged only once it is committed, but the next burst need not wait
for those acknowledgements: the tracker hands them here and goes on resolving and committing.
A Mesos agent sends a task's next update only once the previous one is acknowledged, and resends
it (after 10 s, doubling up to 10 minutes) if no acknowledgement comes; so an acknowledgement
held back behind a whole burst's worth of others delays every task of the next burst, and a
late one turns into a resend and a stall.

``AckSender`` keeps one queue of pending acknowledgements, served oldest first by up to
``workers`` coroutines (the driver sends only as many calls at once as it has connections).
Each burst's ``done`` callback runs when its last acknowledgement was answered or failed, and
every acknowledgement's latency (from the update's arrival) goes into ``latency``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import structlog

log = structlog.get_logger(__name__)

ACK_WORKERS = 64
"""Acknowledgements in flight at once."""
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

Acknowledge = Callable[[str, str, str], Awaitable[None]]


class LatencyHistogram:
    """Fixed buckets (seconds): counts, sum and count, exported by the metrics at scrape time."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or under it), the last bound +inf."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


class _Burst:
    __slots__ = ("done", "failed", "left", "total")

    def __init__(self, total: int, done: Callable[[int], None]) -> None:
        self.left = total
        self.failed = 0
        self.total = total
        self.done = done


class AckSender:
    def __init__(
        self,
        acknowledge: Acknowledge,
        clock: Callable[[], float],
        workers: int = ACK_WORKERS,
    ) -> None:
        self._acknowledge = acknowledge
        self._clock = clock
        self._max_workers = workers
        self._queue: deque[tuple[str, str, str, float, _Burst]] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self.latency = LatencyHistogram()
        self.sent = 0
        self.failed = 0
        self.pending = 0
        """Acknowledgements queued or in flight."""

    def submit(
        self,
        acks: Sequence[tuple[str, str, str, float]],
        done: Callable[[int], None],
    ) -> None:
        """Queue one stored burst's acknowledgements ((agent, task, uuid, arrival) each);
        ``done(failed)`` runs once all were answered or failed."""
        if not acks:
            done(0)
            return
        burst = _Burst(len(acks), done)
        self.pending += len(acks)
        queue = self._queue
        for agent_id, task_id, uuid, arrived in acks:
            queue.append((agent_id, task_id, uuid, arrived, burst))
        loop = asyncio.get_running_loop()
        while len(self._workers) < min(self._max_workers, len(queue)):
            task = loop.create_task(self._work())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        queue = self._queue
        acknowledge = self._acknowledge
        clock = self._clock
        observe = self.latency.observe
        while queue:
            agent_id, task_id, uuid, arrived, burst = queue.popleft()
            try:
                await acknowledge(agent_id, task_id, uuid)
            except Exception:
                burst.failed += 1
                self.failed += 1
            else:
                self.sent += 1
                observe(clock() - arrived)
            burst.left -= 1
            self.pending -= 1
            if burst.left == 0:
                if burst.failed:
                    log.warning("status_ack_failed", count=burst.failed, total=burst.total)
                burst.done(burst.failed)

    async def close(self) -> None:
        """Stop sending (shutdown): what is unsent is resent by the agents."""
        self.pending -= len(self._queue)
        self._queue.clear()
        workers = list(self._workers)
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
