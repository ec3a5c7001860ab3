"""Retention of finished tasks: which tasks a pass prunes.

A task is pruned only once it is terminal (a terminal state is final: no write ever changes it
again), when it ended more than ``days`` ago, or when it is among the oldest terminal tasks
beyond the newest ``max_tasks``. Rows are read in id order from the low end (ids grow with
creation time, and a task cannot have ended before it was created, so the walk for the age limit
stops at the first rows created after the cutoff).

Each batch is one write (``changes.TasksPruned``): the tasks (deleted only if still in the state
they were read in), the counts of terminal tasks by state, and the retention mark (the largest id
pruned, the total). A batch is all or nothing, so a pass cut off at any point leaves a consistent
database.

This module knows the policy; the pruning loop is ``daemon.pruner``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scale_scheduler.state.changes import PrunedTask
from scale_scheduler.state.domain import TERMINAL, TaskState
from scale_scheduler.state.interface import TaskEnd

DAY = 86_400.0
_TERMINAL_VALUES = frozenset(state.value for state in TERMINAL)


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


class PassPlan:
    """One pass's walk over the tasks: feed it batches of ``task_ends`` in id order, get victims.

    ``excess`` terminal tasks (the oldest by id) go whatever their age; after them, terminal
    tasks that ended before ``cutoff`` (None: no age limit).
    """

    def __init__(self, excess: int, cutoff: float | None) -> None:
        self.excess = max(0, excess)
        self.cutoff = cutoff
        self.after = 0
        self.done = self.excess == 0 and cutoff is None

    def take(self, rows: Sequence[TaskEnd]) -> list[PrunedTask]:
        """The victims among ``rows`` (the next ones in id order); sets ``done`` at the end."""
        victims: list[PrunedTask] = []
        cutoff = self.cutoff
        older = False
        for task_id, state_value, created, ended in rows:
            if cutoff is not None and created < cutoff:
                older = True
            if state_value not in _TERMINAL_VALUES:
                continue
            if self.excess > 0:
                self.excess -= 1
                victims.append(PrunedTask(task_id, TaskState(state_value)))
            elif cutoff is not None and ended is not None and ended < cutoff:
                victims.append(PrunedTask(task_id, TaskState(state_value)))
        if rows:
            self.after = rows[-1][0]
        # Done when the table ends, or when neither limit can find more: no excess left and
        # (no age limit, or these rows were all created after the cutoff).
        self.done = not rows or (self.excess == 0 and (cutoff is None or not older))
        return victims
