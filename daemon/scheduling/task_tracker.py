"""The task tracker: the one writer of task state.

Each change to a task is a command resolved by a pure function (``task_commands``); the tracker
commits the result (``StateStore.commit``) and changes the live records (``task_board``) only in
that write's ``apply``, so what ``/status/``, the matcher and the views read never runs ahead of
what is durable. Mesos calls (``task_calls``) come after the commit. Status bursts are resolved
by ``status_intake``, reconciliation and launch timeouts are ``reconciliation``'s, node
accounting ``NodeRepository``'s, building a pass's launch intents ``launch_plans``', the
back-off, run-time and kill-grace clocks ``lifecycle_timers``'; ``task_path`` wires them.
Routine progress (STAGING, STARTING, RUNNING, FINISHED) is logged per task at debug and counted
per burst at info (``task_states_changed``); any other change is logged per task at info.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

import structlog

from scale_scheduler.daemon.scheduling import task_commands as commands
from scale_scheduler.daemon.scheduling.flow_control import LaunchFlow
from scale_scheduler.daemon.scheduling.launch_plans import (
    AgentLaunches,
    LaunchPlan,
    PlannedTask,
    reserve_launches,
)
from scale_scheduler.daemon.scheduling.lifecycle_timers import LifecycleTimers
from scale_scheduler.daemon.scheduling.matcher import AgentLaunch
from scale_scheduler.daemon.scheduling.task_board import TaskBoard
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
from scale_scheduler.state.changes import (
    KillRequested,
    LaunchesReverted,
    RevertedLaunch,
    StatusesApplied,
    TaskCanceled,
    TasksQueued,
)
from scale_scheduler.state.domain import TaskState
from scale_scheduler.state.interface import StateStore
from scale_scheduler.state.nodes import NodeRepository
from scale_scheduler.state.tasks import Task, TaskView

log = structlog.get_logger(__name__)

ROUTINE = frozenset({TaskState.STAGING, TaskState.STARTING, TaskState.RUNNING, TaskState.FINISHED})
"""New states of a task's normal progress: logged per task at debug, counted per burst at info."""
SUBMIT_CHUNK = 500
"""Tasks of a submitted batch prepared, or given their views, between two yields to the loop."""


