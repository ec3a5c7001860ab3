"""The rows each durable change (``state.changes``) writes, the same for every SQL backend.

``rows_of`` turns one write's changes into ``RowBatch``es: a ``RowStatement`` naming what the
rows do, and positional row tuples in the parameter order of that statement. A backend keeps
only its SQL text per ``RowStatement`` (``state.sqlite``: ``?`` parameters; ``state.postgres``:
``$n``, COPY for new tasks), so a change to a task row is made here once for both.

Values are plain Python: booleans stay ``bool`` (SQLite stores them as 0/1), times are epoch
seconds, ports and constraints JSON text.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from scale_scheduler.state import changes as c
from scale_scheduler.state.domain import TaskState, constraints_json
from scale_scheduler.state.scheduler import MISSING_MESSAGE
from scale_scheduler.state.tasks import ATTEMPT_HISTORY, EndedAttempt, Task

Row = tuple[Any, ...]


class RowStatement(enum.Enum):
    """What a batch of rows does; the comment names each row's parameters in order."""

    INSERT_TASK = "insert_task"
    """id, name, priority, cpus, mem, disk, gpus, ports, constraints, spec, max_attempts,
    created, queued, last_modified, task_group (state QUEUED)"""
    LAUNCH_INTENT = "launch_intent"
    """attempts, agent_id, hostname, assigned_ports, launched, last_modified, id"""
    REVERT_LAUNCH = "revert_launch"
    """failures, cluster_failures, queued, last_modified, id, attempts (if still LAUNCHING)"""
    STATUS = "status"
    """state, failures, cluster_failures, started (if unset), ended, last_modified, status_state,
    status_message, status_reason, status_source, status_time, id"""
    REQUEUE_AFTER_STATUS = "requeue_after_status"
    """failures, cluster_failures, queued, last_modified, next_attempt_at, status_state,
    status_message, status_reason, status_source, status_time, id"""
    RECORD_ATTEMPT = "record_attempt"
    """an ``EndedAttempt`` (insert or replace in task_attempts)"""
    TRIM_ATTEMPTS = "trim_attempts"
    """task_id, the last attempt number to drop"""
    CANCEL = "cancel"
    """ended, last_modified, id (if still QUEUED)"""
    KILL = "kill"
    """last_modified, id"""
    COUNT_ENDED = "count_ended"
    """n, state: add to task_counts"""
    ENSURE_SCHEDULER = "ensure_scheduler"
    """last_modified (insert the scheduler row if missing)"""
    PAUSE = "pause"
    """is_paused, last_modified"""
    FRAMEWORK = "framework"
    """framework_id, registered"""
    NODE_FLAGS = "node_flags"
    """is_paused or None, set_reason, pause_reason, is_active or None, last_modified, id"""
    INSERT_NODE = "insert_node"
    """id, hostname, agent_id, created, last_modified"""
    NODE_AGENT = "node_agent"
    """agent_id, id"""
    NODE_LAST_OFFER = "node_last_offer"
    """last_offer, id"""
    DELETE_TASK = "delete_task"
    """id, state"""
    DELETE_ATTEMPTS = "delete_attempts"
    """task_id"""
    UNCOUNT = "uncount"
    """n, state: take from task_counts"""
    MARK_PRUNED = "mark_pruned"
    """pruned_through (at least), pruned count"""


@dataclass(frozen=True, slots=True)
class RowBatch:
    """One statement over ``rows``. ``expect_rows``: the write fails with ``MissingRowError``
    (``missing_message``) when its single row changes nothing (it comes first in its write)."""

    statement: RowStatement
    rows: Sequence[Row]
    expect_rows: bool = False
    missing_message: str = "database row is missing"


# --- tasks -------------------------------------------------------------------------------------


