"""Reconciliation rounds and launch timeouts.

A round (after each SUBSCRIBED, and periodically) reconciles every launched task explicitly,
re-sends to the silent ones with back-off, then reconciles implicitly. A launch that gets no
status within ``launch_timeout`` is reconciled, and marked lost (the scheduler's own TASK_LOST,
resolved like any status) if it stays silent as long again. A launch whose ACCEPT may or may
not have reached the master is reconciled at once (``reconcile_launches``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import structlog

from scale_scheduler.daemon.mesos.mesos_task_states import launch_timeout_status
from scale_scheduler.daemon.scheduling.launch_plans import PlannedTask
from scale_scheduler.daemon.scheduling.task_board import TaskBoard
from scale_scheduler.daemon.scheduling.task_calls import TaskCalls
from scale_scheduler.daemon.scheduling.task_commands import (
    due_launch_timeouts,
    launch_pending,
    still_silent,
)
from scale_scheduler.daemon.service.config import SchedulerConfig
from scale_scheduler.state.tasks import Task

if TYPE_CHECKING:
    from scale_scheduler.daemon.scheduling.status_intake import StatusIntake

log = structlog.get_logger(__name__)


class Reconciler:
    def __init__(
        self,
        config: SchedulerConfig,
        board: TaskBoard,
        calls: TaskCalls,
        intake: StatusIntake,
        clock: Callable[[], float],
    ) -> None:
        self._config = config
        self._tasks: Mapping[int, Task] = board.tasks
        self._launching: Mapping[int, Task] = board.launching
        self._calls = calls
        self._intake = intake
        self._clock = clock
        self.rounds = 0

    def launched_tasks(self) -> list[Task]:
        return [t for t in self._tasks.values() if t.state.launched and not t.busy]

    async def reconcile(self, retries: int = 3) -> None:
        """Explicit reconciliation of every launched task, re-sent with back-off to the silent
        ones, then implicit reconciliation."""
        self.rounds += 1
        # The tasks that get any status while the round runs (None between rounds, so nothing
        # is kept about tasks that come and go meanwhile).
        heard: set[int] = set()
        self._intake.heard = heard
        delay = self._config.reconcile_retry
        pending = self.launched_tasks()
        tasks = self._tasks
        try:
            for attempt in range(retries + 1):
                if not pending:
                    break
                await self._calls.reconcile(pending)
                log.info("reconcile_explicit_sent", tasks=len(pending), round=attempt + 1)
                await asyncio.sleep(delay)
                delay *= 2
                pending = [
                    t
                    for t in pending
                    if t.id not in heard and t.state.launched and tasks.get(t.id) is t
                ]
        finally:
            if self._intake.heard is heard:
                self._intake.heard = None
        if await self._calls.reconcile_implicit():
            log.info("reconcile_implicit_sent", unanswered=len(pending))

    async def reconcile_launches(self, planned: Sequence[PlannedTask]) -> None:
        """Launch result: the ACCEPT may or may not have reached the master, so ask it now. Its
        answer decides (lost or unknown: the retry policy, under a fresh attempt id; a real
        state: followed). If it stays silent, the launch timeout still reconciles and then
        marks them lost."""
        live = self._tasks
        tasks = [
            item.task
            for item in planned
            if launch_pending(item.task, item.attempt) and live.get(item.task.id) is item.task
        ]
        if not tasks:
            return
        log.info("launch_outcome_reconcile", tasks=len(tasks))
        await self._calls.reconcile(tasks)

    async def check_launch_timeouts(self) -> None:
        """Reconcile launches silent for ``launch_timeout``; mark lost if silent as long again."""
        now = self._clock()
        to_reconcile, to_lose = due_launch_timeouts(
            self._launching.values(), now, self._config.launch_timeout
        )
        if to_reconcile:
            for task in to_reconcile:
                task.reconcile_sent = now
            log.info("launch_timeout_reconcile", tasks=len(to_reconcile))
            await self._calls.reconcile(to_reconcile)
        if not to_lose:
            return
        decided = [(task, task.attempts) for task in to_lose]
        async with self._intake.lock:
            # Updates received before this decision go first: they may answer for these
            # tasks, which are then not lost (nor launched a second time).
            await self._intake.drain()
            lost = [task for task, attempt in decided if still_silent(task, attempt, self._tasks)]
            if not lost:
                return
            log.warning("launch_timeout_lost", tasks=len(lost))
            await self._intake.process_updates(
                [launch_timeout_status(t.mesos_task_id, t.agent_id, now) for t in lost]
            )
