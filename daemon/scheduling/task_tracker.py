"""The task tracker: the one writer of task state, and the live task records it keeps.

Each change to a task is a command resolved by a pure function (``task_commands``); the tracker
commits the result (``StateStore.commit``) and changes memory only in that write's ``apply``, so
memory (what ``/status/``, the matcher and the views read) never runs ahead of what is durable.
Mesos calls (``task_calls``) come after the commit. Status bursts are ``status_intake``'s,
reconciliation and launch timeouts ``reconciliation``'s, node accounting ``NodeRepository``'s.
Routine progress (STAGING, STARTING, RUNNING, FINISHED) is logged per task at debug and counted
per burst at info (``task_states_changed``); any other change is logged per task at info.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

import structlog

from scale_scheduler.daemon.mesos.driver import SchedulerDriver
from scale_scheduler.daemon.mesos.failure_classes import FailureClass
from scale_scheduler.daemon.mesos.mesos_types import TaskStatus
from scale_scheduler.daemon.scheduling import task_commands as commands
from scale_scheduler.daemon.scheduling.ended_attempts import EndedAttempts
from scale_scheduler.daemon.scheduling.flow_control import LaunchFlow
from scale_scheduler.daemon.scheduling.matcher import AgentLaunch, GroupWaiting
from scale_scheduler.daemon.scheduling.queue_index import QueueIndex
from scale_scheduler.daemon.scheduling.queue_waiting import record_waiting, waiting_reason
from scale_scheduler.daemon.scheduling.reconciliation import Reconciler
from scale_scheduler.daemon.scheduling.retry_waits import RetryWaits
from scale_scheduler.daemon.scheduling.runtime_limits import (
    RuntimeLimits,
    max_runtime,
    runtime_limit_status,
)
from scale_scheduler.daemon.scheduling.status_acks import AckSender
from scale_scheduler.daemon.scheduling.status_intake import StatusIntake
from scale_scheduler.daemon.scheduling.task_calls import TaskCalls
from scale_scheduler.daemon.scheduling.task_commands import Kill, WorkingTask
from scale_scheduler.daemon.scheduling.task_values import (
    DeleteOutcome,
    LaunchPlan,
    NewTask,
    PlannedTask,
    TaskNotFoundError,
)
from scale_scheduler.daemon.service.config import SchedulerConfig
from scale_scheduler.state.changes import (
    KillRequested,
    LaunchesReverted,
    LaunchIntent,
    LaunchIntents,
    RevertedLaunch,
    StatusesApplied,
    TaskCanceled,
    TasksQueued,
)
from scale_scheduler.state.domain import LAUNCHED, Shape, ShapeInterner, TaskState
from scale_scheduler.state.interface import StateStore
from scale_scheduler.state.nodes import NodeRepository
from scale_scheduler.state.tasks import Task, TaskView, new_task_view, spec_encoder

log = structlog.get_logger(__name__)

SHRINK_SLACK_BYTES = 256 * 1024
"""A per-task dict's table is rebuilt once it is this much larger than its entries need."""
KILL_GRACE_SLACK = 5.0
"""Seconds past its grace period after which a kill's end is counted as late."""
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
        self.retry_waits = RetryWaits()
        """Queued tasks waiting out their retry back-off (outside the queue index)."""
        self.runtime_limits = RuntimeLimits()
        self.failed_hosts: dict[int, set[str]] = {}
        """Per live task that failed somewhere: the hosts its attempts failed on (a retry
        prefers others). Only tasks that failed have an entry."""
        # Read by the metrics at scrape time.
        self.failures_by_class: dict[str, int] = {}
        self.retries_delayed = 0
        self.runtime_limits_enforced = 0
        self.kills_past_grace = 0
        """Kills with a grace period whose task ended more than ``KILL_GRACE_SLACK`` after it."""
        self._graceful_kills: dict[int, tuple[float, float]] = {}
        """Per task asked to die with a grace period: (when, grace). Only such tasks."""
        # Read by the metrics at scrape time: launched tasks in memory by state (queued ones are
        # ``queue_depth``), terminal states reached since start.
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
        async for batch in self._store.live_tasks(self.interner):
            for task in batch:
                self.tasks[task.id] = task
                if task.state is TaskState.QUEUED:
                    if task.next_attempt_at > now:
                        self.retry_waits.add(task)
                    else:
                        task.next_attempt_at = 0.0
                        self.index.add(task)
                    self.queue_depth += 1
                else:
                    self._nodes.hold(task.hostname, task.shape)
                    self.launched_counts[task.state] += 1
                    if task.state is TaskState.LAUNCHING:
                        self._launching[task.id] = task
                    limit = max_runtime(task)
                    if limit is not None:
                        self.runtime_limits.watch(task, task.attempts, task.launched, limit)
            loaded += len(batch)
            await asyncio.sleep(0)
        log.info(
            "tasks_loaded",
            live=loaded,
            queued=self.queue_depth,
            retry_waiting=len(self.retry_waits),
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
        interner = self.interner
        encode = spec_encoder.encode
        prepared: list[tuple[Shape, bytes]] = []
        for start in range(0, len(items), SUBMIT_CHUNK):
            if start:
                await asyncio.sleep(0)
            prepared.extend(
                (
                    interner.get(
                        item.cpus,
                        item.mem,
                        item.disk,
                        item.gpus,
                        item.ports,
                        item.constraints,
                        item.group,
                    ),
                    encode(item.spec),
                )
                for item in items[start : start + SUBMIT_CHUNK]
            )
        first = self._next_id
        self._next_id += len(items)
        records = [
            Task(
                id=first + offset,
                priority=item.priority,
                shape=shape,
                spec=spec,
                state=TaskState.QUEUED,
                max_attempts=item.max_attempts,
                last_update=now,
            )
            for offset, (item, (shape, spec)) in enumerate(zip(items, prepared, strict=True))
        ]
        names = [item.spec.name for item in items]

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

        await self._store.commit([TasksQueued(records, names, now)], apply)
        views: list[TaskView] = []
        for start in range(0, len(items), SUBMIT_CHUNK):
            if start:
                await asyncio.sleep(0)
            views.extend(
                new_task_view(
                    first + offset,
                    items[offset].spec,
                    items[offset].priority,
                    prepared[offset][0],
                    items[offset].max_attempts,
                    now,
                )
                for offset in range(start, min(start + SUBMIT_CHUNK, len(items)))
            )
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
        yield from self.retry_waits.waiting()

    def record_waiting(self, waiting: Iterable[GroupWaiting]) -> None:
        record_waiting(self.index, waiting)

    # -- launch intent and launch result --------------------------------------------------------

    def plan_launch(self, launches: Sequence[AgentLaunch], now: float) -> LaunchPlan:
        """Reserve the placed tasks (busy) and build their intents; memory changes in apply."""
        agents: list[tuple[AgentLaunch, list[PlannedTask]]] = []
        intents: list[LaunchIntent] = []
        tasks = self.tasks
        for launch in launches:
            planned: list[PlannedTask] = []
            for placement in launch.placements:
                task = tasks[placement.task_id]
                task.busy = True
                attempt = task.attempts + 1
                planned.append(PlannedTask(task, attempt, placement))
                intents.append(
                    LaunchIntent(
                        task.id, attempt, launch.agent_id, launch.hostname, placement.ports
                    )
                )
            agents.append((launch, planned))

        def apply() -> None:
            debug = log.debug
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
                    limit = max_runtime(task)
                    if limit is not None:
                        self.runtime_limits.watch(task, item.attempt, now, limit)
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

        return LaunchPlan(agents, LaunchIntents(intents, now), apply)

    def release(self, plan: LaunchPlan) -> list[int]:
        """The intent was not committed: the tasks stay queued and may be placed again.
        Returns the ids of those asked to die meanwhile (``cancel_all`` them)."""
        for item in plan.tasks:
            item.task.busy = False
        return commands.doomed(item.task for item in plan.tasks)

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

    async def reconcile_launches(self, planned: Sequence[PlannedTask]) -> None:
        """Launch result: the ACCEPT may or may not have reached the master, so ask it now. Its
        answer decides (lost or unknown: the retry policy, under a fresh attempt id; a real
        state: followed). If it stays silent, the launch timeout still reconciles and then
        marks them lost."""
        tasks = [
            item.task
            for item in planned
            if commands.launch_pending(item.task, item.attempt)
            and self.tasks.get(item.task.id) is item.task
        ]
        if not tasks:
            return
        log.info("launch_outcome_reconcile", tasks=len(tasks))
        await self.calls.reconcile(tasks)

    def finish_launch(self, plan: LaunchPlan) -> tuple[list[Kill], list[int]]:
        """The pass is over for these tasks. Returns (mesos id, agent) pairs to kill now, and the
        ids of tasks asked to die whose launch was reverted (``cancel_all`` them)."""
        kills: list[Kill] = []
        for item in plan.tasks:
            task = item.task
            task.busy = False
            if commands.kill_after_launch(task, item.attempt):
                kills.append((item.mesos_task_id, task.agent_id, commands.kill_grace(task)))
        return kills, commands.doomed(item.task for item in plan.tasks)

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
                self.retry_waits.discard(task.id)
                self.failed_hosts.pop(task.id, None)
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
        grace = commands.kill_grace(task)
        if grace is not None and task.state.launched:
            self._graceful_kills.setdefault(task.id, (now, grace))
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
            if w.requeue and task.hostname and klass is not FailureClass.OPERATOR:
                self.failed_hosts.setdefault(task.id, set()).add(task.hostname)
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
            if self.failed_hosts:
                self.failed_hosts.pop(task.id, None)
            if self._graceful_kills:
                self._kill_ended(task.id, now)
            self._count_ended(w.state)
        else:
            self.launched_counts[w.state] += 1
        return False

    def _kill_ended(self, task_id: int, now: float) -> None:
        asked = self._graceful_kills.pop(task_id, None)
        if asked is not None and now - asked[0] > asked[1] + KILL_GRACE_SLACK:
            self.kills_past_grace += 1
            log.warning("kill_past_grace_period", task_id=task_id, seconds=round(now - asked[0], 3))

    def _requeue(self, task: Task, wait_until: float = 0.0) -> None:
        """A launched task goes back to the queue: its node's resources are free again. With
        ``wait_until`` it waits out its retry back-off outside the queue index until then."""
        self._nodes.release(task.hostname, task.shape)
        self._launching.pop(task.id, None)
        task.state = TaskState.QUEUED
        task.agent_id = task.hostname = None
        self.queue_depth += 1
        if wait_until:
            task.next_attempt_at = wait_until
            self.retry_waits.add(task)
            self.retries_delayed += 1
        else:
            self.index.add(task)

    # -- timers: retry back-offs that end, run-time limits --------------------------------------

    def release_due_retries(self) -> int:
        """Enter the tasks whose retry back-off is over into the queue index (and ask for
        offers); how many."""
        waits = self.retry_waits
        if not waits:
            return 0
        due = waits.due(self._clock())
        if due:
            index = self.index
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
        overdue = self.runtime_limits.overdue(self._clock(), self.tasks)
        if not overdue:
            return
        intake = self.intake
        async with intake.lock:
            # Updates received meanwhile go first: the master may have ended them already.
            await intake.drain()
            decided = [t for t in overdue if t.state.launched and self.tasks.get(t.id) is t]
            if not decided:
                return
            now = self._clock()
            kills = [(t.mesos_task_id, t.agent_id, commands.kill_grace(t)) for t in decided]
            statuses = [runtime_limit_status(t, now) for t in decided]
            self.runtime_limits_enforced += len(decided)
            log.warning("runtime_limit_enforced", tasks=len(decided), first=decided[0].id)
            await intake.process_updates(statuses)
        await self.calls.kill(kills)

    async def check_timers(self) -> None:
        self.release_due_retries()
        await self.enforce_runtime_limits()

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
