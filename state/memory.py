"""``MemoryState``: the state interface kept in memory (tests of the scheduling core, demos).

It keeps what the SQLite backend keeps (the task table with every field the API shows, terminal
counts, the retention mark, the scheduler row, nodes, the framework id) and follows the same
rules: a write's changes all take effect or none does (a change naming a missing row fails the
write with ``MissingRowError``), each write takes a turn of the event loop before it takes effect
(as a commit does), writes take effect and are applied in the order they were made, and memory's
``apply`` runs after its changes. Nothing survives the process.

``before_commit`` is a public seam for tests: called with each write's changes before they take
effect; raising there fails that write (as a failed commit does).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from scale_scheduler.state import changes as c
from scale_scheduler.state.domain import LAUNCHED, ShapeInterner, TaskState, constraints_json
from scale_scheduler.state.interface import (
    MaintainedState,
    MissingRowError,
    NodeRecord,
    PageUsage,
    RetentionMark,
    SchedulerRecord,
    StateClosedError,
    StorageSizes,
    TaskEnd,
)
from scale_scheduler.state.scheduler import MISSING_MESSAGE
from scale_scheduler.state.tasks import (
    ATTEMPT_HISTORY,
    EMPTY,
    ContainerView,
    EndedAttempt,
    LastStatus,
    Task,
    TaskView,
    attempt_history,
    backoff_view,
    ended_attempt_view,
    iso,
    mesos_task_id,
    spec_decoder,
)

T = TypeVar("T")


@dataclass(slots=True)
class _TaskRow:
    """One task with every stored field."""

    task: Task
    """A copy of the record as queued: identity, shape, spec, max_attempts."""
    name: str
    state: TaskState
    created: float
    queued: float | None
    last_modified: float
    attempts: int = 0
    failures: int = 0
    cluster_failures: int = 0
    kill_requested: bool = False
    agent_id: str | None = None
    hostname: str | None = None
    assigned_ports: list[int] = field(default_factory=list)
    launched: float | None = None
    started: float | None = None
    ended: float | None = None
    status: LastStatus | None = None
    status_time: float | None = None
    next_attempt_at: float | None = None
    ended_attempts: list[EndedAttempt] = field(default_factory=list)
    """Attempts that ended in failure, the last ``ATTEMPT_HISTORY``."""

    def view(self) -> TaskView:
        task, shape = self.task, self.task.shape
        spec = spec_decoder.decode(task.spec)
        queued = self.state is TaskState.QUEUED
        history = attempt_history(
            task.id,
            self.attempts,
            [ended_attempt_view(e) for e in self.ended_attempts],
            self.state.value,
            self.agent_id,
            self.hostname,
            self.launched,
            self.ended,
            self.status.reason if self.status is not None else None,
        )
        return TaskView(
            id=task.id,
            name=self.name,
            state=self.state.value,
            priority=task.priority,
            command=spec.command,
            container=ContainerView(spec.image) if spec.image else None,
            cpus=shape.cpus,
            mem=shape.mem,
            disk=shape.disk,
            gpus=shape.gpus,
            ports=shape.ports,
            env=spec.env or EMPTY,
            labels=spec.labels or EMPTY,
            constraints=constraints_json(shape.constraints),
            group=shape.group,
            max_attempts=task.max_attempts,
            attempts=self.attempts,
            failures=self.failures,
            mesos_task_id=mesos_task_id(task.id, self.attempts) if self.attempts else None,
            agent_id=self.agent_id,
            hostname=self.hostname,
            assigned_ports=list(self.assigned_ports),
            kill_requested=self.kill_requested,
            created=iso(self.created),
            queued=iso(self.queued),
            launched=iso(self.launched),
            started=iso(self.started),
            ended=iso(self.ended),
            last_modified=iso(self.last_modified),
            last_status=self.status,
            waiting_reason=None,
            next_attempt_at=iso(self.next_attempt_at) if queued and self.next_attempt_at else None,
            attempt_history=history,
            kill_grace_period=spec.kill_grace_period,
            max_runtime=spec.max_runtime,
            retry_backoff=backoff_view(spec.retry_backoff),
        )


@dataclass(slots=True)
class _NodeRow:
    hostname: str
    agent_id: str | None
    created: float
    last_modified: float
    is_paused: bool = False
    pause_reason: str | None = None
    is_active: bool = True
    last_offer: float | None = None


class MemoryState:
    """``StateStore`` and ``Maintenance`` in memory."""

    def __init__(self) -> None:
        self.tasks: dict[int, _TaskRow] = {}
        self.terminal_counts: Counter[TaskState] = Counter()
        self.mark = RetentionMark(0, 0)
        self.scheduler: SchedulerRecord | None = None
        self.nodes: dict[int, _NodeRow] = {}
        self.framework_id: str | None = None
        self.commits = 0
        self.before_commit: Callable[[Sequence[c.Change]], Awaitable[None] | None] | None = None
        self._lock = asyncio.Lock()
        self._closing = False

    # -- writes ---------------------------------------------------------------------------------

    async def commit(
        self, changes: Sequence[c.Change], apply: Callable[[], T] | None = None
    ) -> T | None:
        if self._closing:
            raise StateClosedError("the state is shutting down; the write was not made")
        async with self._lock:
            hook = self.before_commit
            if hook is not None:
                waiting = hook(changes)
                if waiting is not None:
                    await waiting
            await asyncio.sleep(0)  # a commit takes a turn of the loop, as on a database
            for change in changes:
                self._check(change)
            for change in changes:
                _APPLY[type(change)](self, change)
            self.commits += 1
            return apply() if apply is not None else None

    def _check(self, change: c.Change) -> None:
        if isinstance(change, c.PauseSet) and self.scheduler is None:
            raise MissingRowError(MISSING_MESSAGE)
        if isinstance(change, c.NodeFlagsChanged) and change.node_id not in self.nodes:
            raise MissingRowError(f"Node {change.node_id} is missing from the database.")

    def _ended(self, row: _TaskRow, state: TaskState, now: float) -> None:
        row.state = state
        row.ended = now
        self.terminal_counts[state] += 1

    def _queued(self, change: c.TasksQueued) -> None:
        now = change.now
        for task, name in zip(change.tasks, change.names, strict=True):
            record = msgspec.structs.replace(task, busy=False, indexed=False)
            self.tasks[task.id] = _TaskRow(record, name, TaskState.QUEUED, now, now, now)

    def _intents(self, change: c.LaunchIntents) -> None:
        now = change.now
        for intent in change.intents:
            row = self.tasks.get(intent.task_id)
            if row is None:
                continue
            row.state = TaskState.LAUNCHING
            row.attempts = intent.attempt
            row.agent_id, row.hostname = intent.agent_id, intent.hostname
            row.assigned_ports = list(intent.ports)
            row.launched = row.last_modified = now
            row.next_attempt_at = None
            row.status = None
            row.status_time = None

    def _reverted(self, change: c.LaunchesReverted) -> None:
        now = change.now
        for revert in change.reverts:
            row = self.tasks.get(revert.task_id)
            if row is None or row.state is not TaskState.LAUNCHING:
                continue
            if row.attempts != revert.attempt:
                continue
            row.state = TaskState.QUEUED
            row.failures, row.cluster_failures = revert.failures, revert.cluster_failures
            row.agent_id = row.hostname = None
            row.assigned_ports = []
            row.queued = row.last_modified = now

    def _statuses(self, change: c.StatusesApplied) -> None:
        now = change.now
        for w in change.changes:
            row = self.tasks.get(w.task_id)
            if row is None:
                continue
            row.failures, row.cluster_failures = w.failures, w.cluster_failures
            row.last_modified = now
            row.status = LastStatus(
                w.status_state or "",
                w.status_message,
                w.status_reason,
                w.status_source,
                iso(w.status_time or now),
            )
            if w.ended_attempt is not None:
                kept = [e for e in row.ended_attempts if e.attempt != w.ended_attempt.attempt]
                kept.append(w.ended_attempt)
                row.ended_attempts = kept[-ATTEMPT_HISTORY:]
            if w.requeue:
                row.state = TaskState.QUEUED
                row.agent_id = row.hostname = None
                row.assigned_ports = []
                row.queued = now
                row.next_attempt_at = w.next_attempt_at
                continue
            if w.started and row.started is None:
                row.started = now
            if w.state.terminal:
                self._ended(row, w.state, now)
            else:
                row.state = w.state

    def _canceled(self, change: c.TaskCanceled) -> None:
        row = self.tasks.get(change.task_id)
        if row is not None and row.state is TaskState.QUEUED:
            row.last_modified = change.now
            self._ended(row, TaskState.CANCELED, change.now)

    def _kill(self, change: c.KillRequested) -> None:
        row = self.tasks.get(change.task_id)
        if row is not None:
            row.kill_requested = True
            row.last_modified = change.now

    def _pruned(self, change: c.TasksPruned) -> None:
        for item in change.tasks:
            row = self.tasks.get(item.task_id)
            if row is not None and row.state is item.state:
                del self.tasks[item.task_id]
            self.terminal_counts[item.state] -= 1  # as SQLite's: victims are read terminal
        if change.tasks:
            through = max(self.mark.pruned_through, max(t.task_id for t in change.tasks))
            self.mark = RetentionMark(through, self.mark.pruned_total + len(change.tasks))

    def _scheduler_ensured(self, change: c.SchedulerRowEnsured) -> None:
        if self.scheduler is None:
            self.scheduler = SchedulerRecord(False, change.now)

    def _pause(self, change: c.PauseSet) -> None:
        self.scheduler = SchedulerRecord(change.is_paused, change.now)

    def _flags(self, change: c.NodeFlagsChanged) -> None:
        node = self.nodes[change.node_id]
        paused = node.is_paused if change.is_paused is None else change.is_paused
        if not paused:
            node.pause_reason = None
        elif change.set_reason:
            node.pause_reason = change.pause_reason
        node.is_paused = paused
        if change.is_active is not None:
            node.is_active = change.is_active
        node.last_modified = change.now

    def _sighted(self, change: c.NodesSighted) -> None:
        by_hostname = {n.hostname: n for n in self.nodes.values()}
        for new in change.new:
            known = by_hostname.get(new.hostname)
            if known is not None:
                known.agent_id = new.agent_id
            else:
                self.nodes[new.node_id] = _NodeRow(new.hostname, new.agent_id, new.now, new.now)
        for node_id, agent in change.moved:
            if node_id in self.nodes:
                self.nodes[node_id].agent_id = agent

    def _offered(self, change: c.NodesOffered) -> None:
        for node_id, at in change.last_offers:
            if node_id in self.nodes:
                self.nodes[node_id].last_offer = at

    def _framework(self, change: c.FrameworkIdSaved) -> None:
        self.framework_id = change.framework_id

    # -- task reads -----------------------------------------------------------------------------

    async def live_tasks(
        self, interner: ShapeInterner, batch: int = 50_000
    ) -> AsyncIterator[list[Task]]:
        for state in (TaskState.QUEUED, *sorted(LAUNCHED, key=lambda s: s.value)):
            rows = [row for _, row in sorted(self.tasks.items()) if row.state is state]
            for start in range(0, len(rows), batch):
                yield [self._record(row, interner) for row in rows[start : start + batch]]

    @staticmethod
    def _record(row: _TaskRow, interner: ShapeInterner) -> Task:
        s = row.task.shape
        shape = interner.get(s.cpus, s.mem, s.disk, s.gpus, s.ports, s.constraints, s.group)
        return Task(
            row.task.id,
            row.task.priority,
            shape,
            row.task.spec,
            row.state,
            row.task.max_attempts,
            row.attempts,
            row.failures,
            row.cluster_failures,
            row.agent_id,
            row.hostname,
            row.launched or 0.0,
            row.last_modified,
            0.0,
            row.kill_requested,
            next_attempt_at=row.next_attempt_at or 0.0,
        )

    async def max_task_id(self) -> int:
        return max(max(self.tasks, default=0), self.mark.pruned_through)

    async def ended_attempts(self, task_ids: Sequence[int]) -> Mapping[int, list[EndedAttempt]]:
        found: dict[int, list[EndedAttempt]] = {}
        for task_id in task_ids:
            row = self.tasks.get(task_id)
            if row is not None and row.ended_attempts:
                found[task_id] = list(row.ended_attempts)
        return found

    async def task_state(self, task_id: int) -> TaskState | None:
        row = self.tasks.get(task_id)
        return row.state if row is not None else None

    async def task(self, task_id: int) -> TaskView | None:
        row = self.tasks.get(task_id)
        return row.view() if row is not None else None

    async def tasks_by_ids(self, ids: Sequence[int]) -> Mapping[int, TaskView]:
        return {i: self.tasks[i].view() for i in ids if i in self.tasks}

    async def task_page(
        self, state: TaskState | None, offset: int, limit: int, after: int | None = None
    ) -> tuple[int, list[TaskView]]:
        ids = sorted(
            i
            for i, row in self.tasks.items()
            if (state is None or row.state is state) and (after is None or i > after)
        )
        page = ids[offset : offset + limit]
        return await self.count_tasks(state), [self.tasks[i].view() for i in page]

    async def recent_tasks(self, limit: int) -> list[TaskView]:
        return [self.tasks[i].view() for i in sorted(self.tasks, reverse=True)[:limit]]

    async def count_tasks(self, state: TaskState | None) -> int:
        if state is not None and state.terminal:
            return self.terminal_counts[state]
        live = sum(
            1
            for row in self.tasks.values()
            if not row.state.terminal and (state is None or row.state is state)
        )
        if state is None:
            return live + sum(self.terminal_counts.values())
        return live

    # -- service reads --------------------------------------------------------------------------

    async def load_nodes(self) -> list[NodeRecord]:
        return [
            NodeRecord(
                i,
                n.hostname,
                n.agent_id,
                n.is_paused,
                n.pause_reason,
                n.is_active,
                n.created,
                n.last_modified,
                n.last_offer,
            )
            for i, n in sorted(self.nodes.items())
        ]

    async def load_scheduler(self) -> SchedulerRecord | None:
        return self.scheduler

    async def load_framework_id(self) -> str | None:
        return self.framework_id

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return not self._closing

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._closing = True
        async with self._lock:  # the writes already made finish first
            pass

    # -- maintenance ----------------------------------------------------------------------------

    async def retention_mark(self) -> RetentionMark:
        return self.mark

    async def terminal_total(self) -> int:
        return sum(self.terminal_counts.values())

    async def task_ends(self, after: int, limit: int) -> list[TaskEnd]:
        ids = sorted(i for i in self.tasks if i > after)[:limit]
        return [
            TaskEnd(
                i,
                self.tasks[i].state.value,
                self.tasks[i].created,
                self.tasks[i].ended
                if self.tasks[i].ended is not None
                else self.tasks[i].last_modified,
            )
            for i in ids
        ]

    async def page_usage(self) -> PageUsage:
        return PageUsage()

    async def reclaim_space(self, keep_free: int = 0) -> int:
        return 0

    async def checkpoint(self) -> None:
        return None

    async def truncate_log(self, wait_ms: int) -> bool:
        return True

    async def storage_sizes(self) -> StorageSizes:
        return StorageSizes()

    @property
    def log_limit(self) -> int:
        return 0


_APPLY: dict[type, Callable[[MemoryState, Any], None]] = {
    c.TasksQueued: MemoryState._queued,
    c.LaunchIntents: MemoryState._intents,
    c.LaunchesReverted: MemoryState._reverted,
    c.StatusesApplied: MemoryState._statuses,
    c.TaskCanceled: MemoryState._canceled,
    c.KillRequested: MemoryState._kill,
    c.TasksPruned: MemoryState._pruned,
    c.SchedulerRowEnsured: MemoryState._scheduler_ensured,
    c.PauseSet: MemoryState._pause,
    c.NodeFlagsChanged: MemoryState._flags,
    c.NodesSighted: MemoryState._sighted,
    c.NodesOffered: MemoryState._offered,
    c.FrameworkIdSaved: MemoryState._framework,
}


def _implements(state: MemoryState) -> MaintainedState:
    return state  # mypy checks that MemoryState implements the whole interface
