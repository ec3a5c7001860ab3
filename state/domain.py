"""The scheduling domain's shared types: task states and resource shapes.

Both the pure scheduling code (the matcher, the queue index) and the storage modules of
``state/`` use these, so they live here, apart from either: this module imports nothing of the
project but the placement constraints' model (``placement_constraints``, itself importing
nothing of the project), and the matcher reads a ``Shape`` without importing a storage module.
The API may import it too (task states name its filters and answers).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scale_scheduler.state.placement_constraints import Constraint, Operator, parse_constraints


class TaskState(str, enum.Enum):
    """A task's own state. Mesos states map onto it (``TASK_RUNNING`` -> ``RUNNING``)."""

    QUEUED = "QUEUED"
    LAUNCHING = "LAUNCHING"
    """Intent committed: an ACCEPT carrying it is being (or has been) sent; no status yet."""
    STAGING = "STAGING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    KILLING = "KILLING"
    UNREACHABLE = "UNREACHABLE"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    LOST = "LOST"
    ERROR = "ERROR"
    DROPPED = "DROPPED"
    GONE = "GONE"
    CANCELED = "CANCELED"
    """Removed from the queue before it was launched."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def launched(self) -> bool:
        """Holds resources on an agent (from the launch intent until a terminal state)."""
        return self in LAUNCHED


TERMINAL = frozenset(
    {
        TaskState.FINISHED,
        TaskState.FAILED,
        TaskState.KILLED,
        TaskState.LOST,
        TaskState.ERROR,
        TaskState.DROPPED,
        TaskState.GONE,
        TaskState.CANCELED,
    }
)
LAUNCHED = frozenset(
    {
        TaskState.LAUNCHING,
        TaskState.STAGING,
        TaskState.STARTING,
        TaskState.RUNNING,
        TaskState.KILLING,
        TaskState.UNREACHABLE,
    }
)
LIVE = frozenset({TaskState.QUEUED} | LAUNCHED)

_STATE_BY_VALUE = {state.value: state for state in TaskState}


def parse_state(value: str) -> TaskState | None:
    return _STATE_BY_VALUE.get(value.upper())


# --- shapes ------------------------------------------------------------------------------------

Constraints = tuple[Constraint, ...]


@dataclass(frozen=True, slots=True)
class Shape:
    """What placement depends on: resources, constraints and, for tasks that name one, the
    group whose tasks scoped constraints count. Interned, hashable, shared: a constraint's
    regular expression is compiled once, when the task body is parsed, and shared with it."""

    cpus: float
    mem: float
    disk: float = 0.0
    gpus: int = 0
    ports: int = 0
    constraints: Constraints = ()
    group: str | None = None
    static: Constraints = dataclasses.field(default=(), init=False, compare=False, repr=False)
    """The constraints that read only the agent (an agent one fails never takes the shape)."""
    scoped: Constraints = dataclasses.field(default=(), init=False, compare=False, repr=False)
    """The constraints that count the group's tasks per value."""
    agent_part: Shape | None = dataclasses.field(
        default=None, init=False, compare=False, repr=False
    )
    """The shape without its group and scoped constraints (None: this shape is that already):
    what an agent alone decides, which shapes differing only in their group share."""
    hashed: int = dataclasses.field(default=0, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # The matcher looks shapes up several times per task placed: hash the fields once.
        fields = (self.cpus, self.mem, self.disk, self.gpus, self.ports, self.constraints)
        object.__setattr__(self, "hashed", hash((*fields, self.group)))
        if self.group is not None or self.constraints:
            static = tuple(c for c in self.constraints if not c.scoped)
            if self.group is not None or len(static) != len(self.constraints):
                part = Shape(self.cpus, self.mem, self.disk, self.gpus, self.ports, static)
                object.__setattr__(self, "agent_part", part)
        if self.constraints:
            scoped = tuple(c for c in self.constraints if c.scoped)
            static = tuple(c for c in self.constraints if not c.scoped)
            object.__setattr__(self, "static", static)
            object.__setattr__(self, "scoped", scoped)

    def __hash__(self) -> int:
        return self.hashed

    @property
    def fit(self) -> Shape:
        """The shape as far as one agent alone decides whether it fits (resources and the
        constraints that read only the agent)."""
        return self.agent_part if self.agent_part is not None else self

    def describe(self) -> str:
        parts = [f"cpus={_num(self.cpus)}", f"mem={_num(self.mem)}"]
        if self.disk:
            parts.append(f"disk={_num(self.disk)}")
        if self.gpus:
            parts.append(f"gpus={self.gpus}")
        if self.ports:
            parts.append(f"ports={self.ports}")
        parts.extend(describe_constraint(c) for c in self.constraints)
        if self.group is not None:
            parts.append(f"group={self.group}")
        return " ".join(parts)


def describe_constraint(constraint: Constraint) -> str:
    """``rack=r1`` for ``IS`` (the shorthand's own form), ``UNIQUE hostname`` for the others."""
    if constraint.operator is Operator.IS:
        return f"{constraint.field}={constraint.value}"
    return str(constraint)


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


class ShapeInterner:
    """Returns one shared ``Shape`` per distinct value (looked up by a plain tuple: cheap)."""

    def __init__(self) -> None:
        self._shapes: dict[Shape, Shape] = {}
        self._by_key: dict[tuple[Any, ...], Shape] = {}

    def get(
        self,
        cpus: float,
        mem: float,
        disk: float = 0.0,
        gpus: int = 0,
        ports: int = 0,
        constraints: Constraints = (),
        group: str | None = None,
    ) -> Shape:
        key = (cpus, mem, disk, gpus, ports, constraints, group)
        shape = self._by_key.get(key)
        if shape is None:
            made = Shape(
                float(cpus), float(mem), float(disk), int(gpus), int(ports), constraints, group
            )
            shape = self._by_key[key] = self._shapes.setdefault(made, made)
        return shape

    def __len__(self) -> int:
        return len(self._shapes)


def constraints_from(
    raw: Sequence[Sequence[str]] | Mapping[str, str] | None, group: str | None = None
) -> Constraints:
    """Constraints from Marathon's list form or the ``{"attr": "value"}`` shorthand (``IS``);
    ``ConstraintError`` names a bad one."""
    if not raw:
        return ()
    return parse_constraints(raw, group=group)


def constraints_json(constraints: Constraints) -> list[list[str]]:
    """Marathon's list form, as stored and shown."""
    return [c.as_list() for c in constraints]
