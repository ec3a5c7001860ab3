"""The task table in SQLite: its statements and reads (``SqliteState`` uses them).

The rows written are ``state.rows``' (the same for every backend), in the parameter order of
the statement they belong to; the rows read are positional tuples in ``VIEW_COLUMNS`` or
``LOAD_COLUMNS`` order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec

from scale_scheduler.state.changes import EndedAttempt
from scale_scheduler.state.domain import (
    LAUNCHED,
    LIVE,
    Shape,
    ShapeInterner,
    TaskState,
    constraints_from,
    constraints_json,
)
from scale_scheduler.state.store import Store
from scale_scheduler.state.tasks import (
    EMPTY,
    AttemptView,
    ContainerView,
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

INSERT_SQL = (
    "INSERT INTO tasks (id, name, state, priority, cpus, mem, disk, gpus, ports, constraints, "
    "spec, max_attempts, created, queued, last_modified, task_group) "
    "VALUES (?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

INTENT_SQL = (
    "UPDATE tasks SET state = 'LAUNCHING', attempts = ?, agent_id = ?, hostname = ?, "
    "assigned_ports = ?, launched = ?, last_modified = ?, next_attempt_at = NULL, "
    "status_state = NULL, status_message = NULL, status_reason = NULL, status_source = NULL, "
    "status_time = NULL WHERE id = ?"
)

REVERT_SQL = (
    "UPDATE tasks SET state = 'QUEUED', failures = ?, cluster_failures = ?, agent_id = NULL, "
    "hostname = NULL, assigned_ports = NULL, queued = ?, last_modified = ? "
    "WHERE id = ? AND state = 'LAUNCHING' AND attempts = ?"
)

STATUS_SQL = (
    "UPDATE tasks SET state = ?, failures = ?, cluster_failures = ?, "
    "started = COALESCE(started, ?), ended = ?, last_modified = ?, status_state = ?, "
    "status_message = ?, status_reason = ?, status_source = ?, status_time = ? WHERE id = ?"
)

REQUEUE_AFTER_STATUS_SQL = (
    "UPDATE tasks SET state = 'QUEUED', failures = ?, cluster_failures = ?, agent_id = NULL, "
    "hostname = NULL, assigned_ports = NULL, queued = ?, last_modified = ?, next_attempt_at = ?, "
    "status_state = ?, status_message = ?, status_reason = ?, status_source = ?, status_time = ? "
    "WHERE id = ?"
)

ATTEMPT_SQL = (
    "INSERT OR REPLACE INTO task_attempts (task_id, attempt, agent_id, hostname, launched, ended, "
    "state, reason, failure_class) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

TRIM_ATTEMPTS_SQL = "DELETE FROM task_attempts WHERE task_id = ? AND attempt <= ?"

ATTEMPT_COLUMNS = (
    "task_id, attempt, agent_id, hostname, launched, ended, state, reason, failure_class"
)


CANCEL_SQL = (
    "UPDATE tasks SET state = 'CANCELED', ended = ?, last_modified = ? "
    "WHERE id = ? AND state = 'QUEUED'"
)

KILL_SQL = "UPDATE tasks SET kill_requested = 1, last_modified = ? WHERE id = ?"

COUNT_ENDED_SQL = "UPDATE task_counts SET n = n + ? WHERE state = ?"


VIEW_COLUMNS = (
    "id, name, state, priority, cpus, mem, disk, gpus, ports, constraints, spec, max_attempts, "
    "attempts, failures, kill_requested, agent_id, hostname, assigned_ports, created, queued, "
    "launched, started, ended, last_modified, status_state, status_message, status_reason, "
    "status_source, status_time, next_attempt_at, task_group"
)

LOAD_COLUMNS = (
    "id, priority, cpus, mem, disk, gpus, ports, constraints, spec, state, max_attempts, "
    "attempts, failures, cluster_failures, agent_id, hostname, launched, last_modified, "
    "kill_requested, next_attempt_at, task_group"
)


async def load_live_tasks(
    store: Store, interner: ShapeInterner, batch: int = 50_000
) -> AsyncIterator[list[Task]]:
    """Every non-terminal task, in id order per state, ``batch`` rows per read. The next read is
    already running while a batch is turned into records."""
    sql = f"SELECT {LOAD_COLUMNS} FROM tasks WHERE state = ? AND id > ? ORDER BY id LIMIT ?"
    shapes: dict[tuple[Any, ...], Shape] = {}
    loop = asyncio.get_running_loop()
    for state in (TaskState.QUEUED, *sorted(LAUNCHED, key=lambda s: s.value)):
        rows = await store.fetchall(sql, (state.value, 0, batch))
        while rows:
            following: asyncio.Future[list[tuple[Any, ...]]] | None = None
            if len(rows) == batch:
                following = loop.create_task(store.fetchall(sql, (state.value, rows[-1][0], batch)))
            tasks: list[Task] = []
            append = tasks.append
            for row in rows:
                key = (*row[2:8], row[20])
                shape = shapes.get(key)
                if shape is None:
                    shape = shapes[key] = shape_of_row(row, interner)
                append(
                    Task(
                        row[0],
                        row[1],
                        shape,
                        row[8],
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
                )
            yield tasks
            rows = await following if following is not None else []


def shape_of_row(row: Sequence[Any], interner: ShapeInterner) -> Shape:
    """A loaded row's shape (``LOAD_COLUMNS``): constraints in the list form, or the
    ``{"attr": "value"}`` shorthand of rows written before the list form (both parse as they
    did when queued)."""
    raw, group = row[7], row[20]
    constraints = constraints_from(msgspec.json.decode(raw), group) if raw else ()
    cpus, mem, disk, gpus, ports = row[2:7]
    return interner.get(cpus, mem, disk, gpus, ports, constraints, group)


def _constraints_view(raw: str | None) -> list[list[str]]:
    if not raw:
        return []
    decoded = msgspec.json.decode(raw)
    return decoded if isinstance(decoded, list) else constraints_json(constraints_from(decoded))


async def max_task_id(store: Store) -> int:
    """The largest id ever given: pruned ids count, so no id is ever given twice."""
    row = await store.fetchone(
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM tasks), 0), "
        "(SELECT pruned_through FROM retention))"
    )
    return int(row[0]) if row and row[0] is not None else 0


def view_from_row(
    row: Sequence[Any],
    ended: Sequence[AttemptView] = (),
    waiting_reason: str | None = None,
) -> TaskView:
    """A ``TaskView`` from a row of ``SELECT {VIEW_COLUMNS}`` and its stored ``ended``
    attempts (``fetch_attempts``)."""
    spec = spec_decoder.decode(row[10])
    attempts = row[12]
    last_status = None
    if row[24] is not None:
        last_status = LastStatus(row[24], row[25], row[26], row[27], iso(row[28]))
    queued = row[2] == TaskState.QUEUED.value
    history = attempt_history(
        row[0], attempts, ended, row[2], row[15], row[16], row[20], row[22], row[26]
    )
    return TaskView(
        id=row[0],
        name=row[1],
        state=row[2],
        priority=row[3],
        command=spec.command,
        container=ContainerView(spec.image) if spec.image else None,
        cpus=row[4],
        mem=row[5],
        disk=row[6],
        gpus=row[7],
        ports=row[8],
        env=spec.env or EMPTY,
        labels=spec.labels or EMPTY,
        constraints=_constraints_view(row[9]),
        group=row[30],
        max_attempts=row[11],
        attempts=attempts,
        failures=row[13],
        mesos_task_id=mesos_task_id(row[0], attempts) if attempts else None,
        agent_id=row[15],
        hostname=row[16],
        assigned_ports=msgspec.json.decode(row[17]) if row[17] else [],
        kill_requested=bool(row[14]),
        created=iso(row[18]),
        queued=iso(row[19]),
        launched=iso(row[20]),
        started=iso(row[21]),
        ended=iso(row[22]),
        last_modified=iso(row[23]),
        last_status=last_status,
        waiting_reason=waiting_reason if queued else None,
        next_attempt_at=iso(row[29]) if queued and row[29] else None,
        attempt_history=history,
        kill_grace_period=spec.kill_grace_period,
        max_runtime=spec.max_runtime,
        retry_backoff=backoff_view(spec.retry_backoff),
    )


ID_CHUNK = 500
"""Task ids per read of their attempts (one ``?`` each)."""


async def fetch_ended_attempts(store: Store, ids: Sequence[int]) -> dict[int, list[EndedAttempt]]:
    """The stored attempts of these tasks, oldest first."""
    found: dict[int, list[EndedAttempt]] = {}
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK]
        rows = await store.fetchall(
            f"SELECT {ATTEMPT_COLUMNS} FROM task_attempts "
            f"WHERE task_id IN ({','.join('?' * len(chunk))}) ORDER BY task_id, attempt",
            chunk,
        )
        for row in rows:
            found.setdefault(row[0], []).append(EndedAttempt(*row))
    return found


async def fetch_attempts(store: Store, ids: Sequence[int]) -> dict[int, list[AttemptView]]:
    """The stored attempts of these tasks as the views show them, oldest first."""
    ended = await fetch_ended_attempts(store, ids)
    return {task_id: [ended_attempt_view(e) for e in rows] for task_id, rows in ended.items()}


async def fetch_task_row(store: Store, task_id: int) -> tuple[Any, ...] | None:
    return await store.fetchone(f"SELECT {VIEW_COLUMNS} FROM tasks WHERE id = ?", (task_id,))


_LIVE_VALUES = tuple(sorted(state.value for state in LIVE))
_COUNT_LIVE_SQL = f"SELECT COUNT(*) FROM tasks WHERE state IN ({','.join('?' * len(_LIVE_VALUES))})"


def _count_sql(state: TaskState | None) -> tuple[str, tuple[Any, ...]]:
    """One statement (so one snapshot: a task ending between two reads is counted once) that
    counts the tasks (of one state): history from ``task_counts``, live work through the
    (state, id) index, whose live ranges are as small as the live work. Never a scan of
    history."""
    if state is not None and state.terminal:
        return "SELECT COALESCE((SELECT n FROM task_counts WHERE state = ?), 0)", (state.value,)
    if state is not None:
        return "SELECT COUNT(*) FROM tasks WHERE state = ?", (state.value,)
    return (
        f"SELECT (SELECT COALESCE(SUM(n), 0) FROM task_counts) + ({_COUNT_LIVE_SQL})",
        _LIVE_VALUES,
    )


async def count_tasks(store: Store, state: TaskState | None) -> int:
    """How many tasks there are (of one state), read in one snapshot."""
    sql, params = _count_sql(state)
    row = await store.fetchone(sql, params)
    return int(row[0]) if row else 0


async def fetch_task_rows(
    store: Store, state: TaskState | None, offset: int, limit: int, after: int | None = None
) -> tuple[int, list[tuple[Any, ...]]]:
    """One page of tasks in id order (optionally of one state) and the total count, both read
    in one statement, so one snapshot: a count and a page that disagree would come from tasks
    ending or arriving between two reads.

    ``after`` pages by key (the tasks with an id above it), which stays as fast deep into
    millions of rows as on the first page; ``offset`` steps over every row before the page
    (counted from ``after`` when both are given).
    """
    count_sql, count_params = _count_sql(state)
    where: list[str] = []
    params: list[Any] = list(count_params)
    if state is not None:
        where.append("state = ?")
        params.append(state.value)
    if after is not None:
        where.append("id > ?")
        params.append(after)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    # The count rides along as the last column (an uncorrelated subquery: evaluated once).
    sql = f"SELECT {VIEW_COLUMNS}, ({count_sql}) FROM tasks {clause}ORDER BY id LIMIT ?"
    params.append(limit)
    if offset:
        sql += " OFFSET ?"
        params.append(offset)
    rows = await store.fetchall(sql, params)
    if not rows:  # past the last page: the count alone
        return await count_tasks(store, state), rows
    return int(rows[0][-1]), [row[:-1] for row in rows]


async def fetch_rows_by_ids(store: Store, ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = await store.fetchall(f"SELECT {VIEW_COLUMNS} FROM tasks WHERE id IN ({marks})", ids)
    return {row[0]: row for row in rows}


async def fetch_recent_rows(store: Store, limit: int) -> list[tuple[Any, ...]]:
    return await store.fetchall(
        f"SELECT {VIEW_COLUMNS} FROM tasks ORDER BY id DESC LIMIT ?", (limit,)
    )
