"""Group commit: one writer task commits every write waiting at that moment in ONE transaction.

Shared by the SQLite store (``state.store``) and the PostgreSQL state
(``state.postgres.backend``); each hands ``GroupCommit`` its transaction, a coroutine that runs
the statements of a group of ``PendingWrite``s and commits, or raises having changed nothing. A
write whose own statement fails inside a good transaction gets its ``error`` set there and is
skipped (a change naming a missing row).

The shape both share:

- ``submit`` queues a write (its caller awaits the future it returns); the writer drains the
  queue into a group (at most ``MAX_GROUP`` writes) and runs the transaction once for the whole
  group;
- after the COMMIT, each write's ``apply`` runs on the event loop in commit order (this is where
  memory changes: never ahead of the commit), then its caller is woken with apply's result;
- a group that fails is retried write by write, so one bad write fails alone; an error of a
  ``group_errors`` class (the database is away, the leader was fenced) fails the whole group at
  once instead;
- ``between`` runs a job on the writer between two groups, outside any transaction (SQLite's
  WAL checkpoints);
- ``stop`` lets the writes already queued finish, then ends the writer.

It knows nothing of SQL: the statements are the backend's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

S = TypeVar("S")
"""The backend's statement type."""
T = TypeVar("T")

MAX_GROUP = 4096


@dataclass
class StoreStats:
    """Counters for metrics: commits, writes committed, last group size and commit time."""

    commits: int = 0
    writes: int = 0
    last_group_size: int = 0
    last_commit_seconds: float = 0.0
    commit_seconds_total: float = 0.0
    group_sizes: list[int] = field(default_factory=list)


@dataclass
class PendingWrite(Generic[S]):
    statements: Sequence[S]
    apply: Callable[[], Any] | None
    future: asyncio.Future[Any]
    error: BaseException | None = None
    """Set by the transaction when this write alone failed (its later statements skipped)."""


@dataclass
class _Between:
    job: Callable[[], Awaitable[Any]]
    future: asyncio.Future[Any]


class GroupCommit(Generic[S]):
    def __init__(
        self,
        transaction: Callable[[list[PendingWrite[S]]], Awaitable[None]],
        *,
        log_prefix: str,
        group_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._transaction = transaction
        self._group_errors = group_errors
        self._group_failed = f"{log_prefix}_group_failed"
        self._apply_failed = f"{log_prefix}_apply_failed"
        self._queue: asyncio.Queue[PendingWrite[S] | _Between | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.stats = StoreStats()
        self.on_commit: list[Callable[[int, float], None]] = []
        """Called after each group commit with (writes in the group, seconds it took)."""

    def start(self, name: str) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    @property
    def running(self) -> bool:
        task = self._task
        return task is not None and not task.done()

    def submit(
        self, statements: Sequence[S], apply: Callable[[], Any] | None
    ) -> asyncio.Future[Any]:
        """Queue a write: ``statements`` are committed (grouped with concurrent writes), then
        ``apply`` runs; the future resolves to apply's result. Await it shielded (the write goes
        on when its caller is canceled)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(PendingWrite(statements, apply, future))
        return future

    async def between(self, job: Callable[[], Awaitable[T]]) -> T:
        """Run ``job`` on the writer between two groups, in turn with the writes."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Between(job, future))
        return await asyncio.shield(future)

    async def stop(self) -> None:
        """Commit the writes queued so far, then end the writer."""
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        """Commit groups until the ``None`` that ``stop`` queues behind the last write."""
        queue = self._queue
        stopping = False
        held: _Between | None = None
        while not stopping:
            first = await queue.get()
            if first is None:
                return
            if isinstance(first, _Between):
                await self._run_between(first)
                continue
            group: list[PendingWrite[S]] = [first]
            while len(group) < MAX_GROUP and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                if isinstance(item, _Between):
                    held = item  # after this group, before the writes queued behind it
                    break
                group.append(item)
            await self._commit_group(group)
            # Not held while waiting for the next write: a group's rows and apply closures
            # can reference thousands of tasks.
            del first, group
            item = None  # the group's last write, if the loop above took one
            if held is not None:
                await self._run_between(held)
                held = None

    @staticmethod
    async def _run_between(item: _Between) -> None:
        try:
            result = await item.job()
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(exc)
        else:
            if not item.future.done():
                item.future.set_result(result)

    async def _commit_group(self, group: list[PendingWrite[S]]) -> None:
        started = time.perf_counter()
        try:
            await self._transaction(group)
        except self._group_errors as exc:
            for item in group:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        except Exception as exc:
            if len(group) == 1:
                group[0].error = exc
            else:
                log.warning(self._group_failed, size=len(group), error=repr(exc))
                for item in group:
                    item.error = None
                    await self._commit_group([item])
                return
        elapsed = time.perf_counter() - started
        stats = self.stats
        stats.commits += 1
        stats.writes += len(group)
        stats.last_group_size = len(group)
        stats.last_commit_seconds = elapsed
        stats.commit_seconds_total += elapsed
        for hook in self.on_commit:
            hook(len(group), elapsed)
        for item in group:
            if item.future.done():
                continue
            if item.error is not None:
                item.future.set_exception(item.error)
                continue
            try:
                result = item.apply() if item.apply is not None else None
            except Exception as exc:  # a bug in apply: the data is committed, report it
                log.exception(self._apply_failed)
                item.future.set_exception(exc)
            else:
                item.future.set_result(result)
