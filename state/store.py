"""The SQLite store: one writer with group commit, one reader, migrations at open.

Durability: WAL journal with ``synchronous=FULL``, so a write whose future has resolved is on disk
and survives ``kill -9`` or a power cut.

Writes go through ``Store.write``: a list of ``Statement``s plus an optional ``apply`` callback.
A single writer task (``state.group_commit``) drains every write waiting at that moment into ONE
transaction (group commit): consecutive statements with the same SQL are merged into one
``executemany``, so a burst of requests costs one fsync and a handful of thread hops, not one per
item. After COMMIT, each write's ``apply`` runs on the event loop (this is where in-memory state
changes: never ahead of the commit), then its caller is woken with apply's result. If a group
fails, it is rolled back and its writes are retried one by one, so one bad write fails alone.

This module knows SQL and transactions, nothing about tasks or offers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import structlog

from scale_scheduler.state.group_commit import GroupCommit, PendingWrite
from scale_scheduler.state.interface import MissingRowError, StateClosedError, StateError
from scale_scheduler.state.migrations import MIGRATIONS, Migration, unknown_version_problem

log = structlog.get_logger(__name__)

T = TypeVar("T")


class StoreError(StateError):
    """The store cannot do what was asked."""


NOT_A_FILE = "is a directory, not a database file"


class StoreClosedError(StoreError, StateClosedError):
    """A write arrived after ``close`` began."""


@dataclass(frozen=True)
class Statement:
    """One SQL statement run with ``executemany`` over ``rows``.

    ``expect_rows`` makes it a checked statement: if it changes no row, the write it belongs to
    fails with ``MissingRowError`` and its later statements are skipped. Put a checked statement
    first in its write.
    """

    sql: str
    rows: Sequence[Sequence[Any]] = ((),)
    expect_rows: bool = False
    missing_message: str = "database row is missing"


class Store:
    """Owns the SQLite connections. Create with ``await Store.open(path)``."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._db = writer
        self._reader = reader
        self._closing = False
        self._writer = GroupCommit[Statement](self._transaction, log_prefix="store")
        self.stats = self._writer.stats
        self.on_commit = self._writer.on_commit
        """Called after each group commit with (writes in the group, seconds it took)."""

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        """Open (creating it and its directory if needed) and migrate the database at ``path``.

        Raises ``StoreError`` with one line naming the file and the problem when it cannot be
        used: a directory, not an SQLite file, a schema newer than this program, no permission.
        """
        path = Path(path)
        try:
            return await cls._open(path)
        except StoreError as exc:
            raise StoreError(f"{path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"{path}: {exc.strerror or exc}") from exc

    @classmethod
    async def _open(cls, path: Path) -> Store:
        await asyncio.to_thread(_prepare_place, path)
        writer = await aiosqlite.connect(path, isolation_level=None)
        try:
            await _configure(writer)
            await _migrate(writer, MIGRATIONS)
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA busy_timeout = 5000")
            await reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await writer.close()
            raise
        store = cls(path, writer, reader)
        store._writer.start("store-writer")
        return store

    # -- writes ---------------------------------------------------------------------------------

    async def write(
        self, statements: Sequence[Statement], apply: Callable[[], T] | None = None
    ) -> T | None:
        """Commit ``statements`` (grouped with concurrent writes), then run ``apply``."""
        if self._closing:
            raise StoreClosedError("the store is shutting down; the write was not made")
        return await asyncio.shield(self._writer.submit(statements, apply))

    async def maintain(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements (a ``PRAGMA wal_checkpoint``) on the writer
        connection, in turn with the writes and outside any transaction; the last one's rows."""
        return (await self._maintain(statements))[-1]

    async def _maintain(self, statements: Sequence[str]) -> list[list[tuple[Any, ...]]]:
        if self._closing:
            raise StoreClosedError("the store is shutting down; the statement was not run")

        async def run() -> list[list[tuple[Any, ...]]]:
            rows: list[list[tuple[Any, ...]]] = []
            for sql in statements:
                async with self._db.execute(sql) as cursor:
                    rows.append([tuple(row) for row in await cursor.fetchall()])
            return rows

        return await self._writer.between(run)

    async def incremental_vacuum(self, pages: int) -> None:
        """Give up to ``pages`` free pages back to the file system: one write on the writer
        connection, in turn with the others. Run as a script: through ``execute`` the pragma
        stops after its first page (the sqlite3 module steps a statement without result columns
        once), so a step of N pages gave back one."""
        if self._closing:
            raise StoreClosedError("the store is shutting down; the statement was not run")

        async def run() -> None:
            await self._db.executescript(f"PRAGMA incremental_vacuum({int(pages)})")

        await self._writer.between(run)

    async def truncate_wal(self, wait_ms: int) -> bool:
        """Checkpoint the whole WAL and cut its file to zero bytes, waiting at most ``wait_ms``
        for readers on older snapshots (the writes queue behind it meanwhile). False when a
        reader kept it from completing."""
        restore = f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"
        try:
            _, checkpoint, _ = await self._maintain(
                [
                    f"PRAGMA busy_timeout = {int(wait_ms)}",
                    "PRAGMA wal_checkpoint(TRUNCATE)",
                    restore,
                ]
            )
        except sqlite3.Error:
            await self.maintain(restore)
            raise
        return bool(checkpoint) and checkpoint[0][0] == 0  # (busy, frames in log, checkpointed)

    async def _transaction(self, group: list[PendingWrite[Statement]]) -> None:
        """The group in one transaction: committed, or rolled back and raised."""
        try:
            await self._run_group(group)
        except Exception:
            await self._rollback()
            raise

    async def _run_group(self, group: list[PendingWrite[Statement]]) -> None:
        db = self._db
        await db.execute("BEGIN IMMEDIATE")
        pending_sql: str | None = None
        pending_rows: list[Sequence[Any]] = []

        async def flush() -> None:
            nonlocal pending_sql, pending_rows
            if pending_sql is not None:
                await db.executemany(pending_sql, pending_rows)
            pending_sql, pending_rows = None, []

        for item in group:
            item.error = None
            for statement in item.statements:
                if statement.expect_rows:
                    await flush()
                    cursor = await db.executemany(statement.sql, statement.rows)
                    if cursor.rowcount < 1:
                        item.error = MissingRowError(statement.missing_message)
                        break
                    continue
                if statement.sql != pending_sql:
                    await flush()
                    pending_sql = statement.sql
                pending_rows.extend(statement.rows)
        await flush()
        await db.execute("COMMIT")

    async def _rollback(self) -> None:
        with contextlib.suppress(Exception):
            await self._db.execute("ROLLBACK")

    # -- reads ----------------------------------------------------------------------------------
    #
    # Every read is ONE call on the reader's thread: execute, read every row, done. A SELECT left
    # open between thread hops (executed, not yet fetched or closed) would hold the reader
    # connection's read transaction, and a read another coroutine starts meanwhile would run on
    # that older snapshot: it would miss writes that were already acknowledged.

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read committed data on the reader connection (never blocks the writer). The read
        sees every write whose ``write`` call has returned."""
        rows = await self._reader.execute_fetchall(sql, params)
        return [tuple(row) for row in rows]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of a query meant to yield at most one (it is read to its end)."""
        rows = await self._reader.execute_fetchall(sql, params)
        for row in rows:
            return tuple(row)
        return None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Taking writes, with a live writer task (what the readiness check reads)."""
        return not self._closing and self._writer.running

    async def close(self) -> None:
        """Refuse new writes, finish the ones queued, then close both connections."""
        if self._closing:
            return
        self._closing = True
        await self._writer.stop()
        await self._reader.close()
        await self._db.close()


def _prepare_place(path: Path) -> None:
    """Create the database's directory; a directory where the file should be is an error."""
    if path.is_dir():
        raise StoreError(NOT_A_FILE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create its directory {path.parent}: {exc.strerror or exc}"
        ) from exc


BUSY_TIMEOUT_MS = 5000
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes the WAL file is truncated to when it is reset after a checkpoint."""


async def _configure(db: aiosqlite.Connection) -> None:
    # Only takes effect on a new, empty database (before its first table): pages freed by
    # deletes can then be given back with ``PRAGMA incremental_vacuum``. Older databases keep
    # their mode until a VACUUM (see the README).
    await db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    async with db.execute("PRAGMA journal_mode = WAL") as cursor:
        row = await cursor.fetchone()
    if row is None or str(row[0]).lower() != "wal":
        raise StoreError(f"cannot switch the database to WAL mode (got {row!r})")
    await db.execute("PRAGMA synchronous = FULL")
    await db.execute("PRAGMA foreign_keys = ON")
    await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")


async def _migrate(db: aiosqlite.Connection, migrations: Sequence[Migration]) -> None:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    current = int(row[0]) if row else 0
    async with db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'") as cursor:
        tables = await cursor.fetchone()
    problem = unknown_version_problem(current, migrations, int(tables[0]) if tables else 0)
    if problem:
        raise StoreError(problem)
    for migration in migrations:
        if migration.version <= current:
            continue
        await db.execute("BEGIN IMMEDIATE")
        try:
            await _run_script(db, migration.sql)
            await db.execute(f"PRAGMA user_version = {int(migration.version)}")
            await db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"migration {migration.version} ({migration.description}) failed: {exc}"
                ) from exc
            raise
        log.info("store_migrated", version=migration.version, description=migration.description)


async def _run_script(db: aiosqlite.Connection, script: str) -> None:
    """Run each statement of ``script`` inside the open transaction (executescript would commit)."""
    for sql in _split_sql(script):
        await db.execute(sql)


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (``;`` inside string literals is respected)."""
    statements: list[str] = []
    buffer = ""
    for part in script.split(";"):
        buffer += part + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n\t;"):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip(" \n\t;"):
        statements.append(buffer.strip())
    return statements
