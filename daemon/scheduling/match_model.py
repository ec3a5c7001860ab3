"""The matcher's vocabulary: its settings, its decisions (launches, declines, waiting groups) and
what it reads of the queue and of the groups' live tasks. Pure types, no logic."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeVar

from scale_scheduler.daemon.mesos.mesos_types import Resource
from scale_scheduler.state.domain import Shape


class WaitReason(str, enum.Enum):
    """Why a group of queued tasks was not placed, most general first."""

    SCHEDULER_PAUSED = "SCHEDULER_PAUSED"
    NO_OFFERS = "NO_OFFERS"
    NODES_PAUSED = "NODES_PAUSED"
    CONSTRAINTS = "CONSTRAINTS"
    CPUS = "CPUS"
    MEM = "MEM"
    DISK = "DISK"
    GPUS = "GPUS"
    PORTS = "PORTS"
    RESOURCES = "RESOURCES"
    """Every resource is available somewhere, but no offer has them all together."""
    FLOW_CONTROL = "FLOW_CONTROL"
    """The pass's launch budget was spent (tasks launched but not yet confirmed)."""


class DeclineReason(str, enum.Enum):
    SCHEDULER_PAUSED = "SCHEDULER_PAUSED"
    NODE_PAUSED = "NODE_PAUSED"
    NODE_INACTIVE = "NODE_INACTIVE"
    NOTHING_FITS = "NOTHING_FITS"
    QUEUE_EMPTY = "QUEUE_EMPTY"
    FLOW_CONTROL = "FLOW_CONTROL"


@dataclass(frozen=True, slots=True)
class MatchSettings:
    refuse_seconds: float
    idle_refuse_seconds: float
    flow_refuse_seconds: float = 1.0
    """Filter on offers declined because the launch budget was spent: short, as the budget
    comes back as soon as launches are confirmed."""


class TaskPlacement(NamedTuple):
    """One task placed: made once per task placed, so a tuple (a frozen dataclass costs 3x)."""

    task_id: int
    resources: tuple[Resource, ...]
    ports: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentLaunch:
    """One ACCEPT: every offer of one agent and every task placed on it."""

    agent_id: str
    hostname: str
    offer_ids: tuple[str, ...]
    placements: tuple[TaskPlacement, ...]


@dataclass(frozen=True, slots=True)
class Decline:
    offer_ids: tuple[str, ...]
    refuse_seconds: float
    reason: DeclineReason


@dataclass(frozen=True, slots=True)
class GroupWaiting:
    priority: int
    shape: Shape
    reason: WaitReason
    message: str


@dataclass(frozen=True, slots=True)
class MatchResult:
    launches: tuple[AgentLaunch, ...]
    declines: tuple[Decline, ...]
    waiting: tuple[GroupWaiting, ...]
    groups_examined: int = 0

    @property
    def placed(self) -> int:
        return sum(len(launch.placements) for launch in self.launches)


class GroupView(Protocol):
    @property
    def priority(self) -> int: ...

    @property
    def shape(self) -> Shape: ...


G = TypeVar("G", bound=GroupView)


class QueueView(Protocol[G]):
    """What the matcher reads of the queue (``QueueIndex`` implements it for its groups)."""

    def levels(self) -> Iterator[Sequence[G]]: ...

    def eligible_runs(self, group: G) -> Iterator[list[int]]:
        """The ids of the group's tasks that may be placed now, in id order, in non-empty lists
        (the first one short: a group that fits nowhere is given up after its first id)."""
        ...


class PlacementView(Protocol):
    """What scoped constraints read beyond the offers (``PlacementCounts`` implements it)."""

    def group_counts(self, group: str) -> Mapping[str, Mapping[str, int]]:
        """The group's live tasks per field, per value."""
        ...

    def known_values(self, field: str) -> int:
        """How many distinct values of ``field`` the cluster's agents have."""
        ...


def flow_waiting(group: GroupView) -> GroupWaiting:
    """A group left unplaced because the pass's launch budget ran out."""
    return GroupWaiting(group.priority, group.shape, WaitReason.FLOW_CONTROL, "launch flow control")
