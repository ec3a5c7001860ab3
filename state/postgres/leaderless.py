"""Writes and reads a standby makes itself while no instance leads (``LeaderlessWrites``).

A write runs in ONE transaction of ``leadership.without_leader`` (no live term, or
``LeaderLiveError``; a lapsed term ended): first its write id (``state_writes``, as the group
commits have it), then ``decide`` reads the rows it needs, locked (``LockedRows``), and the
changes it returns are run as their statements. The leadership row's lock makes such writes of
several standbys take turns, so the task ids ``next_task_id`` gives are never given twice; the
next leader loads them and counts on from there.

Connection loss: lost before COMMIT was sent, the write surely rolled back
(``StateUnavailableError``: not made). Lost while COMMIT was under way, its outcome is settled by
the write id: an insert of the same id on another connection waits for a first attempt still in
flight and then conflicts exactly when it committed; asked until the database answers (the
caller waits, as for the group commits' writes of unknown outcome). Never a second attempt.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from scale_scheduler.state import changes as c
from scale_scheduler.state.domain import TaskState
from scale_scheduler.state.interface import (
    LockedRows,
    MissingRowError,
    NodeRecord,
    StateUnavailableError,
)
from scale_scheduler.state.postgres import reads as q
from scale_scheduler.state.postgres.connection import is_connection_loss
from scale_scheduler.state.postgres.leadership import without_leader
from scale_scheduler.state.postgres.statements import PgStatement, statements_of
from scale_scheduler.state.sqlite.task_rows import VIEW_COLUMNS

T = TypeVar("T")

WRITE_ID_SQL = "INSERT INTO state_writes (id) VALUES ($1)"
WRITE_ID_KEY = "state_writes_pkey"
SETTLE_PAUSE = 0.5
"""Seconds between two attempts to settle a write whose COMMIT went unanswered."""

_TASK_STATE_SQL = "SELECT state FROM tasks WHERE id = $1 FOR UPDATE"
_NODE_SQL = (
    "SELECT id, hostname, agent_id, is_paused, pause_reason, is_active, created, "
    "last_modified, last_offer FROM nodes WHERE id = $1 FOR UPDATE"
)
# Launch order as the leader's queue index keeps it: priority, then id; a task waiting out its
# retry back-off ($1: now) comes after, by when it is due. The count in the same statement.
QUEUED_PAGE_SQL = f"""
SELECT {VIEW_COLUMNS}, COUNT(*) OVER ()
  FROM tasks
 WHERE state = 'QUEUED'
 ORDER BY COALESCE(next_attempt_at, 0) > $1,
          CASE WHEN COALESCE(next_attempt_at, 0) > $1 THEN next_attempt_at END,
          priority, id
 LIMIT $2 OFFSET $3
"""


class _Rows:
    """``LockedRows`` on the write's connection, inside its transaction."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def next_task_id(self) -> int:
        return int(await self._connection.fetchval(q.MAX_ID_SQL) or 0) + 1

    async def task_state(self, task_id: int) -> TaskState | None:
        value = await self._connection.fetchval(_TASK_STATE_SQL, task_id)
        return TaskState(value) if value is not None else None

    async def node(self, node_id: int) -> NodeRecord | None:
        row = await self._connection.fetchrow(_NODE_SQL, node_id)
        return NodeRecord(*row) if row is not None else None


def _check(rows: LockedRows) -> LockedRows:
    return rows  # mypy checks that _Rows implements LockedRows


@dataclass
class _Attempt(Generic[T]):
    write_id: uuid.UUID
    result: T | None = None
    commit_sent: bool = False


async def _run(connection: asyncpg.Connection, statements: Sequence[PgStatement]) -> None:
    for statement in statements:
        if statement.copy_columns is not None:
            await connection.copy_records_to_table(
                statement.sql, records=statement.rows, columns=statement.copy_columns
            )
        elif statement.expect_rows:
            status = await connection.execute(statement.sql, *statement.rows[0])
            if status.rsplit(" ", 1)[-1] == "0":
                raise MissingRowError(statement.missing_message)
        else:
            await connection.executemany(statement.sql, statement.rows)


async def _attempt(
    connection: asyncpg.Connection,
    decide: Callable[[LockedRows], Awaitable[tuple[Sequence[c.Change], T]]],
    attempt: _Attempt[T],
) -> None:
    async with without_leader(connection):
        await connection.execute(WRITE_ID_SQL, attempt.write_id)
        changes, attempt.result = await decide(_Rows(connection))
        await _run(connection, statements_of(changes))
        attempt.commit_sent = True  # leaving the block sends COMMIT


async def commit_without_leader(
    pool: asyncpg.Pool,
    decide: Callable[[LockedRows], Awaitable[tuple[Sequence[c.Change], T]]],
    *,
    target: str,
    timeout: float,
) -> T:
    """One write with no leader on a connection of ``pool`` (see the module's docstring)."""
    attempt: _Attempt[T] = _Attempt(uuid.uuid4())
    lost: Exception | None = None
    try:
        async with pool.acquire(timeout=timeout) as connection:
            try:
                await _attempt(connection, decide, attempt)
            except Exception as exc:
                if not is_connection_loss(exc, connection):
                    raise
                lost = exc
    except Exception as exc:
        if lost is None and not is_connection_loss(exc):
            raise
        lost = lost or exc
    if lost is not None:
        if not attempt.commit_sent:
            raise StateUnavailableError(
                f"database {target} unreachable: {type(lost).__name__}: {lost}; "
                "the write was not made (try again)"
            ) from None
        if not await _landed(pool, attempt.write_id, timeout):
            raise StateUnavailableError(
                f"database {target}: the write was not made ({type(lost).__name__}: {lost}); "
                "try again"
            ) from None
    return attempt.result  # type: ignore[return-value]  # set by decide before any commit


async def _landed(pool: asyncpg.Pool, write_id: uuid.UUID, timeout: float) -> bool:
    """Whether the write with ``write_id`` committed, asked until the database answers (as the
    group commits' writes, its caller waits for the settled answer)."""
    while True:
        try:
            async with pool.acquire(timeout=timeout) as connection:
                try:
                    async with connection.transaction():
                        # Waits for an attempt in flight; conflicts exactly when it committed.
                        # Rolled back either way: the id stays free only if it never landed.
                        await connection.execute(WRITE_ID_SQL, write_id)
                        raise _NotLanded
                except _NotLanded:
                    return False
                except asyncpg.UniqueViolationError as exc:
                    if exc.constraint_name != WRITE_ID_KEY:
                        raise
                    return True
                except Exception as exc:
                    if not is_connection_loss(exc, connection):
                        raise
        except Exception as exc:
            if not is_connection_loss(exc):
                raise
        # The database is away: the pace of the attempts to reach it again.
        await asyncio.sleep(SETTLE_PAUSE)


class _NotLanded(Exception):
    """Rolls the settling insert back."""


async def queued_page(
    pool: asyncpg.Pool, offset: int, limit: int, now: float, timeout: float
) -> tuple[int, list[Any]]:
    """The rows of one page of the queue in launch order, and the count (0 past the end)."""
    async with pool.acquire(timeout=timeout) as connection:
        rows = await connection.fetch(QUEUED_PAGE_SQL, now, limit, offset)
        if rows:
            return int(rows[0][-1]), [tuple(row)[:-1] for row in rows]
        count = await connection.fetchval("SELECT COUNT(*) FROM tasks WHERE state = 'QUEUED'")
        return int(count or 0), []
