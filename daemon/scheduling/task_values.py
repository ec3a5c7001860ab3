"""Values the task tracker exchanges with the API: a task to queue (and the records and views
it is queued as), the outcome of a DELETE. The launch plan the offer pipeline gets is in
``launch_plans``."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from scale_scheduler.state.domain import Constraints, Shape, ShapeInterner, TaskState
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


Prepared = tuple[Shape, bytes]
"""A new task's interned shape and encoded spec."""


def prepare_tasks(items: Sequence[NewTask], interner: ShapeInterner) -> list[Prepared]:
    """Each new task's shape (interned) and encoded spec: the costly part of queueing."""
    encode = spec_encoder.encode
    return [
        (
            interner.get(
                item.cpus, item.mem, item.disk, item.gpus, item.ports, item.constraints, item.group
            ),
            encode(item.spec),
        )
        for item in items
    ]


def queued_records(
    items: Sequence[NewTask], prepared: Sequence[Prepared], first_id: int, now: float
) -> list[Task]:
    """The QUEUED records of new tasks numbered from ``first_id``."""
    return [
        Task(
            id=first_id + offset,
            priority=item.priority,
            shape=shape,
            spec=spec,
            state=TaskState.QUEUED,
            max_attempts=item.max_attempts,
            last_update=now,
        )
        for offset, (item, (shape, spec)) in enumerate(zip(items, prepared, strict=True))
    ]


def queued_views(
    items: Sequence[NewTask],
    prepared: Sequence[Prepared],
    first_id: int,
    now: float,
    span: range,
) -> list[TaskView]:
    """The views the API answers with, for the new tasks at the offsets in ``span``."""
    return [
        new_task_view(
            first_id + offset,
            items[offset].spec,
            items[offset].priority,
            prepared[offset][0],
            items[offset].max_attempts,
            now,
        )
        for offset in span
    ]
