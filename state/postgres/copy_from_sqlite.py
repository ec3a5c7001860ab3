"""``scale-scheduler state copy``: move a single-instance SQLite deployment into PostgreSQL.

Everything durable is copied, in ONE PostgreSQL transaction (all of it or nothing): the tasks
with their ids and every field, the nodes, the pause flag, the framework id (so the
PostgreSQL-backed daemon resubscribes as the same framework and keeps its running tasks), the
terminal counts and the retention mark. Ids are copied as they are, so the identity sequences are
then moved past them (``setval``). The target must hold no state yet; the source is brought to
this release's schema first (as the daemon would at start-up). Stop the daemon before copying:
writes it made meanwhile would not be copied.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from scale_scheduler.state.postgres.connection import Connector, ConnectSettings
from scale_scheduler.state.postgres.dsn import describe_target, dsn_problem
from scale_scheduler.state.postgres.errors import PostgresStateError
from scale_scheduler.state.postgres.migrations import migrate
from scale_scheduler.state.postgres.password import Password, read_password_file
from scale_scheduler.state.store import Store, StoreError

BATCH = 50_000

TASK_COLUMNS = (
    "id, name, state, priority, cpus, mem, disk, gpus, ports, constraints, spec, max_attempts, "
    "attempts, failures, cluster_failures, kill_requested, agent_id, hostname, assigned_ports, "
    "created, queued, launched, started, ended, last_modified, status_state, status_message, "
    "status_reason, status_source, status_time, next_attempt_at, task_group"
)
ATTEMPT_COLUMNS = (
    "task_id, attempt, agent_id, hostname, launched, ended, state, reason, failure_class"
)
TASK_BOOLEANS = (15,)  # kill_requested
NODE_COLUMNS = (
    "id, hostname, agent_id, is_paused, pause_reason, is_active, created, last_modified, last_offer"
)
NODE_BOOLEANS = (3, 5)  # is_paused, is_active


class CopyError(PostgresStateError):
    """The copy cannot be made (the source is missing, the target already holds state)."""


class CopyUsageError(CopyError):
    """``--from`` or ``--to`` is not what the command takes."""


def state_copy(source: str, target: str, password_file: str | None) -> str:
    """``state copy --from sqlite:PATH --to DSN``: the one-line report of a finished copy.
    Raises ``CopyUsageError`` for a wrong argument, ``CopyError`` when the copy failed (nothing
    was written to the target then)."""
    scheme, _, path = source.partition(":")
    if scheme != "sqlite" or not path:
        raise CopyUsageError("--from: expected sqlite:PATH")
    problem = dsn_problem(target)
    if problem:
        raise CopyUsageError(f"--to: {problem}")
    try:
        password = read_password_file(password_file) if password_file else None
        report = asyncio.run(copy_sqlite_to_postgres(path, target, password))
    except CopyError:
        raise
    except (PostgresStateError, StoreError, sqlite3.Error) as exc:
        raise CopyError(str(exc)) from None
    return (
        f"copied {report.tasks} tasks, {report.nodes} nodes, framework id "
        f"{report.framework_id or '(none)'} into {describe_target(target)}"
    )


@dataclass(frozen=True)
class CopyReport:
    tasks: int
    nodes: int
    framework_id: str | None
    is_paused: bool | None


def _columns(names: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in names.split(","))


def _rows(
    source: sqlite3.Connection, table: str, columns: str, booleans: Sequence[int]
) -> Iterator[list[tuple[Any, ...]]]:
    order = "task_id, attempt" if table == "task_attempts" else "id"
    cursor = source.execute(f"SELECT {columns} FROM {table} ORDER BY {order}")
    while batch := cursor.fetchmany(BATCH):
        yield [
            tuple(bool(v) if i in booleans and v is not None else v for i, v in enumerate(row))
            for row in batch
        ]


async def copy_sqlite_to_postgres(
    sqlite_path: str | Path, dsn: str, password: Password | None = None
) -> CopyReport:
    """Copy the SQLite database at ``sqlite_path`` into the (empty) database at ``dsn``."""
    path = Path(sqlite_path)
    if not await asyncio.to_thread(path.is_file):
        raise CopyError(f"{path}: no such SQLite database")
    store = await Store.open(path)  # brings an older schema to this release's, as `run` would
    await store.close()
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        connector = Connector(ConnectSettings(dsn, password, give_up_after=10))
        target = await connector.connect()
        try:
            await migrate(target)
            async with target.transaction():
                return await _copy(source, target)
        finally:
            await target.close()
    finally:
        source.close()


async def _copy(source: sqlite3.Connection, target: asyncpg.Connection) -> CopyReport:
    held = await target.fetchval(
        "SELECT (SELECT COUNT(*) FROM tasks) + (SELECT COUNT(*) FROM nodes) "
        "+ (SELECT COUNT(*) FROM framework) + (SELECT COUNT(*) FROM scheduler)"
    )
    if held:
        raise CopyError(
            "the target database already holds scheduler state; copy into an empty database"
        )
    tasks = 0
    # A one-off command with nothing else on its loop: the SQLite reads may block it.
    for batch in _rows(source, "tasks", TASK_COLUMNS, TASK_BOOLEANS):
        await target.copy_records_to_table("tasks", records=batch, columns=_columns(TASK_COLUMNS))
        tasks += len(batch)
    nodes = 0
    for batch in _rows(source, "task_attempts", ATTEMPT_COLUMNS, ()):
        await target.copy_records_to_table(
            "task_attempts", records=batch, columns=_columns(ATTEMPT_COLUMNS)
        )
    for batch in _rows(source, "nodes", NODE_COLUMNS, NODE_BOOLEANS):
        await target.copy_records_to_table("nodes", records=batch, columns=_columns(NODE_COLUMNS))
        nodes += len(batch)
    scheduler = source.execute("SELECT is_paused, last_modified FROM scheduler").fetchone()
    if scheduler is not None:
        await target.execute(
            "INSERT INTO scheduler (id, is_paused, last_modified) VALUES (1, $1, $2)",
            bool(scheduler[0]),
            scheduler[1],
        )
    framework = source.execute("SELECT framework_id, registered FROM framework").fetchone()
    if framework is not None:
        await target.execute(
            "INSERT INTO framework (id, framework_id, registered) VALUES (1, $1, $2)",
            framework[0],
            framework[1],
        )
    counts = source.execute("SELECT state, n FROM task_counts").fetchall()
    await target.executemany(
        "INSERT INTO task_counts (state, n) VALUES ($1, $2) "
        "ON CONFLICT (state) DO UPDATE SET n = excluded.n",
        counts,
    )
    mark = source.execute("SELECT pruned_through, pruned_total FROM retention").fetchone()
    if mark is not None:
        await target.execute(
            "UPDATE retention SET pruned_through = $1, pruned_total = $2 WHERE id = 1", *mark
        )
    # Ids were given explicitly: the sequences must not give them again (pruned ones included).
    await target.execute(
        "SELECT setval(pg_get_serial_sequence('tasks', 'id'), GREATEST("
        "COALESCE((SELECT MAX(id) FROM tasks), 0), "
        "(SELECT pruned_through FROM retention WHERE id = 1), 1))"
    )
    await target.execute(
        "SELECT setval(pg_get_serial_sequence('nodes', 'id'), "
        "GREATEST(COALESCE((SELECT MAX(id) FROM nodes), 0), 1))"
    )
    return CopyReport(
        tasks=tasks,
        nodes=nodes,
        framework_id=framework[0] if framework is not None else None,
        is_paused=bool(scheduler[0]) if scheduler is not None else None,
    )
