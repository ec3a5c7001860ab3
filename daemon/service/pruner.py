"""The pruner: keeps the history of finished tasks within ``state.retention_*``, gives the space
back, and keeps the WAL bounded. Runs as its own asyncio task, off the offer path.

Every ``state.retention_interval`` seconds a pass:

1. walks the tasks table from the oldest id and prunes, in batches of ``batch`` rows, the
   terminal tasks beyond the limits (``state.retention``'s ``PassPlan``); each batch is one short
   write through the store's single writer, and the pass yields to the loop between batches, so
   API requests and status bursts interleave with it;
2. when the database is in ``auto_vacuum = INCREMENTAL`` mode, gives freed pages back to the file
   system, a batch of pages at a time, except a margin the writes until the next pass will reuse
   (``state.free_pages``: at steady state nothing is shrunk only to be grown again);
3. checkpoints the WAL (``PASSIVE``: it never waits for readers; with the store's
   ``journal_size_limit`` the WAL file is cut back when it restarts), and if the WAL is still
   over that limit (readers kept it from restarting), a ``TRUNCATE`` checkpoint that waits at
   most ``TRUNCATE_WAIT_MS`` for readers;
4. reads the database and WAL file sizes (off the loop) for the metrics.

It holds the retention mark (the largest id pruned), which the API reads to tell a pruned task
from one that never existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable

import structlog

from scale_scheduler.state.changes import TasksPruned
from scale_scheduler.state.free_pages import ReuseMargin
from scale_scheduler.state.interface import MaintainedState, StorageSizes
from scale_scheduler.state.retention import DAY, PassPlan, RetentionPolicy

log = structlog.get_logger(__name__)

BATCH = 2000
"""Rows read, and at most deleted, per write: a few milliseconds of the writer's time."""
TRUNCATE_WAIT_MS = 50
"""How long cutting the WAL may wait for readers (the writes wait behind it meanwhile)."""


class Pruner:
    def __init__(
        self,
        store: MaintainedState,
        policy: RetentionPolicy,
        *,
        interval: float,
        clock: Callable[[], float] = time.time,
        batch: int = BATCH,
    ) -> None:
        self._store = store
        self.policy = policy
        self._interval = interval
        self._clock = clock
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self.pruned_through = 0
        self.pruned = 0
        """Tasks pruned by this process (the metric's counter)."""
        self.sizes = StorageSizes()
        self._margin = ReuseMargin()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the mark and the vacuum mode, read the file sizes, then run passes."""
        mark = await self._store.retention_mark()
        self.pruned_through = mark.pruned_through
        await self._sample_sizes()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pruner")
        log.info(
            "pruner_started",
            retention_days=self.policy.days,
            retention_max_tasks=self.policy.max_tasks,
            pruned_through=self.pruned_through,
        )

    async def stop(self) -> None:
        """Stop between two batches or mid-batch: each batch is one transaction either way."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pruner_pass_failed")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- what the API reads ---------------------------------------------------------------------

    def was_pruned(self, task_id: int) -> bool:
        """Whether a task missing from the database was pruned (rather than never existing)."""
        return 0 < task_id <= self.pruned_through

    # -- one pass -------------------------------------------------------------------------------

    async def run_pass(self) -> int:
        """Prune what is due now, give the space back, checkpoint, sample the sizes. Returns
        how many tasks were pruned."""
        self._margin.pass_started(await self._store.page_usage())
        pruned = await self.prune() if self.policy.enabled else 0
        if pruned:
            given = await self._store.reclaim_space(self._margin.keep)
            if given:
                log.info("space_reclaimed", pages=given, kept_free=self._margin.keep)
        self._margin.pass_ended(await self._store.page_usage())
        await self._store.checkpoint()
        await self._sample_sizes()
        if self.sizes.wal > self._store.log_limit:
            # Long reads kept the WAL from restarting (so journal_size_limit could not cut it):
            # cut it now, waiting only briefly for readers (else the next pass tries again).
            truncated = await self._store.truncate_log(TRUNCATE_WAIT_MS)
            log.info("wal_truncated", wal_bytes=self.sizes.wal, done=truncated)
            await self._sample_sizes()
        return pruned

    async def prune(self) -> int:
        policy = self.policy
        started = time.perf_counter()
        excess = 0
        if policy.max_tasks > 0:
            excess = await self._store.terminal_total() - policy.max_tasks
        cutoff = self._clock() - policy.days * DAY if policy.days > 0 else None
        plan = PassPlan(excess, cutoff)
        pruned = batches = 0
        while not plan.done:
            victims = plan.take(await self._store.task_ends(plan.after, self._batch))
            if victims:
                through, count = max(v.task_id for v in victims), len(victims)
                await self._store.commit(
                    [TasksPruned(victims)], functools.partial(self._pruned, through, count)
                )
                pruned += count
                batches += 1
            await asyncio.sleep(0)  # let requests and status bursts in between batches
        if pruned:
            log.info(
                "tasks_pruned",
                count=pruned,
                batches=batches,
                pruned_through=self.pruned_through,
                seconds=round(time.perf_counter() - started, 3),
            )
        return pruned

    def _pruned(self, through: int, count: int) -> None:
        # After the commit (the store's apply): the mark in memory never runs ahead of the disk.
        self.pruned_through = max(self.pruned_through, through)
        self.pruned += count

    async def _sample_sizes(self) -> None:
        self.sizes = await self._store.storage_sizes()
