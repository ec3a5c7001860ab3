"""The scheduling domain's shared types: task states and resource shapes.

Both the pure scheduling code (the matcher, the queue index) and the storage modules of
``state/`` use these, so they live here, apart from either: this module imports nothing of the
project, and the matcher reads a ``Shape`` without importing a storage module. The API may
import it too (task states name its filters and answers).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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

Constraints = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Shape:
    """What placement depends on: resources and constraints. Interned, hashable, shared."""

    cpus: float
    mem: float
    disk: float = 0.0
    gpus: int = 0
    ports: int = 0
    constraints: Constraints = ()

    def describe(self) -> str:
        parts = [f"cpus={_num(self.cpus)}", f"mem={_num(self.mem)}"]
        if self.disk:
            parts.append(f"disk={_num(self.disk)}")
        if self.gpus:
            parts.append(f"gpus={self.gpus}")
        if self.ports:
            parts.append(f"ports={self.ports}")
        parts.extend(f"{name}={value}" for name, value in self.constraints)
        return " ".join(parts)


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
    ) -> Shape:
        key = (cpus, mem, disk, gpus, ports, constraints)
        shape = self._by_key.get(key)
        if shape is None:
            made = Shape(float(cpus), float(mem), float(disk), int(gpus), int(ports), constraints)
            shape = self._by_key[key] = self._shapes.setdefault(made, made)
        return shape

    def __len__(self) -> int:
        return len(self._shapes)


def constraints_from(mapping: Mapping[str, str] | None) -> Constraints:
    if not mapping:
        return ()
    return tuple(sorted(mapping.items()))
