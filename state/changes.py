"""The durable changes the scheduling core commits, as domain values (no SQL, no row tuples).

Each write is a list of these plus an ``apply`` callback (``state.interface.StateStore.commit``);
a backend turns each change into its own statements. Changes that end tasks carry their terminal
states, so every backend keeps the terminal counts (``task_counts``) in the same write.

A change refers to the in-memory records it was planned from (``Task``, ``Node``) only to read
them at commit time: a backend never mutates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from scale_scheduler.state.domain import TaskState
from scale_scheduler.state.tasks import EndedAttempt, Task

# --- tasks -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TasksQueued:
    """New tasks, each with its name (the spec's, shown by the API)."""

    tasks: Sequence[Task]
    names: Sequence[str]
    now: float


class LaunchIntent(NamedTuple):
    """A task is about to be launched as ``attempt`` on an agent, with these host ports."""

    task_id: int
    attempt: int
    agent_id: str
    hostname: str
    ports: Sequence[int]


@dataclass(frozen=True, slots=True)
class LaunchIntents:
    intents: Sequence[LaunchIntent]
    now: float


class RevertedLaunch(NamedTuple):
    """The ACCEPT of ``attempt`` was not sent: the task is queued again (if still that attempt)."""

    task_id: int
    attempt: int
    failures: int
    cluster_failures: int


@dataclass(frozen=True, slots=True)
class LaunchesReverted:
    reverts: Sequence[RevertedLaunch]
    now: float


class StatusChange:
    """What one burst of status updates did to one task: its new state (or a requeue), its
    counters, and the last status received. The task tracker's working record of a burst is a
    subclass, so the burst hands its records over as they are (no copy per task)."""

    __slots__ = (
        "cluster_failures",
        "ended_attempt",
        "failures",
        "next_attempt_at",
        "requeue",
        "started",
        "state",
        "status_message",
        "status_reason",
        "status_source",
        "status_state",
        "status_time",
        "task_id",
    )

    def __init__(
        self, task_id: int, state: TaskState, failures: int, cluster_failures: int
    ) -> None:
        self.task_id = task_id
        self.state = state
        self.failures = failures
        self.cluster_failures = cluster_failures
        self.requeue = False
        """Queued again (``state`` is then QUEUED): the agent and ports are cleared."""
        self.started = False
        """Reached RUNNING in this burst (the first such time is kept as ``started``)."""
        self.status_state: str | None = None
        self.status_message: str | None = None
        self.status_reason: str | None = None
        self.status_source: str | None = None
        self.status_time: float | None = None
        self.next_attempt_at: float | None = None
        """A requeue that waits out a retry back-off: when the task may launch again."""
        self.ended_attempt: EndedAttempt | None = None
        """The attempt ended in failure: its entry of the history (kept with the change)."""


@dataclass(frozen=True, slots=True)
class StatusesApplied:
    """One burst's changes (only tasks whose state changed). A terminal ``state`` is counted."""

    changes: Sequence[StatusChange]
    now: float


@dataclass(frozen=True, slots=True)
class TaskCanceled:
    """A queued task is canceled (only if it is still queued when the write commits)."""

    task_id: int
    now: float


@dataclass(frozen=True, slots=True)
class KillRequested:
    task_id: int
    now: float


@dataclass(frozen=True, slots=True)
class PrunedTask:
    task_id: int
    state: TaskState


@dataclass(frozen=True, slots=True)
class TasksPruned:
    """Retention: delete terminal tasks (each only if still in that state), uncount them, and
    move the retention mark (the largest id pruned, the total)."""

    tasks: Sequence[PrunedTask]


# --- the scheduler row, nodes, framework -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SchedulerRowEnsured:
    """Create the scheduler row (not paused) if it is missing (start-up only)."""

    now: float


@dataclass(frozen=True, slots=True)
class PauseSet:
    """Set the global pause flag; the write fails with ``MissingRowError`` without the row."""

    is_paused: bool
    now: float


@dataclass(frozen=True, slots=True)
class NodeFlagsChanged:
    """A node's operator flags, computed from the row as committed (``FlagChange.applied_to``);
    the write fails with ``MissingRowError`` without the row."""

    node_id: int
    is_paused: bool | None
    set_reason: bool
    pause_reason: str | None
    is_active: bool | None
    now: float


class NewNode(NamedTuple):
    node_id: int
    hostname: str
    agent_id: str | None
    now: float


@dataclass(frozen=True, slots=True)
class NodesSighted:
    """Nodes seen for the first time, and known nodes whose agent id changed."""

    new: Sequence[NewNode]
    moved: Sequence[tuple[int, str]]
    """(node id, new agent id)"""


@dataclass(frozen=True, slots=True)
class NodesOffered:
    """When nodes last made an offer: (node id, time)."""

    last_offers: Sequence[tuple[int, float]]


@dataclass(frozen=True, slots=True)
class FrameworkIdSaved:
    framework_id: str
    now: float


Change = (
    TasksQueued
    | LaunchIntents
    | LaunchesReverted
    | StatusesApplied
    | TaskCanceled
    | KillRequested
    | TasksPruned
    | SchedulerRowEnsured
    | PauseSet
    | NodeFlagsChanged
    | NodesSighted
    | NodesOffered
    | FrameworkIdSaved
)
