"""``SqliteState``: ``state.interface.StateStore`` and ``Maintenance`` on the SQLite store.

``commit`` turns each change into rows (``state.rows``) bound to SQLite's statements
(``task_rows``, ``service_rows``) and hands them to ``Store.write`` as one write: it is grouped
with the writes waiting at that moment into one transaction, and its ``apply`` runs after the
COMMIT, in commit order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from scale_scheduler.state import changes as c
from scale_scheduler.state.domain import ShapeInterner, TaskState
from scale_scheduler.state.interface import (
    MaintainedState,
    NodeRecord,
    PageUsage,
    RetentionMark,
    SchedulerRecord,
    StorageSizes,
    TaskEnd,
)
from scale_scheduler.state.rows import RowStatement, rows_of
from scale_scheduler.state.sqlite import service_rows as sr
from scale_scheduler.state.sqlite import task_rows as tr
from scale_scheduler.state.store import JOURNAL_SIZE_LIMIT, Statement, Store
from scale_scheduler.state.tasks import EndedAttempt, Task, TaskView

T = TypeVar("T")

VACUUM_PAGES = 512
"""Pages (of 4 KiB) given back per ``incremental_vacuum`` step: one step holds the single writer
(status updates and their acknowledgements wait behind it), and 512 took about 5 ms on a copy of
a B6 database where 2,048 took 40."""
INCREMENTAL = 2
"""``PRAGMA auto_vacuum``'s value for INCREMENTAL."""


SQL: dict[RowStatement, str] = {
    RowStatement.INSERT_TASK: tr.INSERT_SQL,
    RowStatement.LAUNCH_INTENT: tr.INTENT_SQL,
    RowStatement.REVERT_LAUNCH: tr.REVERT_SQL,
    RowStatement.STATUS: tr.STATUS_SQL,
    RowStatement.REQUEUE_AFTER_STATUS: tr.REQUEUE_AFTER_STATUS_SQL,
    RowStatement.RECORD_ATTEMPT: tr.ATTEMPT_SQL,
    RowStatement.TRIM_ATTEMPTS: tr.TRIM_ATTEMPTS_SQL,
    RowStatement.CANCEL: tr.CANCEL_SQL,
    RowStatement.KILL: tr.KILL_SQL,
    RowStatement.COUNT_ENDED: tr.COUNT_ENDED_SQL,
    RowStatement.ENSURE_SCHEDULER: sr.ENSURE_SCHEDULER_SQL,
    RowStatement.PAUSE: sr.PAUSE_SQL,
    RowStatement.FRAMEWORK: sr.FRAMEWORK_SQL,
    RowStatement.NODE_FLAGS: sr.NODE_FLAGS_SQL,
    RowStatement.INSERT_NODE: sr.NODE_INSERT_SQL,
    RowStatement.NODE_AGENT: sr.NODE_AGENT_SQL,
    RowStatement.NODE_LAST_OFFER: sr.NODE_LAST_OFFER_SQL,
    RowStatement.DELETE_TASK: sr.DELETE_SQL,
    RowStatement.DELETE_ATTEMPTS: sr.DELETE_ATTEMPTS_SQL,
    RowStatement.UNCOUNT: sr.UNCOUNT_SQL,
    RowStatement.MARK_PRUNED: sr.MARK_SQL,
}
"""SQLite's statement for each kind of row ``state.rows`` builds."""


def statements_of(changes: Sequence[c.Change]) -> list[Statement]:
    """The statements of one write, in the order of its changes."""
    return [
        Statement(SQL[b.statement], b.rows, b.expect_rows, b.missing_message)
        for b in rows_of(changes)
    ]


