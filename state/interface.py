"""The state interface: every durable change and read the scheduling core and the API make.

``StateStore`` is what ``daemon/`` and ``api/`` depend on; a backend implements it (SQLite:
``state.sqlite.SqliteState``; PostgreSQL: ``state.postgres.backend.PostgresState``; in memory,
for tests: ``state.memory.MemoryState``).

Writes: ``commit(changes, apply)``. The backend commits ``changes`` (``state.changes``), grouped
with the writes that wait at the same moment into one transaction, then runs ``apply`` on the
event loop, in commit order, and returns its result. Memory changes only in ``apply``, so it never
runs ahead of what is durable; when ``commit`` returns, the write is durable (a 2xx answer may be
sent). A write that fails is not applied and raises; with ``MissingRowError`` when a change
naming a single row (the pause flag, a node's flags) found none; with ``StateUnavailableError``
when the database cannot be reached; with ``StateFencedError`` when a fenced backend's epoch is
no longer current.

A change may refer to memory's records (``Task``, a burst's ``StatusChange``s); the caller
leaves them unchanged until ``apply`` runs, so a backend may read them at any point up to its
commit. Many writes may share one transaction (group commit); a write that fails takes none of
its changes into it, provided a change naming a single row (``PauseSet``, ``NodeFlagsChanged``)
comes first in its write (as every write of the daemon has it).

Reads see every write whose ``commit`` has returned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple, Protocol, TypeVar

from scale_scheduler.state.changes import Change
from scale_scheduler.state.domain import ShapeInterner, TaskState
from scale_scheduler.state.tasks import EndedAttempt, Task, TaskView

T = TypeVar("T")


class StateError(Exception):
    """The state cannot do what was asked."""


class MissingRowError(StateError):
    """A change naming one row found none (for example the scheduler row was deleted)."""


class StateClosedError(StateError):
    """A write arrived after ``close`` began."""


class StateUnavailableError(StateError):
    """The database cannot be reached (down, restarting, cut off): the write was not
    acknowledged, or the read not answered. Transient: try again (the API answers 503)."""


class StateFencedError(StateError):
    """This instance's leadership epoch is no longer current: the write was rolled back and
    changed nothing. The instance has been deposed and must stop acting as leader."""


class LeaderLiveError(StateError):
    """A write meant for a time with no leader found a live term: nothing was changed, and the
    leader (``holder``, reached at ``api_url``) is the one to answer it."""

    def __init__(self, holder: str, api_url: str | None, epoch: int) -> None:
        super().__init__(f"{holder} leads (epoch {epoch}); the write was not made here")
        self.holder = holder
        self.api_url = api_url
        self.epoch = epoch


class NodeRecord(NamedTuple):
    """A node's durable part, as loaded at start-up."""

    id: int
    hostname: str
    agent_id: str | None
    is_paused: bool
    pause_reason: str | None
    is_active: bool
    created: float
    last_modified: float
    last_offer: float | None


class SchedulerRecord(NamedTuple):
    is_paused: bool
    last_modified: float


class TaskEnd(NamedTuple):
    """One task as retention walks the table: its state, when it was created and ended."""

    task_id: int
    state: str
    created: float
    ended: float | None


class RetentionMark(NamedTuple):
    pruned_through: int
    """The largest id pruned; a missing id at or below it was pruned (ids are never reused)."""
    pruned_total: int


class StorageSizes(NamedTuple):
    database: int = 0
    wal: int = 0
    """The write-ahead log's bytes."""


class PageUsage(NamedTuple):
    """The database file's pages: holding data, and free for reuse (zero where the backend
    manages its own space)."""

    in_use: int = 0
    free: int = 0


class Writes(Protocol):
    async def commit(
        self, changes: Sequence[Change], apply: Callable[[], T] | None = None
    ) -> T | None:
        """Commit ``changes`` (grouped with concurrent writes), then run ``apply``."""
        ...


