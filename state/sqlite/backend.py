"""``SqliteState``: ``state.interface.StateStore`` and ``Maintenance`` on the SQLite store.

``commit`` turns each change into statements (``task_rows``, ``service_rows``) and hands them to
``Store.write`` as one write: it is grouped with the writes waiting at that moment into one
transaction, and its ``apply`` runs after the COMMIT, in commit order.
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
    RetentionMark,
    SchedulerRecord,
    StorageSizes,
    TaskEnd,
)
from scale_scheduler.state.sqlite import service_rows as sr
from scale_scheduler.state.sqlite import task_rows as tr
from scale_scheduler.state.store import JOURNAL_SIZE_LIMIT, Statement, Store
from scale_scheduler.state.tasks import Task, TaskView

T = TypeVar("T")

VACUUM_PAGES = 2048
"""Pages (of 4 KiB) given back per ``incremental_vacuum`` step."""
INCREMENTAL = 2
"""``PRAGMA auto_vacuum``'s value for INCREMENTAL."""


def _queued(change: c.TasksQueued) -> list[Statement]:
    now = change.now
    rows = [tr.insert_row(t, n, now) for t, n in zip(change.tasks, change.names, strict=True)]
    return [Statement(tr.INSERT_SQL, rows)] if rows else []


def _intents(change: c.LaunchIntents) -> list[Statement]:
    now = change.now
    ports_json = tr.ports_json
    rows = [
        (i.attempt, i.agent_id, i.hostname, ports_json(i.ports), now, now, i.task_id)
        for i in change.intents
    ]
    return [Statement(tr.INTENT_SQL, rows)] if rows else []


def _reverted(change: c.LaunchesReverted) -> list[Statement]:
    now = change.now
    rows = [
        (r.failures, r.cluster_failures, now, now, r.task_id, r.attempt) for r in change.reverts
    ]
    return [Statement(tr.REVERT_SQL, rows)] if rows else []


def _statuses(change: c.StatusesApplied) -> list[Statement]:
    now = change.now
    status_rows: list[tuple[Any, ...]] = []
    requeue_rows: list[tuple[Any, ...]] = []
    for w in change.changes:
        if w.requeue:
            requeue_rows.append(
                (
                    w.failures,
                    w.cluster_failures,
                    now,
                    now,
                    w.next_attempt_at,
                    w.status_state,
                    w.status_message,
                    w.status_reason,
                    w.status_source,
                    w.status_time or now,
                    w.task_id,
                )
            )
        else:
            status_rows.append(
                (
                    w.state.value,
                    w.failures,
                    w.cluster_failures,
                    now if w.started else None,
                    now if w.state.terminal else None,
                    now,
                    w.status_state,
                    w.status_message,
                    w.status_reason,
                    w.status_source,
                    w.status_time or now,
                    w.task_id,
                )
            )
    statements = []
    if status_rows:
        statements.append(Statement(tr.STATUS_SQL, status_rows))
        statements += tr.count_ended(w.state for w in change.changes if not w.requeue)
    if requeue_rows:
        statements.append(Statement(tr.REQUEUE_AFTER_STATUS_SQL, requeue_rows))
    ended = [w.ended_attempt for w in change.changes if w.ended_attempt is not None]
    if ended:
        statements += tr.attempt_statements(ended)
    return statements


def _canceled(change: c.TaskCanceled) -> list[Statement]:
    return [
        Statement(tr.CANCEL_SQL, [(change.now, change.now, change.task_id)]),
        *tr.count_ended([TaskState.CANCELED]),
    ]


def _kill(change: c.KillRequested) -> list[Statement]:
    return [Statement(tr.KILL_SQL, [(change.now, change.task_id)])]


_STATEMENTS: dict[type, Callable[[Any], list[Statement]]] = {
    c.TasksQueued: _queued,
    c.LaunchIntents: _intents,
    c.LaunchesReverted: _reverted,
    c.StatusesApplied: _statuses,
    c.TaskCanceled: _canceled,
    c.KillRequested: _kill,
    c.TasksPruned: sr.tasks_pruned,
    c.SchedulerRowEnsured: sr.scheduler_ensured,
    c.PauseSet: sr.pause_set,
    c.NodeFlagsChanged: sr.node_flags_changed,
    c.NodesSighted: sr.nodes_sighted,
    c.NodesOffered: sr.nodes_offered,
    c.FrameworkIdSaved: sr.framework_saved,
}


def statements_of(changes: Sequence[c.Change]) -> list[Statement]:
    """The statements of one write, in the order of its changes."""
    statements: list[Statement] = []
    for change in changes:
        statements += _STATEMENTS[type(change)](change)
    return statements


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

    async def reclaim_space(self) -> None:
        """Give freed pages back, ``VACUUM_PAGES`` at a time, when the database is in
        ``auto_vacuum = INCREMENTAL`` mode (older databases keep theirs: see the README)."""
        row = await self.store.fetchone("PRAGMA auto_vacuum")
        if row is None or int(row[0]) != INCREMENTAL:
            return
        while True:
            row = await self.store.fetchone("PRAGMA freelist_count")
            if row is None or int(row[0]) == 0:
                return
            await self.store.maintain(f"PRAGMA incremental_vacuum({VACUUM_PAGES})")
            await asyncio.sleep(0)

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
