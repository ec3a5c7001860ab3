"""The task model: the compact in-memory record, the launch spec, views, task table SQL.

A task is stored once in SQLite (table ``tasks``, every field the API shows) and, while it is not
terminal, once in memory as a small ``Task`` record holding only what scheduling needs. The launch
spec (name, command, container, env, labels) stays as the compact JSON bytes that are also the
``spec`` column, decoded only when the task is launched or shown. Resource shapes
(``state.domain``) are interned, so a million queued tasks share a handful of ``Shape`` objects.

This module owns records and statements; it changes no state by itself (the task tracker
does, through ``Store.write``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timezone
from typing import Annotated, Any

import msgspec

from scale_scheduler.state.domain import (
    LAUNCHED,
    LIVE,
    Shape,
    ShapeInterner,
    TaskState,
    constraints_from,
)
from scale_scheduler.state.domain import (
    Constraints as Constraints,  # task_tracker's, until its split
)
from scale_scheduler.state.store import Statement, Store

# --- the launch spec and the in-memory record ------------------------------------------------


class TaskSpec(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    """What goes into the TaskInfo besides resources; stored as compact JSON bytes."""

    name: str
    command: str | None = None
    image: str | None = None
    env: dict[str, str] | None = None
    labels: dict[str, str] | None = None


spec_encoder = msgspec.json.Encoder()
spec_decoder = msgspec.json.Decoder(TaskSpec)


class Task(msgspec.Struct, gc=False):
    """One non-terminal task in memory: only what scheduling needs (about 150 bytes + spec).

    ``busy`` marks a write about the task in flight (launch intent, cancel): the matcher skips it.
    ``indexed`` says the queue index holds an entry for it (so a requeue never adds a second).
    """

    id: int
    priority: int
    shape: Shape
    spec: bytes
    state: TaskState
    max_attempts: int
    attempts: int = 0
    failures: int = 0
    lost_launches: int = 0
    agent_id: str | None = None
    hostname: str | None = None
    launched: float = 0.0
    last_update: float = 0.0
    reconcile_sent: float = 0.0
    kill_requested: bool = False
    busy: bool = False
    indexed: bool = False

    @property
    def mesos_task_id(self) -> str:
        return mesos_task_id(self.id, self.attempts)


def mesos_task_id(task_id: int, attempt: int) -> str:
    """Every launch gets a fresh Mesos id, so one id is launched at most once."""
    return f"{task_id}-{attempt}"


def parse_mesos_task_id(value: str) -> tuple[int, int] | None:
    head, sep, tail = value.rpartition("-")
    # isascii: str.isdigit() also accepts digits int() refuses, such as "²"
    if not sep or not value.isascii() or not head.isdigit() or not tail.isdigit():
        return None
    return int(head), int(tail)


# --- SQL ---------------------------------------------------------------------------------------

INSERT_SQL = (
    "INSERT INTO tasks (id, name, state, priority, cpus, mem, disk, gpus, ports, constraints, "
    "spec, max_attempts, created, queued, last_modified) "
    "VALUES (?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

INTENT_SQL = (
    "UPDATE tasks SET state = 'LAUNCHING', attempts = ?, agent_id = ?, hostname = ?, "
    "assigned_ports = ?, launched = ?, last_modified = ?, status_state = NULL, "
    "status_message = NULL, status_reason = NULL, status_source = NULL, status_time = NULL "
    "WHERE id = ?"
)

REVERT_SQL = (
    "UPDATE tasks SET state = 'QUEUED', failures = ?, lost_launches = ?, agent_id = NULL, "
    "hostname = NULL, assigned_ports = NULL, queued = ?, last_modified = ? "
    "WHERE id = ? AND state = 'LAUNCHING' AND attempts = ?"
)

STATUS_SQL = (
    "UPDATE tasks SET state = ?, failures = ?, lost_launches = ?, started = COALESCE(started, ?), "
    "ended = ?, last_modified = ?, status_state = ?, status_message = ?, status_reason = ?, "
    "status_source = ?, status_time = ? WHERE id = ?"
)

REQUEUE_AFTER_STATUS_SQL = (
    "UPDATE tasks SET state = 'QUEUED', failures = ?, lost_launches = ?, agent_id = NULL, "
    "hostname = NULL, assigned_ports = NULL, queued = ?, last_modified = ?, status_state = ?, "
    "status_message = ?, status_reason = ?, status_source = ?, status_time = ? WHERE id = ?"
)

CANCEL_SQL = (
    "UPDATE tasks SET state = 'CANCELED', ended = ?, last_modified = ? "
    "WHERE id = ? AND state = 'QUEUED'"
)

KILL_SQL = "UPDATE tasks SET kill_requested = 1, last_modified = ? WHERE id = ?"

COUNT_ENDED_SQL = "UPDATE task_counts SET n = n + ? WHERE state = ?"


def count_ended(states: Iterable[TaskState]) -> list[Statement]:
    """What adds tasks that reach terminal ``states`` to ``task_counts``: part of the very write
    that ends them (a terminal state is final, so each task is counted once)."""
    counts = Counter(state.value for state in states if state.terminal)
    if not counts:
        return []
    return [Statement(COUNT_ENDED_SQL, [(n, state) for state, n in counts.items()])]


VIEW_COLUMNS = (
    "id, name, state, priority, cpus, mem, disk, gpus, ports, constraints, spec, max_attempts, "
    "attempts, failures, kill_requested, agent_id, hostname, assigned_ports, created, queued, "
    "launched, started, ended, last_modified, status_state, status_message, status_reason, "
    "status_source, status_time"
)

LOAD_COLUMNS = (
    "id, priority, cpus, mem, disk, gpus, ports, constraints, spec, state, max_attempts, "
    "attempts, failures, lost_launches, agent_id, hostname, launched, last_modified, "
    "kill_requested"
)


def insert_row(
    task_id: int,
    spec: TaskSpec,
    spec_bytes: bytes,
    priority: int,
    shape: Shape,
    max_attempts: int,
    now: float,
) -> tuple[Any, ...]:
    constraints = (
        msgspec.json.encode(dict(shape.constraints)).decode() if shape.constraints else None
    )
    return (
        task_id,
        spec.name,
        priority,
        shape.cpus,
        shape.mem,
        shape.disk,
        shape.gpus,
        shape.ports,
        constraints,
        spec_bytes,
        max_attempts,
        now,
        now,
        now,
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
                key = row[2:8]
                shape = shapes.get(key)
                if shape is None:
                    raw = row[7]
                    constraints = constraints_from(msgspec.json.decode(raw)) if raw else ()
                    cpus, mem, disk, gpus, ports = row[2:7]
                    shape = shapes[key] = interner.get(cpus, mem, disk, gpus, ports, constraints)
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
                    )
                )
            yield tasks
            rows = await following if following is not None else []


async def max_task_id(store: Store) -> int:
    """The largest id ever given: pruned ids count, so no id is ever given twice."""
    row = await store.fetchone(
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM tasks), 0), "
        "(SELECT pruned_through FROM retention))"
    )
    return int(row[0]) if row and row[0] is not None else 0


# --- the API's view of a task ------------------------------------------------------------------


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


Timestamp = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
"""A time as ``iso`` writes it (UTC, milliseconds, ``Z``)."""
Count = Annotated[int, msgspec.Meta(ge=0)]
RowId = Annotated[int, msgspec.Meta(ge=1)]
"""A row's id: SQLite numbers rows from 1."""