class SqliteState:
    """The state on one SQLite database (``Store``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.on_commit = store.on_commit
        """Called after each group commit with (writes in the group, seconds it took)."""

    @classmethod
    async def open(cls, path: str | Path) -> SqliteState:
        return cls(await Store.open(path))

    # -- writes ---------------------------------------------------------------------------------

    async def commit(
        self, changes: Sequence[c.Change], apply: Callable[[], T] | None = None
    ) -> T | None:
        return await self.store.write(statements_of(changes), apply)

    # -- task reads -----------------------------------------------------------------------------

    def live_tasks(self, interner: ShapeInterner, batch: int = 50_000) -> AsyncIterator[list[Task]]:
        return tr.load_live_tasks(self.store, interner, batch)

    async def max_task_id(self) -> int:
        return await tr.max_task_id(self.store)

    async def ended_attempts(self, task_ids: Sequence[int]) -> Mapping[int, list[EndedAttempt]]:
        return await tr.fetch_ended_attempts(self.store, task_ids)

    async def task_state(self, task_id: int) -> TaskState | None:
        row = await self.store.fetchone("SELECT state FROM tasks WHERE id = ?", (task_id,))
        return TaskState(row[0]) if row is not None else None

    async def task(self, task_id: int) -> TaskView | None:
        row = await tr.fetch_task_row(self.store, task_id)
        if row is None:
            return None
        return (await self._views([row]))[0]

    async def tasks_by_ids(self, ids: Sequence[int]) -> Mapping[int, TaskView]:
        rows = await tr.fetch_rows_by_ids(self.store, ids)
        views = await self._views(list(rows.values()))
        return {view.id: view for view in views}

    async def task_page(
        self, state: TaskState | None, offset: int, limit: int, after: int | None = None
    ) -> tuple[int, list[TaskView]]:
        count, rows = await tr.fetch_task_rows(self.store, state, offset, limit, after)
        return count, await self._views(rows)

    async def recent_tasks(self, limit: int) -> list[TaskView]:
        return await self._views(await tr.fetch_recent_rows(self.store, limit))

    async def _views(self, rows: Sequence[Sequence[Any]]) -> list[TaskView]:
        """Views of task rows, with their stored attempts (one more read, only for tasks that
        were ever launched)."""
        launched = [row[0] for row in rows if row[12]]
        history = await tr.fetch_attempts(self.store, launched)
        return [tr.view_from_row(row, history.get(row[0], ())) for row in rows]

    async def count_tasks(self, state: TaskState | None) -> int:
        return await tr.count_tasks(self.store, state)

    # -- service reads --------------------------------------------------------------------------

    async def load_nodes(self) -> list[NodeRecord]:
        rows = await self.store.fetchall(sr.LOAD_NODES_SQL)
        return [
            NodeRecord(r[0], r[1], r[2], bool(r[3]), r[4], bool(r[5]), r[6], r[7], r[8])
            for r in rows
        ]

    async def load_scheduler(self) -> SchedulerRecord | None:
        row = await self.store.fetchone(sr.LOAD_SCHEDULER_SQL)
        return SchedulerRecord(bool(row[0]), float(row[1])) if row is not None else None

    async def load_framework_id(self) -> str | None:
        row = await self.store.fetchone(sr.LOAD_FRAMEWORK_SQL)
        return str(row[0]) if row else None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.store.is_open

    async def ping(self) -> None:
        await self.store.fetchone("SELECT 1")

    async def close(self) -> None:
        await self.store.close()

    # -- maintenance ----------------------------------------------------------------------------

    async def retention_mark(self) -> RetentionMark:
        row = await self.store.fetchone(sr.LOAD_MARK_SQL)
        return RetentionMark(int(row[0]), int(row[1])) if row else RetentionMark(0, 0)

    async def terminal_total(self) -> int:
        row = await self.store.fetchone(sr.TERMINAL_TOTAL_SQL)
        return int(row[0]) if row else 0

    async def task_ends(self, after: int, limit: int) -> list[TaskEnd]:
        rows = await self.store.fetchall(sr.WALK_SQL, (after, limit))
        return [TaskEnd(*row) for row in rows]

    async def page_usage(self) -> PageUsage:
        row = await self.store.fetchone(
            "SELECT page_count, freelist_count FROM pragma_page_count, pragma_freelist_count"
        )
        if row is None:
            return PageUsage()
        pages, free = int(row[0]), int(row[1])
        return PageUsage(pages - free, free)

    async def reclaim_space(self, keep_free: int = 0) -> int:
        """Give free pages beyond ``keep_free`` back, ``VACUUM_PAGES`` per write, when the
        database is in ``auto_vacuum = INCREMENTAL`` mode (older databases keep theirs: see the
        README). Returns how far the free list shrank."""
        if not await self.incremental_vacuum():
            return 0
        keep = max(0, keep_free)
        free = first = (await self.page_usage()).free
        while free > keep:
            await self.store.incremental_vacuum(min(free - keep, VACUUM_PAGES))
            left = (await self.page_usage()).free
            if left >= free:  # nothing given back (writes took the pages meanwhile): done
                break
            free = left
            await asyncio.sleep(0)  # let requests in between two steps
        return max(0, first - free)

    async def incremental_vacuum(self) -> bool:
        row = await self.store.fetchone("PRAGMA auto_vacuum")
        return row is not None and int(row[0]) == INCREMENTAL

    async def checkpoint(self) -> None:
        await self.store.maintain("PRAGMA wal_checkpoint(PASSIVE)")

    async def truncate_log(self, wait_ms: int) -> bool:
        return await self.store.truncate_wal(wait_ms)

    async def storage_sizes(self) -> StorageSizes:
        return await asyncio.to_thread(_file_sizes, self.store.path)

    @property
    def log_limit(self) -> int:
        return JOURNAL_SIZE_LIMIT


def _file_sizes(path: Path) -> StorageSizes:
    def size(file: Path) -> int:
        try:
            return file.stat().st_size
        except FileNotFoundError:
            return 0

    return StorageSizes(size(path), size(Path(f"{path}-wal")))


def _implements(state: SqliteState) -> MaintainedState:
    return state  # mypy checks that SqliteState implements the whole interface