def insert_row(task: Task, name: str, now: float) -> Row:
    """A new task's row (``RowStatement.INSERT_TASK``)."""
    shape = task.shape
    constraints = (
        msgspec.json.encode(constraints_json(shape.constraints)).decode()
        if shape.constraints
        else None
    )
    return (
        task.id,
        name,
        task.priority,
        shape.cpus,
        shape.mem,
        shape.disk,
        shape.gpus,
        shape.ports,
        constraints,
        task.spec,
        task.max_attempts,
        now,
        now,
        now,
        shape.group,
    )


def ports_json(ports: Sequence[int]) -> str | None:
    return msgspec.json.encode(list(ports)).decode() if ports else None


def count_ended(states: Iterable[TaskState]) -> list[RowBatch]:
    """What adds tasks that reach terminal ``states`` to ``task_counts``: part of the very write
    that ends them (a terminal state is final, so each task is counted once)."""
    counts = Counter(state.value for state in states if state.terminal)
    if not counts:
        return []
    return [RowBatch(RowStatement.COUNT_ENDED, [(n, state) for state, n in counts.items()])]


def attempt_rows(ended: Sequence[EndedAttempt]) -> list[RowBatch]:
    """What records attempts that ended in failure, keeping the last ``ATTEMPT_HISTORY`` per
    task (a trim only for tasks past that many)."""
    if not ended:
        return []
    batches = [RowBatch(RowStatement.RECORD_ATTEMPT, [tuple(e) for e in ended])]
    trims = [(e.task_id, e.attempt - ATTEMPT_HISTORY) for e in ended if e.attempt > ATTEMPT_HISTORY]
    if trims:
        batches.append(RowBatch(RowStatement.TRIM_ATTEMPTS, trims))
    return batches


def _queued(change: c.TasksQueued) -> list[RowBatch]:
    now = change.now
    rows = [insert_row(t, n, now) for t, n in zip(change.tasks, change.names, strict=True)]
    return [RowBatch(RowStatement.INSERT_TASK, rows)] if rows else []


def _intents(change: c.LaunchIntents) -> list[RowBatch]:
    now = change.now
    rows = [
        (i.attempt, i.agent_id, i.hostname, ports_json(i.ports), now, now, i.task_id)
        for i in change.intents
    ]
    return [RowBatch(RowStatement.LAUNCH_INTENT, rows)] if rows else []


def _reverted(change: c.LaunchesReverted) -> list[RowBatch]:
    now = change.now
    rows = [
        (r.failures, r.cluster_failures, now, now, r.task_id, r.attempt) for r in change.reverts
    ]
    return [RowBatch(RowStatement.REVERT_LAUNCH, rows)] if rows else []


def _statuses(change: c.StatusesApplied) -> list[RowBatch]:
    now = change.now
    status_rows: list[Row] = []
    requeue_rows: list[Row] = []
    for w in change.changes:
        last = (w.status_state, w.status_message, w.status_reason, w.status_source)
        if w.requeue:
            requeue_rows.append(
                (
                    w.failures,
                    w.cluster_failures,
                    now,
                    now,
                    w.next_attempt_at,
                    *last,
                    w.status_time or now,
                    w.task_id,
                )
            )
        else:
            status_rows.append(
                (
                    w.state.value,
                    w.failures,
                    w.cluster_failures,
                    now if w.started else None,
                    now if w.state.terminal else None,
                    now,
                    *last,
                    w.status_time or now,
                    w.task_id,
                )
            )
    batches: list[RowBatch] = []
    if status_rows:
        batches.append(RowBatch(RowStatement.STATUS, status_rows))
        batches += count_ended(w.state for w in change.changes if not w.requeue)
    if requeue_rows:
        batches.append(RowBatch(RowStatement.REQUEUE_AFTER_STATUS, requeue_rows))
    batches += attempt_rows(
        [w.ended_attempt for w in change.changes if w.ended_attempt is not None]
    )
    return batches


