"""Acknowledgements of stored status updates, sent in the background by a bounded pool.

A burst of updates is acknowledged only once it is committed, but the next burst need not wait
for those acknowledgements: the tracker hands them here and goes on resolving and committing.
A Mesos agent sends a task's next update only once the previous one is acknowledged, and resends
it (after 10 s, doubling up to 10 minutes) if no acknowledgement comes; so an acknowledgement
held back behind a whole burst's worth of others delays every task of the next burst, and a
late one turns into a resend and a stall.

``AckSender`` keeps one queue of pending acknowledgements, served oldest first by up to
``workers`` coroutines. Each takes up to ``batch`` of them at a time and hands them to the
driver's ``acknowledge_many``, which pipelines them on one connection: Mesos takes one
acknowledgement per call, and one request and one answer per round trip made every
acknowledgement cost a write, a read and a wake-up of its own (the largest share of the daemon's
time under a steady stream of short tasks, and the wait behind a burst's worth of them was most
of an update's acknowledgement latency). A worker takes an equal share of the queue (at most
``batch``), so a small burst is spread over the connections rather than sent on one. The pool
holds at most ``workers`` of the driver's connections, leaving the rest to ACCEPTs and DECLINEs.

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

ACK_WORKERS = 8
"""Pipelined batches of acknowledgements in flight at once (one connection each)."""
ACK_BATCH = 16
"""Most acknowledgements in one batch. With 64, quick B2 runs launched slower (median 2,400
against 3,200 tasks/s from unpause, noisy runs on a shared machine; likely because a batch holds
its connection, and the master's loop, until all of it is answered), for no better
acknowledgement latency in B6."""
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

AcknowledgeMany = Callable[[Sequence[tuple[str, str, str]]], Awaitable[Sequence[Exception | None]]]
"""``(agent_id, task_id, uuid)`` each -> each one's error, or None (the driver's
``acknowledge_many``)."""


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
        acknowledge_many: AcknowledgeMany,
        clock: Callable[[], float],
        workers: int = ACK_WORKERS,
        batch: int = ACK_BATCH,
    ) -> None:
        self._acknowledge_many = acknowledge_many
        self._clock = clock
        self._max_workers = workers
        self._batch = batch
        self._queue: deque[tuple[str, str, str, float, _Burst]] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._sending = 0
        self._worst = 0.0
        """Workers waiting for their batch's answers."""
        self.latency = LatencyHistogram()
        self.sent = 0
        self.failed = 0
        self.pending = 0
        """Acknowledgements queued or in flight."""

    def take_worst(self) -> float:
        """The longest latency observed since the previous call (0 if none)."""
        worst, self._worst = self._worst, 0.0
        return worst

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
        clock = self._clock
        observe = self.latency.observe
        while queue:
            # An equal share among the workers not sending yet.
            share = -(-len(queue) // max(1, self._max_workers - self._sending))
            batch = [queue.popleft() for _ in range(min(self._batch, share))]
            self._sending += 1
            try:
                errors: Sequence[Exception | None] = await self._acknowledge_many(
                    [(agent_id, task_id, uuid) for agent_id, task_id, uuid, _a, _b in batch]
                )
            except Exception as exc:
                log.exception("status_ack_batch_failed", size=len(batch))
                errors = [exc] * len(batch)
            finally:
                self._sending -= 1
            now = clock()
            if batch:
                self._worst = max(self._worst, now - batch[0][3])  # the oldest of the batch
            for (_agent, _task, _uuid, arrived, burst), error in zip(batch, errors, strict=True):
                if error is not None:
                    burst.failed += 1
                    self.failed += 1
                else:
                    self.sent += 1
                    observe(now - arrived)
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
