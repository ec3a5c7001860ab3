"""The task tracker: the one writer of task state, and the live task records it keeps.

Each change to a task is a command resolved by a pure function (``task_commands``); the tracker
commits the result (``StateStore.commit``) and changes memory only in that write's ``apply``, so
memory (what ``/status/``, the matcher and the views read) never runs ahead of what is durable.
Mesos calls (``task_calls``) come after the commit. Status bursts are ``status_intake``'s,
reconciliation and launch timeouts ``reconciliation``'s, node accounting ``NodeRepository``'s,
building a pass's launch intents ``launch_plans``', the back-off, run-time and kill-grace clocks
``lifecycle_timers``', the hosts a retry avoids ``failed_hosts``'.
Routine progress (STAGING, STARTING, RUNNING, FINISHED) is logged per task at debug and counted
per burst at info (``task_states_changed``); any other change is logged per task at info.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

import structlog

from scale_scheduler.daemon.mesos.driver import SchedulerDriver
from scale_scheduler.daemon.mesos.mesos_types import TaskStatus
from scale_scheduler.daemon.scheduling import task_commands as commands
from scale_scheduler.daemon.scheduling.ended_attempts import EndedAttempts
from scale_scheduler.daemon.scheduling.failed_hosts import FailedHosts
from scale_scheduler.daemon.scheduling.flow_control import LaunchFlow
from scale_scheduler.daemon.scheduling.launch_plans import (
    AgentLaunches,
    LaunchPlan,
    PlannedTask,
    reserve_launches,
)
from scale_scheduler.daemon.scheduling.lifecycle_timers import LifecycleTimers
from scale_scheduler.daemon.scheduling.matcher import AgentLaunch, GroupWaiting
from scale_scheduler.daemon.scheduling.queue_index import QueueIndex
from scale_scheduler.daemon.scheduling.queue_waiting import record_waiting, waiting_reason
from scale_scheduler.daemon.scheduling.reconciliation import Reconciler
from scale_scheduler.daemon.scheduling.status_acks import AckSender
from scale_scheduler.daemon.scheduling.status_intake import StatusIntake
from scale_scheduler.daemon.scheduling.task_calls import TaskCalls
from scale_scheduler.daemon.scheduling.task_commands import WorkingTask
from scale_scheduler.daemon.scheduling.task_values import (
    DeleteOutcome,
    NewTask,
    Prepared,
    TaskNotFoundError,
    prepare_tasks,
    queued_records,
    queued_views,
)
from scale_scheduler.daemon.service.config import SchedulerConfig
from scale_scheduler.state.changes import (
    KillRequested,
    LaunchesReverted,
    RevertedLaunch,
    StatusesApplied,
    TaskCanceled,
    TasksQueued,
)
from scale_scheduler.state.domain import LAUNCHED, ShapeInterner, TaskState
from scale_scheduler.state.interface import StateStore
from scale_scheduler.state.nodes import NodeRepository
from scale_scheduler.state.tasks import Task, TaskView

log = structlog.get_logger(__name__)

SHRINK_SLACK_BYTES = 256 * 1024
"""A per-task dict's table is rebuilt once it is this much larger than its entries need."""
ROUTINE = frozenset({TaskState.STAGING, TaskState.STARTING, TaskState.RUNNING, TaskState.FINISHED})
"""New states of a task's normal progress: logged per task at debug, counted per burst at info."""
SUBMIT_CHUNK = 500
"""Tasks of a submitted batch prepared, or given their views, between two yields to the loop."""