def _canceled(change: c.TaskCanceled) -> list[RowBatch]:
    return [
        RowBatch(RowStatement.CANCEL, [(change.now, change.now, change.task_id)]),
        *count_ended([TaskState.CANCELED]),
    ]


def _kill(change: c.KillRequested) -> list[RowBatch]:
    return [RowBatch(RowStatement.KILL, [(change.now, change.task_id)])]


def _pruned(change: c.TasksPruned) -> list[RowBatch]:
    """One retention batch: delete the rows and their attempts, uncount them, move the mark."""
    tasks = change.tasks
    if not tasks:
        return []
    by_state = Counter(t.state.value for t in tasks)
    return [
        RowBatch(RowStatement.DELETE_TASK, [(t.task_id, t.state.value) for t in tasks]),
        RowBatch(RowStatement.DELETE_ATTEMPTS, [(t.task_id,) for t in tasks]),
        RowBatch(RowStatement.UNCOUNT, [(n, state) for state, n in by_state.items()]),
        RowBatch(RowStatement.MARK_PRUNED, [(max(t.task_id for t in tasks), len(tasks))]),
    ]


# --- the scheduler row, nodes, the framework id ------------------------------------------------


def _scheduler_ensured(change: c.SchedulerRowEnsured) -> list[RowBatch]:
    return [RowBatch(RowStatement.ENSURE_SCHEDULER, [(change.now,)])]


def _pause_set(change: c.PauseSet) -> list[RowBatch]:
    return [
        RowBatch(
            RowStatement.PAUSE,
            [(change.is_paused, change.now)],
            expect_rows=True,
            missing_message=MISSING_MESSAGE,
        )
    ]


def _node_flags(change: c.NodeFlagsChanged) -> list[RowBatch]:
    row = (
        change.is_paused,
        change.set_reason,
        change.pause_reason,
        change.is_active,
        change.now,
        change.node_id,
    )
    return [
        RowBatch(
            RowStatement.NODE_FLAGS,
            [row],
            expect_rows=True,
            missing_message=f"Node {change.node_id} is missing from the database.",
        )
    ]


def _nodes_sighted(change: c.NodesSighted) -> list[RowBatch]:
    batches: list[RowBatch] = []
    if change.new:
        rows = [(n.node_id, n.hostname, n.agent_id, n.now, n.now) for n in change.new]
        batches.append(RowBatch(RowStatement.INSERT_NODE, rows))
    if change.moved:
        moved = [(agent, node_id) for node_id, agent in change.moved]
        batches.append(RowBatch(RowStatement.NODE_AGENT, moved))
    return batches


def _nodes_offered(change: c.NodesOffered) -> list[RowBatch]:
    if not change.last_offers:
        return []
    rows = [(at, node_id) for node_id, at in change.last_offers]
    return [RowBatch(RowStatement.NODE_LAST_OFFER, rows)]


def _framework_saved(change: c.FrameworkIdSaved) -> list[RowBatch]:
    return [RowBatch(RowStatement.FRAMEWORK, [(change.framework_id, change.now)])]


_ROWS: dict[type, Callable[[Any], list[RowBatch]]] = {
    c.TasksQueued: _queued,
    c.LaunchIntents: _intents,
    c.LaunchesReverted: _reverted,
    c.StatusesApplied: _statuses,
    c.TaskCanceled: _canceled,
    c.KillRequested: _kill,
    c.TasksPruned: _pruned,
    c.SchedulerRowEnsured: _scheduler_ensured,
    c.PauseSet: _pause_set,
    c.NodeFlagsChanged: _node_flags,
    c.NodesSighted: _nodes_sighted,
    c.NodesOffered: _nodes_offered,
    c.FrameworkIdSaved: _framework_saved,
}


def rows_of(changes: Sequence[c.Change]) -> list[RowBatch]:
    """The row batches of one write, in the order of its changes."""
    batches: list[RowBatch] = []
    for change in changes:
        batches += _ROWS[type(change)](change)
    return batches
