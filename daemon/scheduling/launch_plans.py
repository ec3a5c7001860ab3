"""The launch plan of one offer pass: the matcher's placements turned into launch intents.

``reserve_launches`` marks each placed task busy (no other command may take it while its intent
is committed) and gives it its next attempt number; the intents it builds are what the tracker
commits before the ACCEPT (``TaskTracker.plan_launch``, whose ``apply`` moves the tasks to
LAUNCHING once they are durable). When the pass is over, ``release_launches`` (the intent was not
committed: the tasks stay queued) or ``finish_launches`` (it was: the kills owed to tasks a DELETE
reached meanwhile) frees them again.

No I/O, no clock, no logging: times come in as arguments, and the only change made to a task is
its ``busy`` flag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from scale_scheduler.daemon.scheduling import task_commands as commands
from scale_scheduler.daemon.scheduling.matcher import AgentLaunch, TaskPlacement
from scale_scheduler.daemon.scheduling.task_commands import Kill
from scale_scheduler.state.changes import LaunchIntent, LaunchIntents
from scale_scheduler.state.tasks import Task, mesos_task_id


@dataclass(slots=True)
class PlannedTask:
    task: Task
    attempt: int
    placement: TaskPlacement

    @property
    def mesos_task_id(self) -> str:
        return mesos_task_id(self.task.id, self.attempt)


AgentLaunches = list[tuple[AgentLaunch, list[PlannedTask]]]
"""Per agent of the pass, the tasks placed on it."""


@dataclass(slots=True)
class LaunchPlan:
    """Launch intents of one offer pass: per agent, the tasks and their new attempt numbers."""

    agents: AgentLaunches
    change: LaunchIntents
    apply: Callable[[], None]

    @property
    def tasks(self) -> Iterable[PlannedTask]:
        for _launch, planned in self.agents:
            yield from planned


def reserve_launches(
    launches: Sequence[AgentLaunch], tasks: Mapping[int, Task], now: float
) -> tuple[AgentLaunches, LaunchIntents]:
    """Reserve the placed tasks (busy) under their next attempt and build their intents."""
    agents: AgentLaunches = []
    intents: list[LaunchIntent] = []
    for launch in launches:
        planned: list[PlannedTask] = []
        for placement in launch.placements:
            task = tasks[placement.task_id]
            task.busy = True
            attempt = task.attempts + 1
            planned.append(PlannedTask(task, attempt, placement))
            intents.append(
                LaunchIntent(task.id, attempt, launch.agent_id, launch.hostname, placement.ports)
            )
        agents.append((launch, planned))
    return agents, LaunchIntents(intents, now)


def release_launches(plan: LaunchPlan) -> list[int]:
    """The intent was not committed: the tasks stay queued and may be placed again. Returns the
    ids of those asked to die meanwhile (cancel them)."""
    for item in plan.tasks:
        item.task.busy = False
    return commands.doomed(item.task for item in plan.tasks)


def finish_launches(plan: LaunchPlan) -> tuple[list[Kill], list[int]]:
    """The pass is over for these tasks. Returns the KILLs to send now (tasks a DELETE reached
    while their launch was in flight), and the ids of tasks asked to die whose launch was
    reverted (cancel them)."""
    kills: list[Kill] = []
    for item in plan.tasks:
        task = item.task
        task.busy = False
        if commands.kill_after_launch(task, item.attempt):
            kills.append((item.mesos_task_id, task.agent_id, commands.kill_grace(task)))
    return kills, commands.doomed(item.task for item in plan.tasks)
