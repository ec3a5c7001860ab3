"""What a standby does itself while no instance leads: ``Leaderless``.

Durable writes (tasks queued, a queued task canceled or a launched one's kill requested, the
global pause, a node's flags) are committed to the shared database in a transaction that first
makes sure no term is live (``LeaderlessWrites.commit_without_leader``); the next leader loads
them when its term begins. Reads of durable state come from the database. Nothing here touches
Mesos or the scheduling core's memory (a standby has none loaded): a kill requested here is sent
by the next leader, once its reconciliation finds the task on an agent.

What only a leader knows is not shown: a queued task's waiting reason, whether a node is online
and its resources and usage (a node shows as it would offline).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from scale_scheduler.daemon.scheduling.task_values import DeleteOutcome, NewTask, TaskNotFoundError
from scale_scheduler.state.changes import Change, KillRequested, PauseSet, TaskCanceled, TasksQueued
from scale_scheduler.state.domain import ShapeInterner, TaskState
from scale_scheduler.state.interface import (
    LeaderlessWrites,
    LockedRows,
    NodeRecord,
    StateStore,
)
from scale_scheduler.state.nodes import FlagChange, Node, NodeNotFoundError, NodeView
from scale_scheduler.state.nodes import node_view as _node_view
from scale_scheduler.state.scheduler import MISSING_MESSAGE, SchedulerRowMissingError
from scale_scheduler.state.tasks import Task, TaskView, new_task_view, spec_encoder


def _node(record: NodeRecord) -> Node:
    return Node(
        record.id,
        record.hostname,
        record.agent_id,
        record.is_paused,
        record.pause_reason,
        record.is_active,
        record.created,
        record.last_modified,
        record.last_offer,
    )


class Leaderless:
    """A standby's writes and reads of durable state with no leader (``core_facade`` routes
    them here while this instance stands by)."""

    def __init__(
        self,
        store: StateStore,
        writes: LeaderlessWrites,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._writes = writes
        self._clock = clock

    # -- the global pause -----------------------------------------------------------------------

    async def is_paused(self) -> bool:
        row = await self._store.load_scheduler()
        if row is None:
            raise SchedulerRowMissingError(MISSING_MESSAGE)
        return row.is_paused

    async def set_paused(self, is_paused: bool) -> bool:
        now = self._clock()

        async def decide(rows: LockedRows) -> tuple[Sequence[Change], bool]:
            return [PauseSet(is_paused, now)], is_paused

        return await self._writes.commit_without_leader(decide)

    # -- tasks ----------------------------------------------------------------------------------

    async def submit(self, items: Sequence[NewTask]) -> list[TaskView]:
        """Queue tasks, all or nothing, under ids given inside the write."""
        now = self._clock()
        interner = ShapeInterner()
        shapes = [
            interner.get(
                item.cpus, item.mem, item.disk, item.gpus, item.ports, item.constraints, item.group
            )
            for item in items
        ]
        specs = [spec_encoder.encode(item.spec) for item in items]
        names = [item.spec.name for item in items]

        async def decide(rows: LockedRows) -> tuple[Sequence[Change], list[TaskView]]:
            first = await rows.next_task_id()
            records = [
                Task(
                    id=first + offset,
                    priority=item.priority,
                    shape=shapes[offset],
                    spec=specs[offset],
                    state=TaskState.QUEUED,
                    max_attempts=item.max_attempts,
                    last_update=now,
                )
                for offset, item in enumerate(items)
            ]
            views = [
                new_task_view(
                    first + offset, item.spec, item.priority, shapes[offset], item.max_attempts, now
                )
                for offset, item in enumerate(items)
            ]
            return [TasksQueued(records, names, now)], views

        return await self._writes.commit_without_leader(decide)

    async def cancel(self, task_id: int) -> DeleteOutcome:
        """A queued task is canceled; a launched one's kill is requested (the next leader sends
        the KILL); ``TaskNotFoundError`` for an unknown id."""
        now = self._clock()

        async def decide(rows: LockedRows) -> tuple[Sequence[Change], DeleteOutcome]:
            state = await rows.task_state(task_id)
            if state is None:
                raise TaskNotFoundError(f"No task with id {task_id}.")
            if state.terminal:
                return [], DeleteOutcome.ALREADY_TERMINAL
            if state is TaskState.QUEUED:
                return [TaskCanceled(task_id, now)], DeleteOutcome.CANCELED
            return [KillRequested(task_id, now)], DeleteOutcome.KILL_REQUESTED

        return await self._writes.commit_without_leader(decide)

    async def queue_page(self, offset: int, size: int) -> tuple[int, list[TaskView]]:
        return await self._writes.queued_page(offset, size, self._clock())

    async def queue_depth(self) -> int:
        return await self._store.count_tasks(TaskState.QUEUED)

    # -- nodes ----------------------------------------------------------------------------------

    async def node(self, node_id: int) -> NodeView:
        for record in await self._store.load_nodes():
            if record.id == node_id:
                return _node_view(_node(record), await self.is_paused())
        raise NodeNotFoundError(f"No node with id {node_id}.")

    async def node_page(
        self, offset: int, size: int, *, hostname: str | None = None, by_hostname: bool = False
    ) -> tuple[int, list[NodeView]]:
        nodes = [_node(record) for record in await self._store.load_nodes()]
        if hostname is not None:
            nodes = [node for node in nodes if node.hostname == hostname]
        nodes.sort(key=(lambda node: node.hostname) if by_hostname else (lambda node: node.id))
        paused = await self.is_paused()
        return len(nodes), [_node_view(node, paused) for node in nodes[offset : offset + size]]

    async def set_node_flags(self, node_id: int, change: FlagChange) -> NodeView:
        """The node's flags as this write left them (the row is locked while it decides)."""
        now = self._clock()

        async def decide(rows: LockedRows) -> tuple[Sequence[Change], Node]:
            record = await rows.node(node_id)
            if record is None:
                raise NodeNotFoundError(f"No node with id {node_id}.")
            node = _node(record)
            node.is_paused, node.pause_reason, node.is_active = change.applied_to(node)
            node.last_modified = now
            return [change.change(node_id, now)], node

        node = await self._writes.commit_without_leader(decide)
        return _node_view(node, await self.is_paused())
