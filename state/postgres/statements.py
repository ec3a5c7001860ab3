"""Each durable change (``state.changes``) as PostgreSQL statements: the same rows as SQLite's
(``state.sqlite``), in PostgreSQL's SQL (``$n`` parameters, booleans, ``GREATEST``).

New tasks are written with COPY (the B2 path queues thousands per write); launch intents and
status updates (a pass launches thousands, and their updates follow) as one UPDATE over arrays of
their columns; the other batches are ``executemany`` (asyncpg pipelines the rows: one round trip
per batch, but one execution per row).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scale_scheduler.state import changes as c
from scale_scheduler.state.domain import TaskState
from scale_scheduler.state.scheduler import MISSING_MESSAGE
from scale_scheduler.state.sqlite.task_rows import insert_row, ports_json
from scale_scheduler.state.tasks import ATTEMPT_HISTORY


@dataclass(frozen=True)
class PgStatement:
    """One statement over ``rows``; with ``copy_columns``, ``sql`` is a table the rows are
    copied into. ``expect_rows``: the write fails with ``MissingRowError`` (``missing_message``)
    when its single row changes nothing (put it first in its write)."""

    sql: str
    rows: Sequence[Sequence[Any]]
    expect_rows: bool = False
    missing_message: str = "database row is missing"
    copy_columns: tuple[str, ...] | None = None
    array_sql: str | None = None
    """The same statement over the batch's columns as arrays (``unnest``): one execution for
    the whole batch instead of one per row. Used when no row's last value (the row's id)
    repeats in the batch, where a join would apply one of the repeats only."""

    @property
    def key(self) -> tuple[str, tuple[str, ...] | None]:
        """Consecutive statements with the same key are run as one batch."""
        return self.sql, self.copy_columns


TASK_COPY_COLUMNS = (
    "id",
    "name",
    "priority",
    "cpus",
    "mem",
    "disk",
    "gpus",
    "ports",
    "constraints",
    "spec",
    "max_attempts",
    "created",
    "queued",
    "last_modified",
    "task_group",
    "state",
)

INTENT_SQL = (
    "UPDATE tasks SET state = 'LAUNCHING', attempts = $1, agent_id = $2, hostname = $3, "
    "assigned_ports = $4, launched = $5, last_modified = $6, next_attempt_at = NULL, "
    "status_state = NULL, status_message = NULL, status_reason = NULL, status_source = NULL, "
    "status_time = NULL WHERE id = $7"
)
INTENT_ARRAY_SQL = (
    "UPDATE tasks AS t SET state = 'LAUNCHING', attempts = v.attempt, agent_id = v.agent_id, "
    "hostname = v.hostname, assigned_ports = v.ports, launched = v.launched, "
    "last_modified = v.modified, next_attempt_at = NULL, status_state = NULL, "
    "status_message = NULL, status_reason = NULL, status_source = NULL, status_time = NULL "
    "FROM unnest($1::integer[], $2::text[], $3::text[], $4::text[], $5::double precision[], "
    "$6::double precision[], $7::bigint[]) "
    "AS v(attempt, agent_id, hostname, ports, launched, modified, id) WHERE t.id = v.id"
)
REVERT_SQL = (
    "UPDATE tasks SET state = 'QUEUED', failures = $1, cluster_failures = $2, agent_id = NULL, "
    "hostname = NULL, assigned_ports = NULL, queued = $3, last_modified = $4 "
    "WHERE id = $5 AND state = 'LAUNCHING' AND attempts = $6"
)
STATUS_SQL = (
    "UPDATE tasks SET state = $1, failures = $2, cluster_failures = $3, "
    "started = COALESCE(started, $4), ended = $5, last_modified = $6, status_state = $7, "
    "status_message = $8, status_reason = $9, status_source = $10, status_time = $11 "
    "WHERE id = $12"
)
STATUS_ARRAY_SQL = (
    "UPDATE tasks AS t SET state = v.state, failures = v.failures, "
    "cluster_failures = v.cluster_failures, started = COALESCE(t.started, v.started), "
    "ended = v.ended, last_modified = v.modified, status_state = v.status_state, "
    "status_message = v.status_message, status_reason = v.status_reason, "
    "status_source = v.status_source, status_time = v.status_time "
    "FROM unnest($1::text[], $2::integer[], $3::integer[], $4::double precision[], "
    "$5::double precision[], $6::double precision[], $7::text[], $8::text[], $9::text[], "
    "$10::text[], $11::double precision[], $12::bigint[]) "
    "AS v(state, failures, cluster_failures, started, ended, modified, status_state, "
    "status_message, status_reason, status_source, status_time, id) WHERE t.id = v.id"
)
REQUEUE_AFTER_STATUS_SQL = (
    "UPDATE tasks SET state = 'QUEUED', failures = $1, cluster_failures = $2, agent_id = NULL, "
    "hostname = NULL, assigned_ports = NULL, queued = $3, last_modified = $4, "
    "next_attempt_at = $5, status_state = $6, status_message = $7, status_reason = $8, "
    "status_source = $9, status_time = $10 WHERE id = $11"
)
ATTEMPT_SQL = (
    "INSERT INTO task_attempts (task_id, attempt, agent_id, hostname, launched, ended, state, "
    "reason, failure_class) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
    "ON CONFLICT (task_id, attempt) DO UPDATE SET agent_id = EXCLUDED.agent_id, "
    "hostname = EXCLUDED.hostname, launched = EXCLUDED.launched, ended = EXCLUDED.ended, "
    "state = EXCLUDED.state, reason = EXCLUDED.reason, failure_class = EXCLUDED.failure_class"
)
TRIM_ATTEMPTS_SQL = "DELETE FROM task_attempts WHERE task_id = $1 AND attempt <= $2"
DELETE_ATTEMPTS_SQL = "DELETE FROM task_attempts WHERE task_id = $1"
CANCEL_SQL = (
    "UPDATE tasks SET state = 'CANCELED', ended = $1, last_modified = $2 "
    "WHERE id = $3 AND state = 'QUEUED'"
)
KILL_SQL = "UPDATE tasks SET kill_requested = true, last_modified = $1 WHERE id = $2"
COUNT_ENDED_SQL = "UPDATE task_counts SET n = n + $1 WHERE state = $2"

ENSURE_SCHEDULER_SQL = (
    "INSERT INTO scheduler (id, is_paused, last_modified) VALUES (1, false, $1) "
    "ON CONFLICT (id) DO NOTHING"
)
PAUSE_SQL = "UPDATE scheduler SET is_paused = $1, last_modified = $2 WHERE id = 1"
FRAMEWORK_SQL = (
    "INSERT INTO framework (id, framework_id, registered) VALUES (1, $1, $2) "
    "ON CONFLICT (id) DO UPDATE SET framework_id = excluded.framework_id, "
    "registered = excluded.registered"
)
# ``FlagChange.applied_to`` in SQL, from the row as committed (in SET, columns are the old values).
NODE_FLAGS_SQL = (
    "UPDATE nodes SET "
    "pause_reason = CASE WHEN NOT COALESCE($1::boolean, is_paused) THEN NULL "
    "WHEN $2 THEN $3 ELSE pause_reason END, "
    "is_paused = COALESCE($1::boolean, is_paused), "
    "is_active = COALESCE($4::boolean, is_active), "
    "last_modified = $5 "
    "WHERE id = $6"
)
NODE_INSERT_SQL = (
    "INSERT INTO nodes (id, hostname, agent_id, is_paused, pause_reason, is_active, created, "
    "last_modified, last_offer) VALUES ($1, $2, $3, false, NULL, true, $4, $5, NULL) "
    "ON CONFLICT (hostname) DO UPDATE SET agent_id = excluded.agent_id"
)
NODE_AGENT_SQL = "UPDATE nodes SET agent_id = $1 WHERE id = $2"
NODE_LAST_OFFER_SQL = "UPDATE nodes SET last_offer = $1 WHERE id = $2"
DELETE_SQL = "DELETE FROM tasks WHERE id = $1 AND state = $2"
UNCOUNT_SQL = "UPDATE task_counts SET n = n - $1 WHERE state = $2"
MARK_SQL = (
    "UPDATE retention SET pruned_through = GREATEST(pruned_through, $1), "
    "pruned_total = pruned_total + $2 WHERE id = 1"
)


def _count_ended(states: Iterable[TaskState]) -> list[PgStatement]:
    counts = Counter(state.value for state in states if state.terminal)
    if not counts:
        return []
    return [PgStatement(COUNT_ENDED_SQL, [(n, state) for state, n in counts.items()])]


def _queued(change: c.TasksQueued) -> list[PgStatement]:
    now = change.now
    rows = [
        (*insert_row(t, n, now), TaskState.QUEUED.value)
        for t, n in zip(change.tasks, change.names, strict=True)
    ]
    return [PgStatement("tasks", rows, copy_columns=TASK_COPY_COLUMNS)] if rows else []


def _intents(change: c.LaunchIntents) -> list[PgStatement]:
    now = change.now
    rows = [
        (i.attempt, i.agent_id, i.hostname, ports_json(i.ports), now, now, i.task_id)
        for i in change.intents
    ]
    return [PgStatement(INTENT_SQL, rows, array_sql=INTENT_ARRAY_SQL)] if rows else []


def _reverted(change: c.LaunchesReverted) -> list[PgStatement]:
    now = change.now
    rows = [
        (r.failures, r.cluster_failures, now, now, r.task_id, r.attempt) for r in change.reverts
    ]
    return [PgStatement(REVERT_SQL, rows)] if rows else []


def _statuses(change: c.StatusesApplied) -> list[PgStatement]:
    now = change.now
    status_rows: list[tuple[Any, ...]] = []
    requeue_rows: list[tuple[Any, ...]] = []
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
    statements = []
    if status_rows:
        statements.append(PgStatement(STATUS_SQL, status_rows, array_sql=STATUS_ARRAY_SQL))
        statements += _count_ended(w.state for w in change.changes if not w.requeue)
    if requeue_rows:
        statements.append(PgStatement(REQUEUE_AFTER_STATUS_SQL, requeue_rows))
    ended = [w.ended_attempt for w in change.changes if w.ended_attempt is not None]
    if ended:
        # The last ATTEMPT_HISTORY failed attempts of each task, as SQLite keeps them.
        statements.append(PgStatement(ATTEMPT_SQL, [tuple(e) for e in ended]))
        trims = [
            (e.task_id, e.attempt - ATTEMPT_HISTORY) for e in ended if e.attempt > ATTEMPT_HISTORY
        ]
        if trims:
            statements.append(PgStatement(TRIM_ATTEMPTS_SQL, trims))
    return statements


def _canceled(change: c.TaskCanceled) -> list[PgStatement]:
    return [
        PgStatement(CANCEL_SQL, [(change.now, change.now, change.task_id)]),
        *_count_ended([TaskState.CANCELED]),
    ]


def _kill(change: c.KillRequested) -> list[PgStatement]:
    return [PgStatement(KILL_SQL, [(change.now, change.task_id)])]


def _pruned(change: c.TasksPruned) -> list[PgStatement]:
    tasks = change.tasks
    if not tasks:
        return []
    by_state = Counter(t.state.value for t in tasks)
    return [
        PgStatement(DELETE_SQL, [(t.task_id, t.state.value) for t in tasks]),
        PgStatement(DELETE_ATTEMPTS_SQL, [(t.task_id,) for t in tasks]),
        PgStatement(UNCOUNT_SQL, [(n, state) for state, n in by_state.items()]),
        PgStatement(MARK_SQL, [(max(t.task_id for t in tasks), len(tasks))]),
    ]


def _scheduler_ensured(change: c.SchedulerRowEnsured) -> list[PgStatement]:
    return [PgStatement(ENSURE_SCHEDULER_SQL, [(change.now,)])]


def _pause_set(change: c.PauseSet) -> list[PgStatement]:
    return [
        PgStatement(
            PAUSE_SQL,
            [(change.is_paused, change.now)],
            expect_rows=True,
            missing_message=MISSING_MESSAGE,
        )
    ]


def _node_flags(change: c.NodeFlagsChanged) -> list[PgStatement]:
    row = (
        change.is_paused,
        change.set_reason,
        change.pause_reason,
        change.is_active,
        change.now,
        change.node_id,
    )
    return [
        PgStatement(
            NODE_FLAGS_SQL,
            [row],
            expect_rows=True,
            missing_message=f"Node {change.node_id} is missing from the database.",
        )
    ]


def _nodes_sighted(change: c.NodesSighted) -> list[PgStatement]:
    statements: list[PgStatement] = []
    if change.new:
        rows = [(n.node_id, n.hostname, n.agent_id, n.now, n.now) for n in change.new]
        statements.append(PgStatement(NODE_INSERT_SQL, rows))
    if change.moved:
        moved = [(agent, node_id) for node_id, agent in change.moved]
        statements.append(PgStatement(NODE_AGENT_SQL, moved))
    return statements


def _nodes_offered(change: c.NodesOffered) -> list[PgStatement]:
    if not change.last_offers:
        return []
    rows = [(at, node_id) for node_id, at in change.last_offers]
    return [PgStatement(NODE_LAST_OFFER_SQL, rows)]


def _framework_saved(change: c.FrameworkIdSaved) -> list[PgStatement]:
    return [PgStatement(FRAMEWORK_SQL, [(change.framework_id, change.now)])]


_STATEMENTS: dict[type, Callable[[Any], list[PgStatement]]] = {
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


def statements_of(changes: Sequence[c.Change]) -> list[PgStatement]:
    """The statements of one write, in the order of its changes."""
    statements: list[PgStatement] = []
    for change in changes:
        statements += _STATEMENTS[type(change)](change)
    return statements
