"""The Mesos calls about tasks (KILL, ACKNOWLEDGE, RECONCILE), made after the commits that
decided them. Failures are logged here; none of them changes state."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from scale_scheduler.daemon.mesos.driver import DriverError, SchedulerDriver
from scale_scheduler.daemon.scheduling.task_commands import Kill
from scale_scheduler.state.tasks import Task

log = structlog.get_logger(__name__)

RECONCILE_CHUNK = 1000


class TaskCalls:
    def __init__(self, driver: SchedulerDriver) -> None:
        self._driver = driver

    async def kill(self, kills: Sequence[Kill]) -> None:
        """Send KILL for (mesos task id, agent id, grace period) triples, concurrently (a grace
        period goes as the call's ``kill_policy``, overriding the TaskInfo's)."""
        if not kills:
            return
        driver = self._driver
        results = await asyncio.gather(
            *(
                driver.kill(task_id, agent_id)
                if grace is None
                else driver.kill(task_id, agent_id, grace)
                for task_id, agent_id, grace in kills
            ),
            return_exceptions=True,
        )
        failed = [kills[i][0] for i, r in enumerate(results) if isinstance(r, BaseException)]
        if failed:
            log.warning("task_kill_failed", count=len(failed), first=failed[0])

    async def acknowledge_many(
        self, acks: Sequence[tuple[str, str, str]]
    ) -> Sequence[Exception | None]:
        """ACKNOWLEDGE (agent id, mesos task id, uuid) triples; one result per triple."""
        return await self._driver.acknowledge_many(acks)

    async def reconcile(self, tasks: Sequence[Task]) -> None:
        """Explicit reconciliation of the tasks' current attempts, ``RECONCILE_CHUNK`` a call."""
        for start in range(0, len(tasks), RECONCILE_CHUNK):
            chunk = [(t.mesos_task_id, t.agent_id) for t in tasks[start : start + RECONCILE_CHUNK]]
            try:
                await self._driver.reconcile(chunk)
            except DriverError as exc:
                log.warning("reconcile_failed", error=str(exc), tasks=len(chunk))
                return

    async def reconcile_implicit(self) -> bool:
        try:
            await self._driver.reconcile([])
        except DriverError as exc:
            log.warning("reconcile_failed", error=str(exc))
            return False
        return True
