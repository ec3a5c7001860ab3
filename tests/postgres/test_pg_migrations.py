"""PostgreSQL migrations: the schema mirrors SQLite's, and concurrent starts migrate once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from pgserver import PgDatabase

from scale_scheduler.state.migrations import MIGRATIONS as SQLITE_MIGRATIONS
from scale_scheduler.state.migrations import Migration
from scale_scheduler.state.postgres.errors import MigrationError
from scale_scheduler.state.postgres.migrations import (
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    migrate,
    schema_version,
)


async def _columns(connection: asyncpg.Connection, table: str) -> set[str]:
    rows = await connection.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table
    )
    return {row["column_name"] for row in rows}


async def test_schema_mirrors_sqlite(pg_database: PgDatabase, tmp_path: Path) -> None:
    lite = sqlite3.connect(tmp_path / "mirror.db")
    for migration in SQLITE_MIGRATIONS:
        lite.executescript(migration.sql)
    tables = [
        row[0]
        for row in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    ]
    connection = await pg_database.connect()
    try:
        assert await migrate(connection) == [m.version for m in MIGRATIONS]
        assert await schema_version(connection) == MIGRATIONS[-1].version
        for table in tables:
            sqlite_columns = {row[1] for row in lite.execute(f"PRAGMA table_info({table})")}
            assert await _columns(connection, table) == sqlite_columns, table
        counts = await connection.fetch("SELECT state, n FROM task_counts ORDER BY state")
        assert counts == [
            tuple(row) for row in lite.execute("SELECT state, n FROM task_counts ORDER BY state")
        ]
        assert await migrate(connection) == []  # a second start applies nothing
    finally:
        await connection.close()
        lite.close()


async def test_two_instances_starting_at_once_migrate_exactly_once(
    pg_database: PgDatabase,
) -> None:
    first, second = await pg_database.connect(), await pg_database.connect()
    try:
        results = await asyncio.gather(migrate(first), migrate(second))
        assert sorted(results, key=len) == [[], [m.version for m in MIGRATIONS]]
        rows = await first.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [row["version"] for row in rows] == [m.version for m in MIGRATIONS]
    finally:
        await first.close()
        await second.close()


async def test_a_second_migrator_waits_for_the_first_under_the_lock(
    pg_database: PgDatabase,
) -> None:
    """The first migrator is held inside a migration (behind a table lock the test holds); the
    second must wait at the advisory lock, then apply nothing: the migration ran once."""
    gate = await pg_database.connect()
    first, second = await pg_database.connect(), await pg_database.connect()
    migrations = [
        Migration(1, "gate and a counter", "CREATE TABLE gate (id int); CREATE TABLE runs (n int)"),
        Migration(2, "held at the gate", "LOCK TABLE gate; INSERT INTO runs VALUES (1)"),
    ]
    try:
        await migrate(first, migrations[:1])
        held = gate.transaction()
        await held.start()
        await gate.execute("LOCK TABLE gate")
        running = asyncio.ensure_future(migrate(first, migrations))
        await _wait_for_lock_waiter(gate, first.get_server_pid(), "relation")
        waiting = asyncio.ensure_future(migrate(second, migrations))
        await _wait_for_lock_waiter(gate, second.get_server_pid(), "advisory")
        await held.rollback()
        assert await running == [2]
        assert await waiting == []
        assert await gate.fetchval("SELECT count(*) FROM runs") == 1
    finally:
        for connection in (gate, first, second):
            await connection.close()


async def _wait_for_lock_waiter(observer: asyncpg.Connection, pid: int, locktype: str) -> None:
    for _ in range(500):
        waiting = await observer.fetchval(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = $2 AND NOT granted",
            pid,
            locktype,
        )
        if waiting:
            return
        await asyncio.sleep(0.01)  # poll interval of the wait for the lock wait to show
    raise AssertionError(f"backend {pid} never waited for a {locktype} lock")


async def test_the_lock_key_is_the_documented_one(pg_database: PgDatabase) -> None:
    """While the migration lock is held elsewhere, a migrator waits (it cannot take it)."""
    holder, other = await pg_database.connect(), await pg_database.connect()
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        pending = asyncio.ensure_future(migrate(other))
        await _wait_for_lock_waiter(holder, other.get_server_pid(), "advisory")
        assert not pending.done()
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        assert await pending == [m.version for m in MIGRATIONS]
    finally:
        await holder.close()
        await other.close()


async def test_a_newer_schema_is_refused(pg_database: PgDatabase) -> None:
    connection = await pg_database.connect()
    try:
        await migrate(connection)
        await connection.execute(
            "INSERT INTO schema_migrations (version, description) VALUES (99, 'future')"
        )
        with pytest.raises(MigrationError, match=r"version 99, newer than this program knows"):
            await migrate(connection)
    finally:
        await connection.close()


async def test_tables_without_a_version_are_refused(pg_database: PgDatabase) -> None:
    connection = await pg_database.connect()
    try:
        await connection.execute("CREATE TABLE tasks (id int)")
        with pytest.raises(MigrationError, match=r"table\(s\) tasks but no schema_migrations"):
            await migrate(connection)
        assert await schema_version(connection) == 0
    finally:
        await connection.close()


async def test_a_failed_migration_applies_nothing(pg_database: PgDatabase) -> None:
    connection = await pg_database.connect()
    broken = [*MIGRATIONS, Migration(MIGRATIONS[-1].version + 1, "broken", "SELEC 1")]
    try:
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await migrate(connection, broken)
        assert await schema_version(connection) == 0
        assert await connection.fetchval("SELECT to_regclass('tasks')") is None
    finally:
        await connection.close()
