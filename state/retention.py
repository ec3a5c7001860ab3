"""Retention of finished tasks: which rows a pass prunes, and the statements that prune them.

A task is pruned only once it is terminal (a terminal state is final: no write ever changes it
again), when it ended more than ``days`` ago, or when it is among the oldest terminal tasks
beyond the newest ``max_tasks``. Rows are read in id order from the low end (ids grow with
creation time, and a task cannot have ended before it was created, so the walk for the age limit
stops at the first rows created after the cutoff).

Each batch is one write: the rows (deleted only if still in the state they were read in), the
counts of terminal tasks by state, and the ``retention`` row (the largest id pruned, the total).
A batch is all or nothing, so a pass cut off at any point leaves a consistent database.

This module knows SQL and the policy; the pruning loop is ``daemon.pruner``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scale_scheduler.state.domain import TERMINAL
from scale_scheduler.state.store import Statement, Store

DAY = 86_400.0
_TERMINAL_VALUES = frozenset(state.value for state in TERMINAL)

WALK_SQL = (
    "SELECT id, state, created, COALESCE(ended, last_modified) FROM tasks "
    "WHERE id > ? ORDER BY id LIMIT ?"
)
DELETE_SQL = "DELETE FROM tasks WHERE id = ? AND state = ?"
UNCOUNT_SQL = "UPDATE task_counts SET n = n - ? WHERE state = ?"
MARK_SQL = (
    "UPDATE retention SET pruned_through = MAX(pruned_through, ?), "
    "pruned_total = pruned_total + ? WHERE id = 1"
)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    days: float
    """0: no age limit."""
    max_tasks: int
    """0: no count limit."""

    @property
    def enabled(self) -> bool:
        return self.days > 0 or self.max_tasks > 0

    def describe(self) -> str:
        return f"state.retention_days={self.days:g}, state.retention_max_tasks={self.max_tasks}"

    def pruned_message(self, task_id: int) -> str:
        return f"Task {task_id} was removed by retention ({self.describe()})."


@dataclass(frozen=True, slots=True)
class RetentionMark:
    pruned_through: int
    """The largest id pruned; a missing id at or below it was pruned (ids are never reused)."""
    pruned_total: int


@dataclass(slots=True)
class Victim:
    task_id: int
    state: str


async def load_mark(store: Store) -> RetentionMark:
    row = await store.fetchone("SELECT pruned_through, pruned_total FROM retention WHERE id = 1")
    return RetentionMark(int(row[0]), int(row[1])) if row else RetentionMark(0, 0)


async def terminal_total(store: Store) -> int:
    row = await store.fetchone("SELECT COALESCE(SUM(n), 0) FROM task_counts")
    return int(row[0]) if row else 0


class PassPlan:
    """One pass's walk over the table: feed it batches of ``WALK_SQL`` rows, get victims.

    ``excess`` terminal tasks (the oldest by id) go whatever their age; after them, terminal
    tasks that ended before ``cutoff`` (None: no age limit).
    """

    def __init__(self, excess: int, cutoff: float | None) -> None:
        self.excess = max(0, excess)
        self.cutoff = cutoff
        self.after = 0
        self.done = self.excess == 0 and cutoff is None

    def take(self, rows: Sequence[tuple[Any, ...]]) -> list[Victim]:
        """The victims among ``rows`` (the next ones in id order); sets ``done`` at the end."""
        victims: list[Victim] = []
        cutoff = self.cutoff
        older = False
        for task_id, state_value, created, ended in rows:
            if cutoff is not None and created < cutoff:
                older = True
            if state_value not in _TERMINAL_VALUES:
                continue
            if self.excess > 0:
                self.excess -= 1
                victims.append(Victim(task_id, state_value))
            elif cutoff is not None and ended is not None and ended < cutoff:
                victims.append(Victim(task_id, state_value))
        if rows:
            self.after = rows[-1][0]
        # Done when the table ends, or when neither limit can find more: no excess left and
        # (no age limit, or these rows were all created after the cutoff).
        self.done = not rows or (self.excess == 0 and (cutoff is None or not older))
        return victims


def prune_statements(victims: Sequence[Victim]) -> list[Statement]:
    """One batch's write: delete the rows, uncount them, move the mark."""
    by_state = Counter(v.state for v in victims)
    return [
        Statement(DELETE_SQL, [(v.task_id, v.state) for v in victims]),
        Statement(UNCOUNT_SQL, [(n, state) for state, n in by_state.items()]),
        Statement(MARK_SQL, [(max(v.task_id for v in victims), len(victims))]),
    ]
