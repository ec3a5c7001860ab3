"""The task model: the compact in-memory record, the launch spec, and the API's views.

A task is stored once in SQLite (table ``tasks``, every field the API shows) and, while it is not
terminal, once in memory as a small ``Task`` record holding only what scheduling needs. The launch
spec (name, command, container, env, labels) stays as the compact JSON bytes that are also the
``spec`` column, decoded only when the task is launched or shown. Resource shapes are interned,
so a million queued tasks share a handful of ``Shape`` objects (task states and shapes are the
domain's: ``state.domain``).

This module owns records and views; it knows no storage (a backend of
``state.interface`` stores them) and changes no state by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Annotated, NamedTuple

import msgspec

from scale_scheduler.state.domain import Shape, TaskState, constraints_json

# --- the launch spec and the in-memory record ------------------------------------------------


class BackoffSpec(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """A task's own retry back-off (``daemon.retry_backoff``); a field left out takes the
    configured default."""

    initial: float | None = None
    factor: float | None = None
    max: float | None = None


class TaskSpec(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    """What goes into the TaskInfo besides resources, and the task's lifecycle settings read
    only when it launches, fails or is killed; stored as compact JSON bytes."""

    name: str
    command: str | None = None
    image: str | None = None
    env: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    kill_grace_period: float | None = None
    """Seconds between SIGTERM and SIGKILL (``KillPolicy.grace_period``)."""
    max_runtime: float | None = None
    """Seconds an attempt may run (``TaskInfo.max_completion_time``)."""
    retry_backoff: BackoffSpec | None = None


spec_encoder = msgspec.json.Encoder()
spec_decoder = msgspec.json.Decoder(TaskSpec)


class Task(msgspec.Struct, gc=False):
    """One non-terminal task in memory: only what scheduling needs (about 150 bytes + spec).

    ``busy`` marks a write about the task in flight (launch intent, cancel): the matcher skips it.
    ``indexed`` says the queue index holds an entry for it (so a requeue never adds a second).
    ``cluster_failures`` counts the attempts that ended by the cluster's fault, ``failures``
    those that were the task's own (``daemon.failure_classes``).
    """

    id: int
    priority: int
    shape: Shape
    spec: bytes
    state: TaskState
    max_attempts: int
    attempts: int = 0
    failures: int = 0
    cluster_failures: int = 0
    agent_id: str | None = None
    hostname: str | None = None
    launched: float = 0.0
    last_update: float = 0.0
    reconcile_sent: float = 0.0
    kill_requested: bool = False
    busy: bool = False
    indexed: bool = False
    next_attempt_at: float = 0.0
    """While the task waits out its retry back-off: when it may launch (0: not waiting)."""

    @property
    def mesos_task_id(self) -> str:
        return mesos_task_id(self.id, self.attempts)


def mesos_task_id(task_id: int, attempt: int) -> str:
    """Every launch gets a fresh Mesos id, so one id is launched at most once."""
    return f"{task_id}-{attempt}"


def parse_mesos_task_id(value: str) -> tuple[int, int] | None:
    head, sep, tail = value.rpartition("-")
    # isascii: str.isdigit() also accepts digits int() refuses, such as "²"
    if not sep or not value.isascii() or not head.isdigit() or not tail.isdigit():
        return None
    return int(head), int(tail)


# --- the API's view of a task ------------------------------------------------------------------


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


Timestamp = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
"""A time as ``iso`` writes it (UTC, milliseconds, ``Z``)."""
Count = Annotated[int, msgspec.Meta(ge=0)]
RowId = Annotated[int, msgspec.Meta(ge=1)]
"""A row's id: SQLite numbers rows from 1."""

# The views below are what the API answers; the OpenAPI document is generated from them
# (``api/openapi.py``). Their bounds describe the answers: msgspec checks none when encoding.


class LastStatus(msgspec.Struct, forbid_unknown_fields=True):
    """The last status update Mesos sent about the task."""

    state: str
    message: str | None
    reason: str | None
    source: str | None
    timestamp: Timestamp | None


class ContainerView(msgspec.Struct, forbid_unknown_fields=True):
    """The container image the task runs in."""

    image: str


class BackoffView(msgspec.Struct, forbid_unknown_fields=True):
    """The task's own retry back-off (a null field takes ``scheduler.retry_backoff_*``)."""

    initial: float | None
    factor: float | None
    max: float | None


def backoff_view(spec: BackoffSpec | None) -> BackoffView | None:
    return None if spec is None else BackoffView(spec.initial, spec.factor, spec.max)


class AttemptView(msgspec.Struct, forbid_unknown_fields=True):
    """One launch of a task and how it ended (``ended`` None: it has not)."""

    attempt: Annotated[int, msgspec.Meta(ge=1)]
    mesos_task_id: str
    agent_id: str | None
    hostname: str | None
    launched: Timestamp | None
    ended: Timestamp | None
    state: str
    reason: str | None
    failure_class: (
        Annotated[str, msgspec.Meta(extra_json_schema={"enum": ["task", "cluster", "operator"]})]
        | None
    )


