"""Each durable change (``state.changes``) as PostgreSQL statements: the rows ``state.rows``
builds for every backend, bound to PostgreSQL's SQL (``$n`` parameters, booleans, ``GREATEST``).

New tasks are written with COPY (the B2 path queues thousands per write); launch intents and
status updates (a pass launches thousands, and their updates follow) as one UPDATE over arrays of
their columns; the other batches are ``executemany`` (asyncpg pipelines the rows: one round trip
per batch, but one execution per row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scale_scheduler.state import changes as c
from scale_scheduler.state.domain import TaskState
from scale_scheduler.state.rows import RowBatch, RowStatement, rows_of


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


SQL: dict[RowStatement, str] = {
    RowStatement.LAUNCH_INTENT: INTENT_SQL,
    RowStatement.REVERT_LAUNCH: REVERT_SQL,
    RowStatement.STATUS: STATUS_SQL,
    RowStatement.REQUEUE_AFTER_STATUS: REQUEUE_AFTER_STATUS_SQL,
    RowStatement.RECORD_ATTEMPT: ATTEMPT_SQL,
    RowStatement.TRIM_ATTEMPTS: TRIM_ATTEMPTS_SQL,
    RowStatement.CANCEL: CANCEL_SQL,
    RowStatement.KILL: KILL_SQL,
    RowStatement.COUNT_ENDED: COUNT_ENDED_SQL,
    RowStatement.ENSURE_SCHEDULER: ENSURE_SCHEDULER_SQL,
    RowStatement.PAUSE: PAUSE_SQL,
    RowStatement.FRAMEWORK: FRAMEWORK_SQL,
    RowStatement.NODE_FLAGS: NODE_FLAGS_SQL,
    RowStatement.INSERT_NODE: NODE_INSERT_SQL,
    RowStatement.NODE_AGENT: NODE_AGENT_SQL,
    RowStatement.NODE_LAST_OFFER: NODE_LAST_OFFER_SQL,
    RowStatement.DELETE_TASK: DELETE_SQL,
    RowStatement.DELETE_ATTEMPTS: DELETE_ATTEMPTS_SQL,
    RowStatement.UNCOUNT: UNCOUNT_SQL,
    RowStatement.MARK_PRUNED: MARK_SQL,
}
"""PostgreSQL's statement for each kind of row ``state.rows`` builds (new tasks are copied)."""
ARRAY_SQL: dict[RowStatement, str] = {
    RowStatement.LAUNCH_INTENT: INTENT_ARRAY_SQL,
    RowStatement.STATUS: STATUS_ARRAY_SQL,
}
"""The kinds of row also written as one UPDATE over arrays of their columns."""
QUEUED = TaskState.QUEUED.value


def _statement(batch: RowBatch) -> PgStatement:
    if batch.statement is RowStatement.INSERT_TASK:
        # COPY takes no literal: the state is a column of each row.
        rows = [(*row, QUEUED) for row in batch.rows]
        return PgStatement("tasks", rows, copy_columns=TASK_COPY_COLUMNS)
    return PgStatement(
        SQL[batch.statement],
        batch.rows,
        batch.expect_rows,
        batch.missing_message,
        array_sql=ARRAY_SQL.get(batch.statement),
    )


def statements_of(changes: Sequence[c.Change]) -> list[PgStatement]:
    """The statements of one write, in the order of its changes."""
    return [_statement(batch) for batch in rows_of(changes)]
