"""The clocks on a task's life: retry back-offs that end, run-time limits the master did not
enforce, kills that outlast their grace period.

The tracker hands each timed event here when it applies it: a requeue with a back-off
(``wait_out``: the task waits in the board's ``retry_waits``, outside the queue index), a launch
of a task with a ``max_runtime`` (``watch_runtime``), a kill with a grace period
(``kill_asked``). ``check``, run every ``TIMER_INTERVAL``, enters the retries that came due into
the queue index and asks for offers, and kills the launches past their limit, ending them FAILED
through the status intake as Mesos would (so the end is committed by the tracker like any
status). ``task_ended`` counts a kill whose task outlived its grace by more than
``KILL_GRACE_SLACK``.

The counters (``retries_delayed``, ``runtime_limits_enforced``, ``kills_past_grace``) are read by
the metrics at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from scale_scheduler.daemon.scheduling import task_commands as commands
from scale_scheduler.daemon.scheduling.runtime_limits import (
    RuntimeLimits,
    max_runtime,
    runtime_limit_status,
)
from scale_scheduler.daemon.scheduling.task_board import TaskBoard
from scale_scheduler.daemon.scheduling.task_calls import TaskCalls
from scale_scheduler.state.tasks import Task

if TYPE_CHECKING:
    from scale_scheduler.daemon.scheduling.status_intake import StatusIntake

log = structlog.get_logger(__name__)

KILL_GRACE_SLACK = 5.0
"""Seconds past its grace period after which a kill's end is counted as late."""


class LifecycleTimers:
    def __init__(
        self,
        board: TaskBoard,
        intake: StatusIntake,
        calls: TaskCalls,
        clock: Callable[[], float],
        notify_work: Callable[[], None],
    ) -> None:
        self._tasks = board.tasks
        self._index = board.index
        self._retry_waits = board.retry_waits
        self._intake = intake
        self._calls = calls
        self._clock = clock
        self._notify_work = notify_work
        self.runtime_limits = RuntimeLimits()
        self._graceful_kills: dict[int, tuple[float, float]] = {}
        """Per task asked to die with a grace period: (when, grace). Only such tasks."""
        self.retries_delayed = 0
        self.runtime_limits_enforced = 0
        self.kills_past_grace = 0
        """Kills with a grace period whose task ended more than ``KILL_GRACE_SLACK`` after it."""

    # -- what the tracker hands over as it applies a change ------------------------------------

    def wait_out(self, task: Task, until: float) -> None:
        """A requeued task waits out its retry back-off until ``until``."""
        task.next_attempt_at = until
        self._retry_waits.add(task)
        self.retries_delayed += 1

    def watch_runtime(self, task: Task, attempt: int, launched: float) -> None:
        """An attempt launched at ``launched``: watch its ``max_runtime``, if it has one."""
        limit = max_runtime(task)
        if limit is not None:
            self.runtime_limits.watch(task, attempt, launched, limit)

    def kill_asked(self, task: Task, now: float) -> None:
        """A kill was asked for a launched task: time its grace period, if it has one."""
        grace = commands.kill_grace(task)
        if grace is not None and task.state.launched:
            self._graceful_kills.setdefault(task.id, (now, grace))

    def task_ended(self, task_id: int, now: float) -> None:
        """The task ended for good: count its kill as late if it outlived its grace."""
        if not self._graceful_kills:
            return
        asked = self._graceful_kills.pop(task_id, None)
        if asked is not None and now - asked[0] > asked[1] + KILL_GRACE_SLACK:
            self.kills_past_grace += 1
            log.warning("kill_past_grace_period", task_id=task_id, seconds=round(now - asked[0], 3))

    # -- the timers ----------------------------------------------------------------------------

    async def check(self) -> None:
        self.release_due_retries()
        await self.enforce_runtime_limits()

    def release_due_retries(self) -> int:
        """Enter the tasks whose retry back-off is over into the queue index (and ask for
        offers); how many."""
        waits = self._retry_waits
        if not waits:
            return 0
        due = waits.due(self._clock())
        if due:
            index = self._index
            for task in due:
                index.add(task)
            log.info("retry_backoff_over", tasks=len(due))
            self._notify_work()
        return len(due)

    async def enforce_runtime_limits(self) -> None:
        """Kill the launches past their ``max_runtime`` (plus a margin) that the master did not
        end, and end them FAILED as Mesos would (a failure of the task's own)."""
        if not self.runtime_limits:
            return
        tasks = self._tasks
        overdue = self.runtime_limits.overdue(self._clock(), tasks)
        if not overdue:
            return
        intake = self._intake
        async with intake.lock:
            # Updates received meanwhile go first: the master may have ended them already.
            await intake.drain()
            decided = [t for t in overdue if t.state.launched and tasks.get(t.id) is t]
            if not decided:
                return
            now = self._clock()
            kills = [(t.mesos_task_id, t.agent_id, commands.kill_grace(t)) for t in decided]
            statuses = [runtime_limit_status(t, now) for t in decided]
            self.runtime_limits_enforced += len(decided)
            log.warning("runtime_limit_enforced", tasks=len(decided), first=decided[0].id)
            await intake.process_updates(statuses)
        await self._calls.kill(kills)