class TaskReads(Protocol):
    def live_tasks(self, interner: ShapeInterner, batch: int = 50_000) -> AsyncIterator[list[Task]]:
        """Every non-terminal task (queued first, then launched), ``batch`` per step."""
        ...

    async def max_task_id(self) -> int:
        """The largest id ever given, pruned ids included (no id is given twice)."""
        ...

    async def ended_attempts(self, task_ids: Sequence[int]) -> Mapping[int, list[EndedAttempt]]:
        """The stored attempt history of these tasks (their attempts that ended in failure,
        the last ``ATTEMPT_HISTORY`` each), oldest first; tasks without one are left out."""
        ...

    async def task_state(self, task_id: int) -> TaskState | None:
        """A stored task's state; None when there is no such task."""
        ...

    async def task(self, task_id: int) -> TaskView | None:
        """A task as the API shows it (``waiting_reason`` left None: memory knows it)."""
        ...

    async def tasks_by_ids(self, ids: Sequence[int]) -> Mapping[int, TaskView]: ...

    async def task_page(
        self, state: TaskState | None, offset: int, limit: int, after: int | None = None
    ) -> tuple[int, list[TaskView]]:
        """One page of tasks in id order (of one state) and the count, from one snapshot.
        ``after``: only ids above it (key paging); ``offset`` counts from there."""
        ...

    async def recent_tasks(self, limit: int) -> list[TaskView]:
        """The ``limit`` newest tasks, newest first."""
        ...

    async def count_tasks(self, state: TaskState | None) -> int:
        """How many tasks there are (of one state), history included."""
        ...


class ServiceReads(Protocol):
    async def load_nodes(self) -> list[NodeRecord]: ...

    async def load_scheduler(self) -> SchedulerRecord | None:
        """The scheduler row; None when it is missing."""
        ...

    async def load_framework_id(self) -> str | None: ...


class Lifecycle(Protocol):
    @property
    def is_open(self) -> bool:
        """Taking writes (what the readiness check reads)."""
        ...

    async def ping(self) -> None:
        """One trivial read: raises when the state cannot answer."""
        ...

    async def close(self) -> None:
        """Refuse new writes, finish the queued ones, release the backend."""
        ...


class LockedRows(Protocol):
    """What a write made with no leader decides from: rows read inside its transaction and
    locked until it ends, so what it decides still holds when it commits."""

    async def next_task_id(self) -> int:
        """The first id no task has had (pruned ones included)."""
        ...

    async def task_state(self, task_id: int) -> TaskState | None: ...

    async def node(self, node_id: int) -> NodeRecord | None: ...


class LeaderlessWrites(Protocol):
    """Writes and reads a standby makes itself while no instance leads (PostgreSQL only: the
    instances share the database, and the next leader loads what was committed here)."""

    async def commit_without_leader(
        self, decide: Callable[[LockedRows], Awaitable[tuple[Sequence[Change], T]]]
    ) -> T:
        """In one transaction that first makes sure no term is live: ``decide`` reads what it
        needs, the changes it returns are committed, and its result is returned once they are
        durable. ``LeaderLiveError`` (nothing changed) when a term is live; the next term's
        leader, elected after this commit, loads it."""
        ...

    async def queued_page(self, offset: int, limit: int, now: float) -> tuple[int, list[TaskView]]:
        """Queued tasks in launch order (priority, then id; those waiting out a retry back-off
        at ``now`` last, by when they come due) and how many are queued, from one snapshot."""
        ...


class StateStore(Writes, TaskReads, ServiceReads, Lifecycle, Protocol):
    """What the scheduling core and the API use."""


class Maintenance(Protocol):
    """What retention and the operator's tools need besides ``StateStore``."""

    async def retention_mark(self) -> RetentionMark: ...

    async def terminal_total(self) -> int:
        """How many terminal tasks are kept (the sum of the terminal counts)."""
        ...

    async def task_ends(self, after: int, limit: int) -> list[TaskEnd]:
        """Up to ``limit`` tasks with ids above ``after``, in id order."""
        ...

    async def page_usage(self) -> PageUsage: ...

    async def reclaim_space(self, keep_free: int = 0) -> int:
        """Give the space freed by deletes back to the file system, where the backend can,
        except ``keep_free`` free pages kept for the writes to come. Returns the pages given
        back."""
        ...

    async def checkpoint(self) -> None:
        """Move the write-ahead log into the database without waiting for readers."""
        ...

    async def truncate_log(self, wait_ms: int) -> bool:
        """Cut the write-ahead log to nothing, waiting at most ``wait_ms`` for readers."""
        ...

    async def storage_sizes(self) -> StorageSizes: ...

    @property
    def log_limit(self) -> int:
        """Bytes of write-ahead log beyond which ``truncate_log`` is due."""
        ...


class MaintainedState(StateStore, Maintenance, Protocol):
    """A backend with its maintenance operations (what the daemon's service shell holds)."""