class TaskTracker:
    def __init__(
        self,
        store: StateStore,
        nodes: NodeRepository,
        board: TaskBoard,
        timers: LifecycleTimers,
        flow: LaunchFlow,
        calls: TaskCalls,
        clock: Callable[[], float],
        on_work: Callable[[], None],
    ) -> None:
        """``on_work`` is called after tasks were queued or requeued (the core revives offers)."""
        self._store = store
        self._nodes = nodes
        self._board = board
        self._timers = timers
        self._flow = flow
        self._calls = calls
        self._clock = clock
        self._notify_work = on_work
        self._next_id = 1

    # -- start-up -------------------------------------------------------------------------------

    async def load(self) -> None:
        """Load every non-terminal task in batches, yielding to the loop between them."""
        board = self._board
        self._next_id = await self._store.max_task_id() + 1
        loaded = 0
        now = self._clock()
        retry_waits = board.retry_waits
        failed: list[int] = []
        async for batch in self._store.live_tasks(board.interner):
            for task in batch:
                board.tasks[task.id] = task
                if task.failures or task.cluster_failures:
                    failed.append(task.id)
                if task.state is TaskState.QUEUED:
                    if task.next_attempt_at > now:
                        retry_waits.add(task)
                    else:
                        task.next_attempt_at = 0.0
                        board.index.add(task)
                    board.queue_depth += 1
                else:
                    self._nodes.hold(task.hostname, task.shape)
                    board.launched_counts[task.state] += 1
                    if task.state is TaskState.LAUNCHING:
                        board.launching[task.id] = task
                    self._timers.watch_runtime(task, task.attempts, task.launched)
            loaded += len(batch)
            await asyncio.sleep(0)
        # Every requeue counted a failure: only tasks with one have failed attempts to avoid.
        board.failed_hosts.restore(await self._store.ended_attempts(failed))
        log.info(
            "tasks_loaded",
            live=loaded,
            queued=board.queue_depth,
            retry_waiting=len(retry_waits),
            avoiding_hosts=len(board.failed_hosts),
            shapes=len(board.interner),
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
        board = self._board
        now = self._clock()
        prepared: list[Prepared] = []
        for start in range(0, len(items), SUBMIT_CHUNK):
            if start:
                await asyncio.sleep(0)
            prepared += prepare_tasks(items[start : start + SUBMIT_CHUNK], board.interner)
        first = self._next_id
        self._next_id += len(items)
        records = queued_records(items, prepared, first, now)

        def apply() -> None:
            tasks, index = board.tasks, board.index
            for task in records:
                tasks[task.id] = task
                index.add(task)
            board.queue_depth += len(records)
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

    # -- launch intent and launch result --------------------------------------------------------

    def plan_launch(self, launches: Sequence[AgentLaunch], now: float) -> LaunchPlan:
        """Reserve the placed tasks and build their intents; memory changes in apply."""
        board = self._board
        agents, intents = reserve_launches(launches, board.tasks, now)
        return LaunchPlan(agents, intents, lambda: self._apply_launch(agents, now))

    def _apply_launch(self, agents: AgentLaunches, now: float) -> None:
        """The intents are durable: the planned tasks are LAUNCHING on their agents."""
        board = self._board
        debug = log.debug
        watch_runtime = self._timers.watch_runtime
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
                board.launching[task.id] = task
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
            board.queue_depth -= len(planned)
            board.launched_counts[TaskState.LAUNCHING] += len(planned)

    async def revert(self, planned: Sequence[PlannedTask], why: str) -> None:
        """Launch result: the ACCEPT surely took no effect. The tasks go back to the queue
        (their attempt is spent, so a late launch of it is recognised as stale and killed)."""
        board = self._board
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
                board.launched_counts[TaskState.LAUNCHING] -= 1
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
                self._flow.confirmed(count, now)
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
        board = self._board
        task = board.tasks.get(task_id)
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
                board.tasks.pop(task.id, None)
                board.retry_waits.discard(task.id)
                board.failed_hosts.forget(task.id)
                board.queue_depth -= 1
                board.count_ended(TaskState.CANCELED)
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
        self._timers.kill_asked(task, now)
        if target is not None:
            await self._calls.kill([target])
        log.info("task_kill_requested", task_id=task.id, state=task.state.value)
        return DeleteOutcome.KILL_REQUESTED

    # -- status updates (resolved by ``status_intake``) -----------------------------------------

    async def commit_statuses(self, changed: Sequence[WorkingTask], now: float) -> None:
        """Commit one burst's resolved changes, then apply them to memory."""
        board = self._board

        def apply() -> None:
            requeued = False
            by_state: dict[str, int] = {}
            before = board.in_flight
            for w in changed:
                requeued |= self._apply_working(w, now, by_state)
            if before > board.in_flight:
                self._flow.confirmed(before - board.in_flight, now)
            board.shrink_tables()
            log.info("task_states_changed", tasks=len(changed), by_state=by_state)
            if requeued:
                self._notify_work()

        await self._store.commit([StatusesApplied(changed, now)], apply)

    def _apply_working(self, w: WorkingTask, now: float, by_state: dict[str, int]) -> bool:
        """Apply a task's resolved burst to memory; count its changes by new state."""
        board = self._board
        task = w.task
        if w.ended_for_good:
            board.ended.add(task.id, task.attempts)
        klass = w.failure_class
        if klass is not None:
            board.count_failure(klass)
            if w.requeue:
                board.failed_hosts.record(task.id, task.hostname, klass)
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
        if task.state in board.launched_counts:
            board.launched_counts[task.state] -= 1
        if w.requeue:
            self._requeue(task, w.next_attempt_at or 0.0)
            return True
        board.launching.pop(task.id, None)
        task.state = w.state
        if w.state.terminal:
            self._nodes.release(task.hostname, task.shape)
            board.tasks.pop(task.id, None)
            board.failed_hosts.forget(task.id)
            self._timers.task_ended(task.id, now)
            board.count_ended(w.state)
        else:
            board.launched_counts[w.state] += 1
        return False

    def _requeue(self, task: Task, wait_until: float = 0.0) -> None:
        """A launched task goes back to the queue: its node's resources are free again. With
        ``wait_until`` it waits out its retry back-off outside the queue index until then."""
        board = self._board
        self._nodes.release(task.hostname, task.shape)
        board.launching.pop(task.id, None)
        task.state = TaskState.QUEUED
        task.agent_id = task.hostname = None
        board.queue_depth += 1
        if wait_until:
            self._timers.wait_out(task, wait_until)
        else:
            board.index.add(task)
