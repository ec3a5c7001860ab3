"""The daemon's own watch over ``max_runtime``, for masters that do not enforce
``TaskInfo.max_completion_time``.

Each launch of a task with a ``max_runtime`` is entered with its deadline (launch time plus the
limit plus ``RUNTIME_LIMIT_MARGIN``, so that a master that does enforce it always comes first);
``overdue`` hands back the launches past it that are still the task's current attempt. The
tracker then kills them and ends them as Mesos would (``runtime_limit_status``: TASK_FAILED,
``REASON_MAX_COMPLETION_TIME_REACHED``, a failure of the task's own).

Pure data structure: no I/O; the time comes in as an argument.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from scale_scheduler.daemon.mesos.mesos_types import TaskStatus, Value
from scale_scheduler.state.tasks import Task, spec_decoder

RUNTIME_LIMIT_MARGIN = 5.0
"""Seconds past ``max_runtime`` before the daemon acts itself."""
RUNTIME_LIMIT_MESSAGE = "ran past its max_runtime (enforced by the scheduler)"


def max_runtime(task: Task) -> float | None:
    """The task's ``max_runtime`` (its spec is decoded only when it names one)."""
    if b'"max_runtime"' not in task.spec:
        return None
    return spec_decoder.decode(task.spec).max_runtime


class RuntimeLimits:
    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int]] = []

    def watch(self, task: Task, attempt: int, launched: float, limit: float) -> None:
        heapq.heappush(self._heap, (launched + limit + RUNTIME_LIMIT_MARGIN, task.id, attempt))

    def overdue(self, now: float, tasks: Mapping[int, Task]) -> list[Task]:
        """Launched tasks still on the watched attempt whose deadline has passed."""
        heap = self._heap
        found: list[Task] = []
        while heap and heap[0][0] <= now:
            _deadline, task_id, attempt = heapq.heappop(heap)
            task = tasks.get(task_id)
            if task is not None and task.attempts == attempt and task.state.launched:
                found.append(task)
        return found

    def __len__(self) -> int:
        return len(self._heap)


def runtime_limit_status(task: Task, now: float) -> TaskStatus:
    """The scheduler's own end of an attempt that ran past its limit, as Mesos reports it."""
    return TaskStatus(
        task_id=Value(task.mesos_task_id),
        state="TASK_FAILED",
        message=RUNTIME_LIMIT_MESSAGE,
        source="SOURCE_SCHEDULER",
        reason="REASON_MAX_COMPLETION_TIME_REACHED",
        agent_id=Value(task.agent_id) if task.agent_id else None,
        timestamp=now,
    )
