"""Values the task tracker exchanges with the API and the offer pipeline: a task to queue, a
planned launch, the outcome of a DELETE."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from scale_scheduler.daemon.scheduling.matcher import AgentLaunch, TaskPlacement
from scale_scheduler.state.changes import LaunchIntents
from scale_scheduler.state.domain import Constraints
from scale_scheduler.state.tasks import Task, TaskSpec, mesos_task_id


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
class PlannedTask:
    task: Task
    attempt: int
    placement: TaskPlacement

    @property
    def mesos_task_id(self) -> str:
        return mesos_task_id(self.task.id, self.attempt)


@dataclass(slots=True)
class LaunchPlan:
    """Launch intents of one offer pass: per agent, the tasks and their new attempt numbers."""

    agents: list[tuple[AgentLaunch, list[PlannedTask]]]
    change: LaunchIntents
    apply: Callable[[], None]

    @property
    def tasks(self) -> Iterable[PlannedTask]:
        for _launch, planned in self.agents:
            yield from planned
