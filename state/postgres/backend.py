"""``PostgresState``: the state interface (``MaintainedState``) on PostgreSQL, with SQLite's
guarantees.

Writes: one writer task (``state.group_commit``) drains every write waiting at that moment into
ONE transaction (group commit), merging consecutive statements of the same SQL into one
``executemany`` or COPY; after COMMIT (``synchronous_commit = on``: durable), each write's
``apply`` runs on the event loop in commit order. A group that fails on a statement is rolled
back and its writes retried one by one, so one bad write fails alone; a change naming a missing
row fails its write only.

Fencing: with ``fence`` (the current leadership epoch, or None when not leading), every
transaction runs under ``leadership.fenced``; a deposed epoch fails the group with
``StateFencedError``, having changed nothing.

Connection loss: the writer reconnects (with back-off) and runs the group again. A transaction
lost before its COMMIT was sent surely rolled back. One lost after (the answer to COMMIT never
came) has an unknown outcome: each group's transaction first inserts the group's id into
``state_writes``, so the writer looks for the id. Found: it committed, and is applied. Not found:
the same transaction runs again with the same id, whose insert waits for, and then conflicts
with, a first attempt still in flight. So each write is applied exactly once. While such a write
is unsettled (the database still away), new writes are refused at once with
``StateUnavailableError`` and its callers wait for the settled answer. A write whose group could
not be sent fails with ``StateUnavailableError`` (the API's 503): nothing of it was committed.

Reads run on a small pool of other connections; each is one statement (one snapshot) and sees
every write whose ``commit`` has returned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import asyncpg
import structlog

from scale_scheduler.state import changes as c
from scale_scheduler.state.changes import EndedAttempt
from scale_scheduler.state.domain import LAUNCHED, Shape, ShapeInterner, TaskState
from scale_scheduler.state.group_commit import GroupCommit, PendingWrite
from scale_scheduler.state.interface import (
    LeaderlessWrites,
    LockedRows,
    MaintainedState,
    MissingRowError,
    NodeRecord,
    PageUsage,
    RetentionMark,
    SchedulerRecord,
    StateClosedError,
    StateFencedError,
    StateUnavailableError,
    StorageSizes,
    TaskEnd,
)
from scale_scheduler.state.postgres import leaderless
from scale_scheduler.state.postgres import reads as q
from scale_scheduler.state.postgres.connection import (
    Connector,
    ConnectSettings,
    is_connection_loss,
)
from scale_scheduler.state.postgres.errors import DatabaseUnreachableError, FencedError
from scale_scheduler.state.postgres.leadership import fenced
from scale_scheduler.state.postgres.migrations import migrate
from scale_scheduler.state.postgres.password import Password
from scale_scheduler.state.postgres.statements import PgStatement, statements_of
from scale_scheduler.state.sqlite.task_rows import view_from_row
from scale_scheduler.state.tasks import Task, TaskView, ended_attempt_view

log = structlog.get_logger(__name__)

T = TypeVar("T")

WRITE_ID_SQL = "INSERT INTO state_writes (id) VALUES ($1)"
WRITE_LANDED_SQL = "SELECT EXISTS (SELECT 1 FROM state_writes WHERE id = $1)"
PRUNE_WRITE_IDS_SQL = "DELETE FROM state_writes WHERE at < now() - interval '1 hour'"
PRUNE_EVERY = 1024
"""Commits between two prunings of old write ids (only the last few can ever be in doubt)."""
WRITE_ID_KEY = "state_writes_pkey"
SETTLE_RETRY_SECONDS = 0.5
"""Pause between two attempts to settle a write of unknown outcome while the database is away."""
MAX_LOSSES = 3
"""Lost connections in a row, before any COMMIT was sent, after which a write is refused."""
LOG_LIMIT = 64 * 1024 * 1024
"""``log_limit``: PostgreSQL manages its own WAL, so ``truncate_log`` is never due in practice."""

Fence = Callable[[], int | None]


class _Landed(Exception):
    """The group's id was already there: an earlier attempt committed."""