# The views below are what the API answers; the OpenAPI document is generated from them
# (``api/openapi.py``). Their bounds describe the answers: msgspec checks none when encoding.


class LastStatus(msgspec.Struct, forbid_unknown_fields=True):
    """The last status update Mesos sent about the task."""

    state: str
    message: str | None
    reason: str | None
    source: str | None
    timestamp: Timestamp | None


class ContainerView(msgspec.Struct, forbid_unknown_fields=True):
    """The container image the task runs in."""

    image: str


class TaskView(msgspec.Struct, forbid_unknown_fields=True):
    """A task as /queue/ and /tasks/ show it."""

    id: RowId
    name: str
    state: Annotated[str, msgspec.Meta(extra_json_schema={"enum": [s.value for s in TaskState]})]
    priority: int
    command: str | None
    container: ContainerView | None
    cpus: float
    mem: float
    disk: float
    gpus: Count
    ports: Count
    env: dict[str, str]
    labels: dict[str, str]
    constraints: dict[str, str]
    max_attempts: Annotated[int, msgspec.Meta(ge=1)]
    attempts: Count
    failures: Count
    mesos_task_id: str | None
    agent_id: str | None
    hostname: str | None
    assigned_ports: list[int]
    kill_requested: bool
    created: Timestamp | None
    queued: Timestamp | None
    launched: Timestamp | None
    started: Timestamp | None
    ended: Timestamp | None
    last_modified: Timestamp | None
    last_status: LastStatus | None
    waiting_reason: str | None


_EMPTY: dict[str, str] = {}


def view_from_row(row: Sequence[Any], waiting_reason: str | None = None) -> TaskView:
    """A ``TaskView`` from a row of ``SELECT {VIEW_COLUMNS}``."""
    spec = spec_decoder.decode(row[10])
    attempts = row[12]
    last_status = None
    if row[24] is not None:
        last_status = LastStatus(row[24], row[25], row[26], row[27], iso(row[28]))
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
        env=spec.env or _EMPTY,
        labels=spec.labels or _EMPTY,
        constraints=msgspec.json.decode(row[9]) if row[9] else _EMPTY,
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
        waiting_reason=waiting_reason if row[2] == TaskState.QUEUED.value else None,
    )


def new_task_view(
    task_id: int, spec: TaskSpec, priority: int, shape: Shape, max_attempts: int, now: float
) -> TaskView:
    """The view of a task just queued (what ``POST /queue/`` answers), without a database read."""
    stamp = iso(now)
    return TaskView(
        id=task_id,
        name=spec.name,
        state=TaskState.QUEUED.value,
        priority=priority,
        command=spec.command,
        container=ContainerView(spec.image) if spec.image else None,
        cpus=shape.cpus,
        mem=shape.mem,
        disk=shape.disk,
        gpus=shape.gpus,
        ports=shape.ports,
        env=spec.env or _EMPTY,
        labels=spec.labels or _EMPTY,
        constraints=dict(shape.constraints),
        max_attempts=max_attempts,
        attempts=0,
        failures=0,
        mesos_task_id=None,
        agent_id=None,
        hostname=None,
        assigned_ports=[],
        kill_requested=False,
        created=stamp,
        queued=stamp,
        launched=None,
        started=None,
        ended=None,
        last_modified=stamp,
        last_status=None,
        waiting_reason=None,
    )


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