class TaskView(msgspec.Struct, forbid_unknown_fields=True):
    """A task as /queue/ and /tasks/ show it."""

    id: RowId
    name: str
    state: Annotated[str, msgspec.Meta(extra_json_schema={"enum": [s.value for s in TaskState]})]
    priority: int
    command: str | None
    container: ContainerView | None
    cpus: float
    mem: float
    disk: float
    gpus: Count
    ports: Count
    env: dict[str, str]
    labels: dict[str, str]
    constraints: list[list[str]]
    """Marathon's list form: ``[field, OPERATOR]`` or ``[field, OPERATOR, value]``."""
    group: str | None
    """The group whose tasks the scoped constraints count."""
    max_attempts: Annotated[int, msgspec.Meta(ge=1)]
    attempts: Count
    failures: Count
    mesos_task_id: str | None
    agent_id: str | None
    hostname: str | None
    assigned_ports: list[int]
    kill_requested: bool
    created: Timestamp | None
    queued: Timestamp | None
    launched: Timestamp | None
    started: Timestamp | None
    ended: Timestamp | None
    last_modified: Timestamp | None
    last_status: LastStatus | None
    waiting_reason: str | None
    next_attempt_at: Timestamp | None
    """While the task waits out its retry back-off: when it may launch again."""
    attempt_history: list[AttemptView]
    """Its launches, oldest first (at most the last ``ATTEMPT_HISTORY`` of those that failed,
    and the current or last one)."""
    kill_grace_period: float | None
    max_runtime: float | None
    retry_backoff: BackoffView | None


class EndedAttempt(NamedTuple):
    """An attempt that ended in failure (retried or not): one entry of the attempt history."""

    task_id: int
    attempt: int
    agent_id: str | None
    hostname: str | None
    launched: float | None
    ended: float
    state: str
    """The task state the attempt ended in (FAILED, LOST, KILLED, ...)."""
    reason: str | None
    failure_class: str | None


def ended_attempt_view(e: EndedAttempt) -> AttemptView:
    return AttemptView(
        attempt=e.attempt,
        mesos_task_id=mesos_task_id(e.task_id, e.attempt),
        agent_id=e.agent_id,
        hostname=e.hostname,
        launched=iso(e.launched),
        ended=iso(e.ended),
        state=e.state,
        reason=e.reason,
        failure_class=e.failure_class,
    )


def attempt_history(
    task_id: int,
    attempts: int,
    ended: Sequence[AttemptView],
    state: str,
    agent_id: str | None,
    hostname: str | None,
    launched: float | None,
    ended_at: float | None,
    reason: str | None,
) -> list[AttemptView]:
    """The stored attempts that ended in failure, and the task's current (or last) attempt from
    its own row when it is not among them: launched, finished, or ended in a failure that is
    stored (a success or a launch still going is not)."""
    history = list(ended)
    if not attempts or (history and history[-1].attempt >= attempts):
        return history
    if state in (TaskState.QUEUED.value, TaskState.CANCELED.value):
        return history  # the last attempt was never launched (its ACCEPT was not sent)
    history.append(
        AttemptView(
            attempt=attempts,
            mesos_task_id=mesos_task_id(task_id, attempts),
            agent_id=agent_id,
            hostname=hostname,
            launched=iso(launched),
            ended=iso(ended_at),
            state=state,
            reason=reason,
            failure_class=None,
        )
    )
    return history


ATTEMPT_HISTORY = 20
"""Attempts kept per task in ``attempt_history`` (older ones are dropped as new ones end)."""

EMPTY: dict[str, str] = {}


def new_task_view(
    task_id: int, spec: TaskSpec, priority: int, shape: Shape, max_attempts: int, now: float
) -> TaskView:
    """The view of a task just queued (what ``POST /queue/`` answers), without a database read."""
    stamp = iso(now)
    return TaskView(
        id=task_id,
        name=spec.name,
        state=TaskState.QUEUED.value,
        priority=priority,
        command=spec.command,
        container=ContainerView(spec.image) if spec.image else None,
        cpus=shape.cpus,
        mem=shape.mem,
        disk=shape.disk,
        gpus=shape.gpus,
        ports=shape.ports,
        env=spec.env or EMPTY,
        labels=spec.labels or EMPTY,
        constraints=constraints_json(shape.constraints),
        group=shape.group,
        max_attempts=max_attempts,
        attempts=0,
        failures=0,
        mesos_task_id=None,
        agent_id=None,
        hostname=None,
        assigned_ports=[],
        kill_requested=False,
        created=stamp,
        queued=stamp,
        launched=None,
        started=None,
        ended=None,
        last_modified=stamp,
        last_status=None,
        waiting_reason=None,
        next_attempt_at=None,
        attempt_history=[],
        kill_grace_period=spec.kill_grace_period,
        max_runtime=spec.max_runtime,
        retry_backoff=backoff_view(spec.retry_backoff),
    )
