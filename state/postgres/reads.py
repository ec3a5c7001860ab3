"""The reads of the state interface in PostgreSQL: SQL and how rows become records.

Rows have SQLite's column order (``state.sqlite.task_rows.VIEW_COLUMNS``), so the API's views
are built by the same ``view_from_row``. Every read is one statement, so one snapshot.
"""

from __future__ import annotations

from typing import Any

from scale_scheduler.state.domain import LIVE, Shape, ShapeInterner, TaskState
from scale_scheduler.state.sqlite.task_rows import (
    ATTEMPT_COLUMNS,
    LOAD_COLUMNS,
    VIEW_COLUMNS,
    shape_of_row,
)
from scale_scheduler.state.tasks import Task

TASK_SQL = f"SELECT {VIEW_COLUMNS} FROM tasks WHERE id = $1"
TASKS_BY_IDS_SQL = f"SELECT {VIEW_COLUMNS} FROM tasks WHERE id = ANY($1::bigint[])"
RECENT_SQL = f"SELECT {VIEW_COLUMNS} FROM tasks ORDER BY id DESC LIMIT $1"
LIVE_SQL = f"SELECT {LOAD_COLUMNS} FROM tasks WHERE state = $1 AND id > $2 ORDER BY id LIMIT $3"
STATE_SQL = "SELECT state FROM tasks WHERE id = $1"
ATTEMPTS_SQL = (
    f"SELECT {ATTEMPT_COLUMNS} FROM task_attempts WHERE task_id = ANY($1::bigint[]) "
    "ORDER BY task_id, attempt"
)
MAX_ID_SQL = (
    "SELECT GREATEST(COALESCE((SELECT MAX(id) FROM tasks), 0), "
    "(SELECT pruned_through FROM retention WHERE id = 1))"
)
LOAD_NODES_SQL = (
    "SELECT id, hostname, agent_id, is_paused, pause_reason, is_active, created, "
    "last_modified, last_offer FROM nodes ORDER BY id"
)
LOAD_SCHEDULER_SQL = "SELECT is_paused, last_modified FROM scheduler WHERE id = 1"
LOAD_FRAMEWORK_SQL = "SELECT framework_id FROM framework WHERE id = 1"
WALK_SQL = (
    "SELECT id, state, created, COALESCE(ended, last_modified) FROM tasks "
    "WHERE id > $1 ORDER BY id LIMIT $2"
)
LOAD_MARK_SQL = "SELECT pruned_through, pruned_total FROM retention WHERE id = 1"
TERMINAL_TOTAL_SQL = "SELECT COALESCE(SUM(n), 0)::bigint FROM task_counts"

_LIVE_VALUES = sorted(state.value for state in LIVE)


def count_sql(state: TaskState | None, first: int = 1) -> tuple[str, list[Any]]:
    """One expression counting the tasks (of one state), parameters numbered from ``first``:
    history from ``task_counts``, live work through the (state, id) index; never a scan of
    history (as SQLite's ``_count_sql``)."""
    if state is not None and state.terminal:
        return (
            f"SELECT COALESCE((SELECT n FROM task_counts WHERE state = ${first}), 0)::bigint",
            [state.value],
        )
    if state is not None:
        return f"SELECT COUNT(*) FROM tasks WHERE state = ${first}", [state.value]
    return (
        "SELECT (SELECT COALESCE(SUM(n), 0) FROM task_counts)::bigint + "
        f"(SELECT COUNT(*) FROM tasks WHERE state = ANY(${first}::text[]))",
        [_LIVE_VALUES],
    )


def page_sql(
    state: TaskState | None, offset: int, limit: int, after: int | None
) -> tuple[str, list[Any]]:
    """One page in id order with the count as its last column (one statement: one snapshot)."""
    counted, params = count_sql(state)
    where: list[str] = []
    if state is not None:
        params.append(state.value)
        where.append(f"state = ${len(params)}")
    if after is not None:
        params.append(after)
        where.append(f"id > ${len(params)}")
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    params += [limit, offset]
    sql = (
        f"SELECT {VIEW_COLUMNS}, ({counted}) FROM tasks {clause}ORDER BY id "
        f"LIMIT ${len(params) - 1} OFFSET ${len(params)}"
    )
    return sql, params


def task_from_row(
    row: Any, state: TaskState, interner: ShapeInterner, shapes: dict[tuple[Any, ...], Shape]
) -> Task:
    """A memory record from a row of ``LIVE_SQL`` (shapes shared through ``shapes``)."""
    key = (*row[2:8], row[20])
    shape = shapes.get(key)
    if shape is None:
        shape = shapes[key] = shape_of_row(row, interner)
    return Task(
        row[0],
        row[1],
        shape,
        bytes(row[8]),
        state,
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
        row[15],
        row[16] or 0.0,
        row[17] or 0.0,
        0.0,
        bool(row[18]),
        next_attempt_at=row[19] or 0.0,
    )