class PostgresState:
    """The state on one PostgreSQL database. Create with ``await PostgresState.open(dsn)``."""

    def __init__(
        self,
        connector: Connector,
        probe: Connector,
        pool: asyncpg.Pool,
        writer: asyncpg.Connection,
        fence: Fence | None = None,
    ) -> None:
        self._connector = connector
        self._probe = probe
        """Tries once: what the writer reconnects with once the database is known to be away."""
        self._pool = pool
        self._writer: asyncpg.Connection | None = writer
        self._fence = fence
        self._read_timeout = connector.settings.connect_timeout
        self._closing = False
        self._away = False
        self._unsettled = False
        self._committing = False
        """The current transaction's COMMIT has been (or is being) sent."""
        self._group_commit = GroupCommit[PgStatement](
            self._commit_exactly_once,
            log_prefix="postgres",
            group_errors=(StateUnavailableError, StateFencedError, StateClosedError),
        )
        self.target = connector.target
        self.stats = self._group_commit.stats
        self.on_commit = self._group_commit.on_commit
        """Called after each group commit with (writes in the group, seconds it took)."""
        self.reconnects = 0

    @classmethod
    async def open(
        cls,
        dsn: str,
        password: Password | None = None,
        *,
        fence: Fence | None = None,
        unavailable_after: float = 5.0,
        readers: int = 4,
        idle_transaction_timeout: float | None = None,
    ) -> PostgresState:
        """Connect (with back-off for up to ``unavailable_after`` seconds), migrate, and start
        the writer. Raises ``DatabaseUnreachableError``, ``DatabaseLoginError`` or
        ``MigrationError`` (``state.postgres.errors``). ``idle_transaction_timeout``: see
        ``ConnectSettings`` (a fenced instance passes its lease)."""
        settings = ConnectSettings(
            dsn,
            password,
            give_up_after=unavailable_after,
            idle_transaction_timeout=idle_transaction_timeout,
        )
        connector = Connector(settings)
        probe = Connector(dataclasses.replace(settings, give_up_after=0))
        writer = await connector.connect()
        try:
            await migrate(writer)
            pool = await asyncpg.create_pool(
                dsn,
                password=password.reveal if password is not None else None,
                min_size=0,  # no floor to restore: while the database is away, reads fail fast
                max_size=readers,
                timeout=settings.connect_timeout,
                server_settings=settings.session_settings(),
            )
        except BaseException:
            writer.terminate()
            raise
        state = cls(connector, probe, pool, writer, fence)
        state._group_commit.start("postgres-writer")
        return state

    # -- writes ---------------------------------------------------------------------------------

    async def commit(
        self, changes: Sequence[c.Change], apply: Callable[[], T] | None = None
    ) -> T | None:
        if self._closing:
            raise StateClosedError("the state is shutting down; the write was not made")
        if self._unsettled:
            raise StateUnavailableError(
                f"database {self.target} unreachable; the write was not made (try again)"
            )
        return await asyncio.shield(self._group_commit.submit(statements_of(changes), apply))

    async def _commit_exactly_once(self, group: list[PendingWrite[PgStatement]]) -> None:
        """Commit the group once, whatever connections are lost on the way."""
        write_id = uuid.uuid4()
        in_doubt = False
        losses = 0
        try:
            while True:
                try:
                    connection = await self._connection()
                except DatabaseUnreachableError as exc:
                    if not in_doubt:  # nothing of this group was sent
                        raise StateUnavailableError(
                            f"{exc}; the write was not made (try again)"
                        ) from None
                    if self._closing:
                        raise StateUnavailableError(
                            f"{exc}; shutting down with a write of unknown outcome"
                        ) from None
                    self._unsettled = True
                    # The probe tries once per call: this is the pace of the retries.
                    await asyncio.sleep(SETTLE_RETRY_SECONDS)
                    continue
                try:
                    if in_doubt and await connection.fetchval(WRITE_LANDED_SQL, write_id):
                        raise _Landed
                    await self._transaction(connection, group, write_id)
                except _Landed:
                    log.warning("postgres_write_settled", landed=True, writes=len(group))
                    return
                except asyncpg.UniqueViolationError as exc:
                    if exc.constraint_name != WRITE_ID_KEY:
                        raise
                    # An attempt still in flight committed first.
                    log.warning("postgres_write_settled", landed=True, writes=len(group))
                    return
                except FencedError as exc:
                    raise StateFencedError(str(exc)) from None
                except Exception as exc:
                    if not is_connection_loss(exc, connection):
                        raise
                    log.warning(
                        "postgres_connection_lost",
                        target=self.target,
                        error=repr(exc),
                        writes=len(group),
                    )
                    connection.terminate()
                    self._writer = None
                    # Before its COMMIT was sent, a lost transaction surely rolled back.
                    in_doubt = in_doubt or self._committing
                    losses += 1
                    if not in_doubt and losses >= MAX_LOSSES:
                        raise StateUnavailableError(
                            f"database {self.target} unreachable: {type(exc).__name__}: {exc}; "
                            "the write was not made (try again)"
                        ) from None
                    continue
                if in_doubt:
                    log.warning("postgres_write_settled", landed=False, writes=len(group))
                return
        finally:
            self._unsettled = False

    async def _connection(self) -> asyncpg.Connection:
        connection = self._writer
        if connection is not None and not connection.is_closed():
            return connection
        connector = self._probe if self._away else self._connector
        try:
            connection = await connector.connect()
        except DatabaseUnreachableError:
            self._away = True
            raise
        if self._away:
            log.info("postgres_reachable_again", target=self.target)
        self._away = False
        self.reconnects += 1
        self._writer = connection
        return connection

    async def _transaction(
        self,
        connection: asyncpg.Connection,
        group: list[PendingWrite[PgStatement]],
        write_id: uuid.UUID,
    ) -> None:
        epoch = self._fence() if self._fence is not None else None
        transaction: AbstractAsyncContextManager[Any] = (
            fenced(connection, epoch) if epoch is not None else connection.transaction()
        )
        self._committing = False
        async with transaction:
            # First: an attempt in flight with the same id makes this insert wait, then fail.
            await connection.execute(WRITE_ID_SQL, write_id)
            pending: PgStatement | None = None
            rows: list[Sequence[Any]] = []

            async def flush() -> None:
                nonlocal pending, rows
                if pending is not None:
                    if pending.copy_columns is not None:
                        await connection.copy_records_to_table(
                            pending.sql, records=rows, columns=pending.copy_columns
                        )
                    elif pending.array_sql is not None and _ids_unique(rows):
                        columns = [list(column) for column in zip(*rows, strict=True)]
                        await connection.execute(pending.array_sql, *columns)
                    else:
                        await connection.executemany(pending.sql, rows)
                pending, rows = None, []

            for item in group:
                item.error = None
                for statement in item.statements:
                    if statement.expect_rows:
                        await flush()
                        status = await connection.execute(statement.sql, *statement.rows[0])
                        if status.rsplit(" ", 1)[-1] == "0":
                            item.error = MissingRowError(statement.missing_message)
                            break
                        continue
                    if pending is None or statement.key != pending.key:
                        await flush()
                        pending = statement
                    rows.extend(statement.rows)
            await flush()
            if self.stats.commits % PRUNE_EVERY == PRUNE_EVERY - 1:
                await connection.execute(PRUNE_WRITE_IDS_SQL)
            self._committing = True  # leaving the block sends COMMIT

    # -- reads ----------------------------------------------------------------------------------

    async def _read(self, method: str, sql: str, *args: Any) -> Any:
        """One statement on a pooled connection; retried once on a fresh connection when the
        one it used was lost; ``StateUnavailableError`` when the database cannot be reached."""
        for attempt in (1, 2):
            connection: asyncpg.Connection | None = None
            try:
                async with self._pool.acquire(timeout=self._read_timeout) as connection:
                    return await getattr(connection, method)(sql, *args)
            except Exception as exc:
                if not is_connection_loss(exc, connection):
                    raise
                if attempt == 2:
                    raise StateUnavailableError(
                        f"database {self.target} unreachable: {type(exc).__name__}: {exc}"
                    ) from None
        raise AssertionError("unreachable")

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self._read("fetch", sql, *args))

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._read("fetchrow", sql, *args)
        return row

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        return await self._read("fetchval", sql, *args)

    async def live_tasks(
        self, interner: ShapeInterner, batch: int = 50_000
    ) -> AsyncIterator[list[Task]]:
        shapes: dict[tuple[Any, ...], Shape] = {}
        for state in (TaskState.QUEUED, *sorted(LAUNCHED, key=lambda s: s.value)):
            after = 0
            while True:
                rows = await self._fetch(q.LIVE_SQL, state.value, after, batch)
                if not rows:
                    break
                yield [q.task_from_row(row, state, interner, shapes) for row in rows]
                if len(rows) < batch:
                    break
                after = rows[-1][0]

    async def max_task_id(self) -> int:
        return int(await self._fetchval(q.MAX_ID_SQL) or 0)

    async def ended_attempts(self, task_ids: Sequence[int]) -> Mapping[int, list[EndedAttempt]]:
        found: dict[int, list[EndedAttempt]] = {}
        if task_ids:
            for row in await self._fetch(q.ATTEMPTS_SQL, list(task_ids)):
                found.setdefault(row[0], []).append(EndedAttempt(*row))
        return found

    async def task_state(self, task_id: int) -> TaskState | None:
        value = await self._fetchval(q.STATE_SQL, task_id)
        return TaskState(value) if value is not None else None

    async def task(self, task_id: int) -> TaskView | None:
        row = await self._fetchrow(q.TASK_SQL, task_id)
        return (await self._views([_plain(row)]))[0] if row is not None else None

    async def tasks_by_ids(self, ids: Sequence[int]) -> Mapping[int, TaskView]:
        if not ids:
            return {}
        rows = await self._fetch(q.TASKS_BY_IDS_SQL, list(ids))
        views = await self._views([_plain(row) for row in rows])
        return {view.id: view for view in views}

    async def task_page(
        self, state: TaskState | None, offset: int, limit: int, after: int | None = None
    ) -> tuple[int, list[TaskView]]:
        sql, params = q.page_sql(state, offset, limit, after)
        rows = await self._fetch(sql, *params)
        if not rows:  # past the last page: the count alone
            return await self.count_tasks(state), []
        return int(rows[0][-1]), await self._views([_plain(row) for row in rows])

    async def recent_tasks(self, limit: int) -> list[TaskView]:
        rows = await self._fetch(q.RECENT_SQL, limit)
        return await self._views([_plain(row) for row in rows])

    async def _views(self, rows: Sequence[Sequence[Any]]) -> list[TaskView]:
        """Views of task rows with their stored failed attempts (one more read, only for tasks
        that were ever launched), as SQLite's."""
        ended = await self.ended_attempts([row[0] for row in rows if row[12]])
        history = {
            task_id: [ended_attempt_view(e) for e in attempts]
            for task_id, attempts in ended.items()
        }
        return [view_from_row(row, history.get(row[0], ())) for row in rows]

    async def count_tasks(self, state: TaskState | None) -> int:
        sql, params = q.count_sql(state)
        return int(await self._fetchval(sql, *params) or 0)

    # -- with no leader (a standby's own writes and reads: ``leaderless``) ---------------------

    async def commit_without_leader(
        self, decide: Callable[[LockedRows], Awaitable[tuple[Sequence[c.Change], T]]]
    ) -> T:
        if self._closing:
            raise StateClosedError("the state is shutting down; the write was not made")
        return await leaderless.commit_without_leader(
            self._pool, decide, target=self.target, timeout=self._read_timeout
        )

    async def queued_page(self, offset: int, limit: int, now: float) -> tuple[int, list[TaskView]]:
        try:
            count, rows = await leaderless.queued_page(
                self._pool, offset, limit, now, self._read_timeout
            )
        except Exception as exc:
            if not is_connection_loss(exc):
                raise
            raise StateUnavailableError(
                f"database {self.target} unreachable: {type(exc).__name__}: {exc}"
            ) from None
        return count, await self._views(rows)

    # -- service reads --------------------------------------------------------------------------

    async def load_nodes(self) -> list[NodeRecord]:
        return [NodeRecord(*row) for row in await self._fetch(q.LOAD_NODES_SQL)]

    async def load_scheduler(self) -> SchedulerRecord | None:
        row = await self._fetchrow(q.LOAD_SCHEDULER_SQL)
        return SchedulerRecord(bool(row[0]), float(row[1])) if row is not None else None

    async def load_framework_id(self) -> str | None:
        value = await self._fetchval(q.LOAD_FRAMEWORK_SQL)
        return str(value) if value else None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return not self._closing and self._group_commit.running

    async def ping(self) -> None:
        await self._fetchval("SELECT 1")

    async def close(self) -> None:
        """Refuse new writes, finish the queued ones, close the connections."""
        if self._closing:
            return
        self._closing = True
        await self._group_commit.stop()
        writer, self._writer = self._writer, None
        if writer is not None and not writer.is_closed():
            try:
                await asyncio.wait_for(writer.close(), timeout=5)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                writer.terminate()
        try:
            await asyncio.wait_for(self._pool.close(), timeout=5)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self._pool.terminate()

    # -- maintenance ----------------------------------------------------------------------------

    async def retention_mark(self) -> RetentionMark:
        row = await self._fetchrow(q.LOAD_MARK_SQL)
        return RetentionMark(int(row[0]), int(row[1])) if row else RetentionMark(0, 0)

    async def terminal_total(self) -> int:
        return int(await self._fetchval(q.TERMINAL_TOTAL_SQL) or 0)

    async def task_ends(self, after: int, limit: int) -> list[TaskEnd]:
        return [TaskEnd(*row) for row in await self._fetch(q.WALK_SQL, after, limit)]

    async def page_usage(self) -> PageUsage:
        """Nothing to report: the server manages its own pages."""
        return PageUsage()

    async def reclaim_space(self, keep_free: int = 0) -> int:
        """Nothing: autovacuum makes deleted rows' space reusable (a ``VACUUM (ANALYZE)`` by
        the operator after a large prune is the README's advice; VACUUM FULL locks the table)."""
        return 0

    async def checkpoint(self) -> None:
        """Nothing: PostgreSQL checkpoints its own WAL."""

    async def truncate_log(self, wait_ms: int) -> bool:
        """Nothing to cut: the server recycles its WAL itself."""
        return True

    async def storage_sizes(self) -> StorageSizes:
        size = await self._fetchval("SELECT pg_database_size(current_database())")
        return StorageSizes(int(size or 0), 0)

    @property
    def log_limit(self) -> int:
        return LOG_LIMIT


def _ids_unique(rows: Sequence[Sequence[Any]]) -> bool:
    """No two rows of a batch share their last value (the id an array statement joins on)."""
    return len({row[-1] for row in rows}) == len(rows)


def _plain(row: asyncpg.Record) -> tuple[Any, ...]:
    """A view row as the tuple ``view_from_row`` indexes (``bytea`` arrives as bytes)."""
    return tuple(row)


def _implements(state: PostgresState) -> MaintainedState:
    return state  # mypy checks that PostgresState implements the whole interface


def _writes_without_leader(state: PostgresState) -> LeaderlessWrites:
    return state  # and the writes a standby makes while no instance leads