class TaskTracker:
    def __init__(
        self,
        config: SchedulerConfig,
        store: StateStore,
        driver: SchedulerDriver,
        nodes: NodeRepository,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._nodes = nodes
        self._clock = clock
        self.tasks: dict[int, Task] = {}
        self.index = QueueIndex(self.tasks)
        self.interner = ShapeInterner()
        self.queue_depth = 0
        self._launching: dict[int, Task] = {}
        self._next_id = 1
        self.calls = TaskCalls(driver)
        self.flow = LaunchFlow(config.max_in_flight, clock())
        self.intake = StatusIntake(self, self.calls, self.flow, clock)
        self.reconciler = Reconciler(
            config, self.tasks, self._launching, self.calls, self.intake, clock
        )
        self.ended = EndedAttempts()
        self.policy = commands.RetryPolicy(config.max_cluster_failures, config.retry_backoff)
        self.timers = LifecycleTimers(
            self.tasks, self.index, self.intake, self.calls, clock, self._notify_work
        )
        self.failed_hosts = FailedHosts()
        # Read by the metrics at scrape time: failures by class, launched tasks in memory by
        # state (queued ones are ``queue_depth``), terminal states reached since start.
        self.failures_by_class: dict[str, int] = {}
        self.launched_counts: dict[TaskState, int] = dict.fromkeys(LAUNCHED, 0)
        self.ended_counts: dict[TaskState, int] = {}
        self.work_listeners: list[Callable[[], None]] = []
        """Called after tasks were queued or requeued (the core revives offers)."""
        # The status path and reconciliation, under the names the core, API and metrics use.
        self.acks: AckSender = self.intake.acks
        self.room_listeners = self.intake.room_listeners
        self.on_update: Callable[[TaskStatus], None] = self.intake.on_update
        self.run_updates = self.intake.run
        self.process_pending_updates = self.intake.process_pending
        self.process_updates = self.intake.process_updates
        self.backlog_room = self.intake.backlog_room
        self.reconcile = self.reconciler.reconcile
        self.check_launch_timeouts = self.reconciler.check_launch_timeouts
        self.launched_tasks = self.reconciler.launched_tasks
        self.kill_now = self.calls.kill

    # -- start-up -------------------------------------------------------------------------------

    async def load(self) -> None:
        """Load every non-terminal task in batches, yielding to the loop between them."""
        self._next_id = await self._store.max_task_id() + 1
        loaded = 0
        now = self._clock()
        retry_waits = self.timers.retry_waits
        failed: list[int] = []
        async for batch in self._store.live_tasks(self.interner):
            for task in batch:
                self.tasks[task.id] = task
                if task.failures or task.cluster_failures:
                    failed.append(task.id)
                if task.state is TaskState.QUEUED:
                    if task.next_attempt_at > now:
                        retry_waits.add(task)
                    else:
                        task.next_attempt_at = 0.0
                        self.index.add(task)
                    self.queue_depth += 1
                else:
                    self._nodes.hold(task.hostname, task.shape)
                    self.launched_counts[task.state] += 1
                    if task.state is TaskState.LAUNCHING:
                        self._launching[task.id] = task
                    self.timers.watch_runtime(task, task.attempts, task.launched)
            loaded += len(batch)
            await asyncio.sleep(0)
        # Every requeue counted a failure: only tasks with one have failed attempts to avoid.
        self.failed_hosts.restore(await self._store.ended_attempts(failed))
        log.info(
            "tasks_loaded",
            live=loaded,
            queued=self.queue_depth,
            retry_waiting=len(retry_waits),
            avoiding_hosts=len(self.failed_hosts),
            shapes=len(self.interner),
            next_id=self._next_id,
        )

    # -- queue ----------------------------------------------------------------------------------

    async def submit(self, items: Sequence[NewTask]) -> list[TaskView]:
        """Queue tasks in one commit; returns their views once they are durable.

        A batch (up to 10,000) is prepared and its views built ``SUBMIT_CHUNK`` tasks at a time
        with the loop free in between: built in one go, they held the loop for 60-130 ms of
        CPU, during which no status update was handled and no offer answered (B6's feeder
        posts such a batch every few seconds). Ids are taken, records made and the commit
        queued in one stretch, so commits stay in id order whatever submits overlap."""
        now = self._clock()
        prepared: list[Prepared] = []
        for start in range(0, len(items), SUBMIT_CHUNK):
            if start:
                await asyncio.sleep(0)
            prepared += prepare_tasks(items[start : start + SUBMIT_CHUNK], self.interner)
        first = self._next_id
        self._next_id += len(items)
        records = queued_records(items, prepared, first, now)

        def apply() -> None:
            tasks, index = self.tasks, self.index
            for task in records:
                tasks[task.id] = task
                index.add(task)
            self.queue_depth += len(records)
            log.info(
                "tasks_queued",
                count=len(records),
                first_id=first,
                last_id=first + len(records) - 1,
                state=TaskState.QUEUED.value,
            )
            self._notify_work()

        names = [item.spec.name for item in items]
        await self._store.commit([TasksQueued(records, names, now)], apply)
        views: list[TaskView] = []
        for start in range(0, len(items), SUBMIT_CHUNK):
            if start:
                await asyncio.sleep(0)
            span = range(start, min(start + SUBMIT_CHUNK, len(items)))
            views += queued_views(items, prepared, first, now, span)
        return views

    def _notify_work(self) -> None:
        for listener in list(self.work_listeners):
            listener()

    # -- what flow control, the metrics and the views read --------------------------------------

    def footprint(self) -> dict[str, int]:
        """Sizes of what the tracker holds per task or per update. All follow live work
        (nothing stays for a finished task) except ``ended``, capped at ``ENDED_MEMORY``."""
        return {
            "tasks": len(self.tasks),
            "launching": len(self._launching),
            **self.intake.footprint(),
            "index_groups": len(self.index),
            "index_entries": sum(len(group) for group in self.index.groups()),
            "ended": len(self.ended),
        }

    @property
    def in_flight(self) -> int:
        """Tasks launched and not yet confirmed (LAUNCHING, STAGING, STARTING)."""
        counts = self.launched_counts
        return counts[TaskState.LAUNCHING] + counts[TaskState.STAGING] + counts[TaskState.STARTING]

    @property
    def in_flight_bound(self) -> int:
        """The current bound on ``in_flight`` (``scheduler.max_in_flight``, adapted)."""
        return self.flow.bound(self._clock())

    def launch_budget(self) -> int | None:
        """How many tasks the next offer pass may launch (None: no limit)."""
        return self.flow.budget(self.in_flight, self._clock(), self.update_backlog)

    @property
    def update_backlog(self) -> int:
        return self.intake.backlog

    @property
    def updates_handled(self) -> int:
        return self.intake.updates_handled

    @property
    def stale_updates(self) -> int:
        return self.intake.stale_updates

    @property
    def acks_sent(self) -> int:
        return self.acks.sent

    @property
    def reconcile_rounds(self) -> int:
        return self.reconciler.rounds

    def waiting_reason(self, task: Task, scheduler_paused: bool) -> str | None:
        return waiting_reason(self.index, task, scheduler_paused, self.in_flight)

    def queued_in_order(self) -> Iterator[Task]:
        """Every queued task: those the index holds in launch order, then those waiting out a
        retry back-off in the order they come due."""
        yield from self.index.queued()
        yield from self.timers.retry_waits.waiting()

    def record_waiting(self, waiting: Iterable[GroupWaiting]) -> None:
        record_waiting(self.index, waiting)

    # -- launch intent and launch result --------------------------------------------------------

    def plan_launch(self, launches: Sequence[AgentLaunch], now: float) -> LaunchPlan:
        """Reserve the placed tasks and build their intents; memory changes in apply."""
        agents, intents = reserve_launches(launches, self.tasks, now)
        return LaunchPlan(agents, intents, lambda: self._apply_launch(agents, now))

    def _apply_launch(self, agents: AgentLaunches, now: float) -> None:
        """The intents are durable: the planned tasks are LAUNCHING on their agents."""
        debug = log.debug
        watch_runtime = self.timers.watch_runtime
        for launch, planned in agents:
            for item in planned:
                task = item.task
                task.state = TaskState.LAUNCHING
                task.attempts = item.attempt
                task.agent_id = launch.agent_id
                task.hostname = launch.hostname
                task.launched = now
                task.last_update = now
                task.reconcile_sent = 0.0
                self._launching[task.id] = task
                watch_runtime(task, item.attempt, now)
                debug(
                    "task_state_changed",
                    task_id=task.id,
                    old=TaskState.QUEUED.value,
                    new=TaskState.LAUNCHING.value,
                    attempt=item.attempt,
                    hostname=launch.hostname,
                )
            self._nodes.hold_all(launch.hostname, [item.task.shape for item in planned])
            self.queue_depth -= len(planned)
            self.launched_counts[TaskState.LAUNCHING] += len(planned)

    async def revert(self, planned: Sequence[PlannedTask], why: str) -> None:
        """Launch result: the ACCEPT surely took no effect. The tasks go back to the queue
        (their attempt is spent, so a late launch of it is recognised as stale and killed)."""
        if not planned:
            return
        now = self._clock()
        reverts = [
            RevertedLaunch(
                item.task.id, item.attempt, item.task.failures, item.task.cluster_failures
            )
            for item in planned
        ]

        def apply() -> None:
            count = 0
            for item in planned:
                task = item.task
                if not commands.launch_pending(task, item.attempt):
                    continue  # a status arrived meanwhile: the launch happened after all
                self._requeue(task)
                self.launched_counts[TaskState.LAUNCHING] -= 1
                count += 1
                log.info(
                    "task_state_changed",
                    task_id=task.id,
                    old=TaskState.LAUNCHING.value,
                    new=TaskState.QUEUED.value,
                    attempt=item.attempt,
                    reason=why,
                )
            if count:
                self.flow.confirmed(count, now)
                self._notify_work()

        await self._store.commit([LaunchesReverted(reverts, now)], apply)

    async def cancel_all(self, task_ids: Iterable[int]) -> None:
        """Cancel queued tasks (those a DELETE reached while their launch was in flight)."""
        for task_id in task_ids:
            try:
                await self.delete(task_id)
            except Exception as exc:
                log.warning("task_cancel_failed", task_id=task_id, error=repr(exc))

    # -- cancel and kill ------------------------------------------------------------------------

    async def delete(self, task_id: int) -> DeleteOutcome:
        """Cancel a queued task, or ask Mesos to kill a launched one."""
        task = self.tasks.get(task_id)
        if task is None:
            if await self._store.task_state(task_id) is None:
                raise TaskNotFoundError(f"No task with id {task_id}.")
            return DeleteOutcome.ALREADY_TERMINAL
        now = self._clock()
        if commands.resolve_delete(task) is commands.DeleteAction.CANCEL:
            task.busy = True

            def cancel() -> None:
                task.busy = False
                if task.state is not TaskState.QUEUED:
                    return
                task.state = TaskState.CANCELED
                self.tasks.pop(task.id, None)
                self.timers.retry_waits.discard(task.id)
                self.failed_hosts.forget(task.id)
                self.queue_depth -= 1
                self._count_ended(TaskState.CANCELED)
                log.info(
                    "task_state_changed",
                    task_id=task.id,
                    old=TaskState.QUEUED.value,
                    new=TaskState.CANCELED.value,
                    attempt=task.attempts,
                )

            try:
                await self._store.commit([TaskCanceled(task.id, now)], cancel)
            except BaseException:
                task.busy = False
                raise
            return DeleteOutcome.CANCELED

        def mark() -> None:
            task.kill_requested = True

        await self._store.commit([KillRequested(task.id, now)], mark)
        target = commands.kill_target(task)
        self.timers.kill_asked(task, now)
        if target is not None:
            await self.calls.kill([target])
        log.info("task_kill_requested", task_id=task.id, state=task.state.value)
        return DeleteOutcome.KILL_REQUESTED

    # -- status updates (resolved by ``status_intake``) -----------------------------------------

    async def commit_statuses(self, changed: Sequence[WorkingTask], now: float) -> None:
        """Commit one burst's resolved changes, then apply them to memory."""

        def apply() -> None:
            requeued = False
            by_state: dict[str, int] = {}
            before = self.in_flight
            for w in changed:
                requeued |= self._apply_working(w, now, by_state)
            if before > self.in_flight:
                self.flow.confirmed(before - self.in_flight, now)
            self._shrink_tables()
            log.info("task_states_changed", tasks=len(changed), by_state=by_state)
            if requeued:
                self._notify_work()

        await self._store.commit([StatusesApplied(changed, now)], apply)

    def _apply_working(self, w: WorkingTask, now: float, by_state: dict[str, int]) -> bool:
        """Apply a task's resolved burst to memory; count its changes by new state."""
        task = w.task
        if w.ended_for_good:
            self.ended.add(task.id, task.attempts)
        klass = w.failure_class
        if klass is not None:
            self.failures_by_class[klass.value] = self.failures_by_class.get(klass.value, 0) + 1
            if w.requeue:
                self.failed_hosts.record(task.id, task.hostname, klass)
        for old, new, status in w.transitions:
            by_state[new.value] = by_state.get(new.value, 0) + 1
            emit = log.debug if new in ROUTINE else log.info
            emit(
                "task_state_changed",
                task_id=task.id,
                old=old.value,
                new=new.value,
                attempt=task.attempts,
                mesos_state=status.state,
                reason=status.reason,
                message=status.message,
                hostname=task.hostname,
            )
        task.failures, task.cluster_failures = w.failures, w.cluster_failures
        task.last_update = now
        if task.state in self.launched_counts:
            self.launched_counts[task.state] -= 1
        if w.requeue:
            self._requeue(task, w.next_attempt_at or 0.0)
            return True
        self._launching.pop(task.id, None)
        task.state = w.state
        if w.state.terminal:
            self._nodes.release(task.hostname, task.shape)
            self.tasks.pop(task.id, None)
            self.failed_hosts.forget(task.id)
            self.timers.task_ended(task.id, now)
            self._count_ended(w.state)
        else:
            self.launched_counts[w.state] += 1
        return False

    def _requeue(self, task: Task, wait_until: float = 0.0) -> None:
        """A launched task goes back to the queue: its node's resources are free again. With
        ``wait_until`` it waits out its retry back-off outside the queue index until then."""
        self._nodes.release(task.hostname, task.shape)
        self._launching.pop(task.id, None)
        task.state = TaskState.QUEUED
        task.agent_id = task.hostname = None
        self.queue_depth += 1
        if wait_until:
            self.timers.wait_out(task, wait_until)
        else:
            self.index.add(task)

    def _shrink_tables(self) -> None:
        """Give back the hash tables of the per-task dicts once a peak has passed: a dict never
        shrinks by itself, so 100,000 tasks once in flight would keep their table for good."""
        for table in (self.tasks, self._launching):
            if sys.getsizeof(table) > SHRINK_SLACK_BYTES + 400 * len(table):
                kept = dict(table)
                table.clear()  # frees the table; the dict object (shared with the index) stays
                table.update(kept)

    def _count_ended(self, state: TaskState) -> None:
        self.ended_counts[state] = self.ended_counts.get(state, 0) + 1
