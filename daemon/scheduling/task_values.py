"""Values the task tracker exchanges with the API: a task to queue (and the records and views
it is queued as), the outcome of a DELETE. The launch plan the offer pipeline gets is in
``launch_plans``."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from scale_scheduler.state.domain import Constraints, ShapeInterner, TaskState
from scale_scheduler.state.tasks import Task, TaskSpec, TaskView, new_task_view, spec_encoder


class TaskNotFoundError(LookupError):
    """No task has that id."""


class DeleteOutcome(str, enum.Enum):
    CANCELED = "CANCELED"
    KILL_REQUESTED = "KILL_REQUESTED"
    ALREADY_TERMINAL = "ALREADY_TERMINAL"


@dataclass(frozen=True, slots=True)
class NewTask:
    spec: TaskSpec
    priority: int
    cpus: float
    mem: float
    disk: float
    gpus: int
    ports: int
    constraints: Constraints
    max_attempts: int
    group: str | None = None


@dataclass(slots=True)
class QueuedTasks:
    """New tasks as the tracker queues them: their records, names (for the queue's rows) and
    the views the API answers with."""

    records: list[Task]
    names: list[str]
    views: list[TaskView]


def queued_tasks(
    items: Sequence[NewTask], first_id: int, now: float, interner: ShapeInterner
) -> QueuedTasks:
    """The QUEUED records of new tasks numbered from ``first_id`` (shapes interned)."""
    queued = QueuedTasks([], [], [])
    encode = spec_encoder.encode
    for offset, item in enumerate(items):
        task_id = first_id + offset
        shape = interner.get(
            item.cpus, item.mem, item.disk, item.gpus, item.ports, item.constraints, item.group
        )
        queued.names.append(item.spec.name)
        queued.records.append(
            Task(
                id=task_id,
                priority=item.priority,
                shape=shape,
                spec=encode(item.spec),
                state=TaskState.QUEUED,
                max_attempts=item.max_attempts,
                last_update=now,
            )
        )
        queued.views.append(
            new_task_view(task_id, item.spec, item.priority, shape, item.max_attempts, now)
        )
    return queued
