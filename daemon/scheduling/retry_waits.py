"""Queued tasks waiting out their retry back-off, kept apart from the queue index.

A task whose attempt failed by its own fault is queued again with ``Task.next_attempt_at`` set
(``task_commands``); until then it is here, not in the queue index, so an offer pass never
looks at it. ``due`` hands back the tasks whose time has come (a heap: each call costs a look
at the earliest one when nothing is due); the tracker enters them into the index.

Pure data structure: no I/O; the time comes in as an argument.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from scale_scheduler.state.domain import TaskState
from scale_scheduler.state.tasks import Task


class RetryWaits:
    __slots__ = ("_heap", "_waiting")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._waiting: dict[int, Task] = {}

    def add(self, task: Task) -> None:
        """Hold a queued task until its ``next_attempt_at``."""
        self._waiting[task.id] = task
        heapq.heappush(self._heap, (task.next_attempt_at, task.id))

    def discard(self, task_id: int) -> None:
        """Forget a task (canceled while it waits); its heap entry is dropped when it comes up."""
        self._waiting.pop(task_id, None)

    def due(self, now: float) -> list[Task]:
        """The waiting tasks due at ``now``, earliest first; ``next_attempt_at`` is cleared."""
        heap, waiting = self._heap, self._waiting
        found: list[Task] = []
        while heap and heap[0][0] <= now:
            at, task_id = heapq.heappop(heap)
            task = waiting.get(task_id)
            if task is None or task.next_attempt_at != at:
                continue  # canceled, or an entry of an earlier wait
            del waiting[task_id]
            if task.state is TaskState.QUEUED:
                task.next_attempt_at = 0.0
                found.append(task)
        return found

    @property
    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def waiting(self) -> Iterator[Task]:
        """The waiting tasks in the order they come due."""
        for _at, task_id in sorted(self._heap):
            task = self._waiting.get(task_id)
            if task is not None and task.next_attempt_at == _at:
                yield task

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, task_id: int) -> bool:
        return task_id in self._waiting
