"""The body of ``POST /queue/``: one task or a batch of up to ``MAX_BATCH``, decoded, validated
and turned into ``NewTask``s, or a 400 naming the first problem (and the task's index).

The fast path decodes each task straight into ``TaskIn`` (msgspec, in C), where the bounds of
``limits`` are declared so that the OpenAPI document states them too; ``task_problem`` then
checks what msgspec cannot: the character rules, the least ``cpus``, a command or an image.

A batch is split into its tasks first (undecoded, ``msgspec.Raw``) and decoded, checked and
converted ``CHUNK`` tasks at a time, with the event loop let go in between: a 16 MB batch never
holds the loop for more than a chunk's work.

Only a task that fails the fast path is looked at again (its own bytes, one level deep, see
``json_body``): to name every unexpected field, to take integer fields written as whole floats
(``3.0``: JSON does not tell it from ``3``), or to turn msgspec's error into a message.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec

from scale_scheduler.api import limits
from scale_scheduler.api.errors import bad_request
from scale_scheduler.api.json_body import (
    BodyError,
    BoundedArray,
    NumberOutOfRange,
    TooManyItems,
    brief,
    decode_shallow,
    decode_typed,
)
from scale_scheduler.api.limits import ENV_NAME, IMAGE, NO_NUL, PRINTABLE, RULES
from scale_scheduler.daemon.scheduling.core_facade import (
    MAX_BACKOFF_SECONDS,
    BackoffSpec,
    NewTask,
    RetryBackoff,
    TaskSpec,
)
from scale_scheduler.daemon.service.validation_failure import failure_of
from scale_scheduler.state.domain import constraints_from
from scale_scheduler.state.placement_constraints import ConstraintError

MAX_BATCH = 10_000
CHUNK = 500
"""Tasks decoded and checked between two turns of the event loop (about 2 ms of work)."""
_INT64_MAX = 2**63 - 1  # what the database holds


def _pattern(pattern: str) -> dict[str, str]:
    """A character rule for the schema only: ``task_problem`` checks it (see ``limits``)."""
    return {"pattern": pattern}


_Key = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.MAX_KEY, extra_json_schema=_pattern(NO_NUL))
]
_Value = Annotated[
    str, msgspec.Meta(max_length=limits.MAX_VALUE, extra_json_schema=_pattern(NO_NUL))
]
_EnvName = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=limits.MAX_KEY, extra_json_schema=_pattern(ENV_NAME)),
]
_StringMap = Annotated[dict[_Key, _Value], msgspec.Meta(max_length=limits.MAX_ENTRIES)]
_Env = Annotated[dict[_EnvName, _Value], msgspec.Meta(max_length=limits.MAX_ENTRIES)]
_Name = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=limits.MAX_NAME, extra_json_schema=_pattern(PRINTABLE)),
]
_Command = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=limits.MAX_COMMAND, extra_json_schema=_pattern(NO_NUL)),
]
_Image = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=limits.MAX_IMAGE, extra_json_schema=_pattern(IMAGE)),
]


_Group = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=limits.MAX_KEY, extra_json_schema=_pattern(PRINTABLE)),
]
_ConstraintIn = Annotated[
    list[_Value],
    msgspec.Meta(
        min_length=2,
        max_length=3,
        description="[field, OPERATOR] or [field, OPERATOR, value] (Marathon's form)",
    ),
]
_Constraints = (
    Annotated[list[_ConstraintIn], msgspec.Meta(max_length=limits.MAX_ENTRIES)] | _StringMap
)


class ContainerIn(msgspec.Struct, forbid_unknown_fields=True):
    image: _Image


class RetryBackoffIn(msgspec.Struct, forbid_unknown_fields=True):
    """A task's own retry back-off; a field left out takes ``scheduler.retry_backoff_*``."""

    initial: Annotated[float, msgspec.Meta(ge=0, le=MAX_BACKOFF_SECONDS)] | None = None
    factor: Annotated[float, msgspec.Meta(ge=1, le=100)] | None = None
    max: Annotated[float, msgspec.Meta(ge=0, le=MAX_BACKOFF_SECONDS)] | None = None


class TaskIn(msgspec.Struct, forbid_unknown_fields=True):
    """One task as ``POST /queue/`` accepts it."""

    name: _Name
    cpus: Annotated[
        float,
        msgspec.Meta(gt=0, le=limits.MAX_CPUS, extra_json_schema={"minimum": limits.MIN_CPUS}),
    ]
    mem: Annotated[float, msgspec.Meta(ge=limits.MIN_MEM, le=limits.MAX_MIB)]
    command: _Command | None = None
    container: ContainerIn | None = None
    disk: Annotated[float, msgspec.Meta(ge=0, le=limits.MAX_MIB)] = 0.0
    gpus: Annotated[int, msgspec.Meta(ge=0, le=limits.MAX_GPUS)] = 0
    ports: Annotated[int, msgspec.Meta(ge=0, le=limits.MAX_PORTS)] = 0
    env: _Env = msgspec.field(default_factory=dict)
    priority: Annotated[int, msgspec.Meta(ge=-_INT64_MAX - 1, le=_INT64_MAX)] = 100
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=limits.MAX_ATTEMPTS)] = 1
    labels: _StringMap = msgspec.field(default_factory=dict)
    constraints: _Constraints = msgspec.field(default_factory=dict)
    """Marathon's placement constraints: ``[["hostname", "UNIQUE"], ["rack", "GROUP_BY", "3"]]``
    (operators UNIQUE, CLUSTER, GROUP_BY, MAX_PER, LIKE, UNLIKE, IS), or ``{"rack": "r1"}`` for
    IS."""
    group: _Group | None = None
    """The group whose non-terminal tasks UNIQUE, GROUP_BY, MAX_PER and CLUSTER count."""
    kill_grace_period: Annotated[float, msgspec.Meta(ge=0, le=limits.MAX_KILL_GRACE)] | None = None
    max_runtime: Annotated[float, msgspec.Meta(gt=0, le=limits.MAX_RUNTIME)] | None = None
    retry_backoff: RetryBackoffIn | None = None


FIELDS = tuple(f.name for f in msgspec.structs.fields(TaskIn))
CONTAINER_FIELDS = tuple(f.name for f in msgspec.structs.fields(ContainerIn))
BACKOFF_FIELDS = tuple(f.name for f in msgspec.structs.fields(RetryBackoffIn))
_INT_FIELDS = ("gpus", "ports", "priority", "max_attempts")
_task_decoder = msgspec.json.Decoder(TaskIn)
_batch = BoundedArray(MAX_BATCH)

EMPTY = "The request body is empty; send a task or a list of tasks."
NOT_A_TASK = "The request body must be a task (JSON object) or a list of tasks."


async def decode_tasks(body: bytes) -> tuple[list[NewTask], bool]:
    """The tasks of a request body and whether it was a batch; 400 saying what is wrong."""
    start = body.lstrip()
    if not start:
        raise bad_request(EMPTY)
    try:
        if not start.startswith(b"["):
            return [to_new_task(_task(body, None), None)], False
        raws = _batch.split(body)
    except TooManyItems:
        raise bad_request(f"A batch holds at most {MAX_BATCH} tasks; this one has more.") from None
    except BodyError as exc:
        raise bad_request(str(exc)) from None
    if not raws:
        raise bad_request("The batch is empty; send at least one task.")
    tasks: list[NewTask] = []
    for first in range(0, len(raws), CHUNK):
        if first:
            await asyncio.sleep(0)  # let the loop serve others between chunks
        try:
            tasks.extend(
                to_new_task(_task(raws[index], index), index)
                for index in range(first, min(first + CHUNK, len(raws)))
            )
        except BodyError as exc:
            raise bad_request(str(exc)) from None
    return tasks, True


def _task(raw: bytes | msgspec.Raw, index: int | None) -> TaskIn:
    """One task from its bytes; ``BodyError`` saying what is wrong (and where in the batch)."""
    try:
        item = decode_typed(_task_decoder, raw)
    except msgspec.ValidationError as exc:
        item = _second_look(raw, exc, index)
    if item.command is None and item.container is None:
        raise BodyError(
            "Field 'command' is required when there is no 'container' "
            f"(a task runs a command, an image, or both){_where(index)}."
        )
    problem = task_problem(item)
    if problem is not None:
        field, reason = problem
        raise BodyError(_invalid(field, reason, index))
    return item


_printable = limits.fullmatcher(PRINTABLE)
_env_name = limits.fullmatcher(ENV_NAME)
_image = limits.fullmatcher(IMAGE)


def task_problem(item: TaskIn) -> tuple[str, str] | None:
    """The field and the reason of what msgspec's bounds cannot say about a task, or None.
    (Run for every task of every batch: the common case is kept to a few cheap tests.)"""
    if item.cpus < limits.MIN_CPUS:
        return "cpus", f"expected float >= {limits.MIN_CPUS} (Mesos keeps three decimal places)"
    if _printable(item.name) is None:
        return "name", f"expected {RULES[PRINTABLE]}"
    if item.command is not None and "\x00" in item.command:  # NO_NUL
        return "command", f"expected {RULES[NO_NUL]}"
    if item.container is not None and _image(item.container.image) is None:
        return "container.image", f"expected {RULES[IMAGE]}"
    if item.group is not None and _printable(item.group) is None:
        return "group", f"expected {RULES[PRINTABLE]}"
    if item.env or item.labels or item.constraints:
        return _mapping_problem(item)
    if item.retry_backoff is not None:
        return _backoff_problem(item.retry_backoff)
    return None


def _backoff_problem(own: RetryBackoffIn) -> tuple[str, str] | None:
    """Whether the fields given make a usable back-off with the configured defaults' bounds
    (``max`` below ``initial`` is the one case msgspec's bounds cannot see)."""
    if own.initial is not None and own.max is not None:
        problems = RetryBackoff(own.initial, own.factor or 1.0, own.max).problems()
        if problems:
            return "retry_backoff", problems[0].replace("maximum", "max", 1)
    return None


def _mapping_problem(item: TaskIn) -> tuple[str, str] | None:
    for key, value in item.env.items():
        if _env_name(key) is None:
            return "env", f"the name {brief(key)!r} must be {RULES[ENV_NAME]}"
        if "\x00" in value:
            return "env", f"the value of {brief(key)!r} must have {RULES[NO_NUL]}"
    for key, value in item.labels.items():
        if "\x00" in key or "\x00" in value:
            return "labels", f"keys and values must have {RULES[NO_NUL]}"
    constraints = item.constraints
    pairs = constraints.items() if isinstance(constraints, dict) else constraints
    parts = (part for pair in pairs for part in pair)
    if any("\x00" in part for part in parts):
        return "constraints", f"fields and values must have {RULES[NO_NUL]}"
    return None


def _invalid(field: str, reason: str, index: int | None) -> str:
    return f"Field {field!r} is invalid{_where(index)}: {reason}."


def to_new_task(item: TaskIn, index: int | None = None) -> NewTask:
    """The task to queue; ``BodyError`` naming a constraint that cannot be used."""
    try:
        constraints = constraints_from(item.constraints, item.group)
    except ConstraintError as exc:
        raise BodyError(_invalid("constraints", str(exc), index)) from None
    return NewTask(
        spec=TaskSpec(
            name=item.name,
            command=item.command,
            image=item.container.image if item.container is not None else None,
            env=item.env or None,
            labels=item.labels or None,
            kill_grace_period=item.kill_grace_period,
            max_runtime=item.max_runtime,
            retry_backoff=_backoff_spec(item.retry_backoff),
        ),
        priority=item.priority,
        cpus=item.cpus,
        mem=item.mem,
        disk=item.disk,
        gpus=item.gpus,
        ports=item.ports,
        constraints=constraints,
        max_attempts=item.max_attempts,
        group=item.group,
    )


def _backoff_spec(own: RetryBackoffIn | None) -> BackoffSpec | None:
    if own is None:
        return None
    return BackoffSpec(initial=own.initial, factor=own.factor, max=own.max)


# --- a task that failed the fast path ------------------------------------------------------------


def _second_look(
    raw: bytes | msgspec.Raw, error: msgspec.ValidationError, index: int | None
) -> TaskIn:
    """The task after all if its only fault was whole floats in integer fields; otherwise
    ``BodyError`` naming the problem: bytes that are no JSON first, then unexpected fields,
    then msgspec's complaint."""
    try:
        fields = decode_shallow(raw)
    except NumberOutOfRange:  # msgspec's own message names the field
        raise BodyError(_explain(error, {}, index)) from None
    if not isinstance(fields, dict):
        raise BodyError(_not_an_object(index))
    unexpected = [key for key in fields if key not in FIELDS]
    if unexpected:
        raise BodyError(_unexpected("", unexpected, FIELDS, index))
    whole = {
        name: int(value)
        for name in _INT_FIELDS
        if isinstance(value := fields.get(name), float)
        and value.is_integer()
        and abs(value) <= 2**53
    }
    if whole:
        try:
            return decode_typed(_task_decoder, msgspec.json.encode({**fields, **whole}))
        except msgspec.ValidationError as exc:
            error = exc
    raise BodyError(_explain(error, fields, index))


def _explain(error: msgspec.ValidationError, fields: dict[str, Any], index: int | None) -> str:
    """msgspec's complaint (``Expected `int` >= 1 - at `$.max_attempts```) as ours."""
    failure = failure_of(error)
    field = failure.field
    if failure.unknown_field is not None:
        found = fields.get(field) if field else fields
        if isinstance(found, msgspec.Raw):  # the container, kept undecoded by the first look
            found = decode_shallow(found)
        keys = list(found) if isinstance(found, dict) and found else [failure.unknown_field]
        allowed = {"container": CONTAINER_FIELDS, "retry_backoff": BACKOFF_FIELDS}.get(
            field, FIELDS
        )
        unexpected = [key for key in keys if key not in allowed]
        return _unexpected(f"{field}: " if field else "", unexpected, allowed, index)
    if failure.missing_field is not None:
        where = f"{field}." if field else ""
        return f"Field {where + failure.missing_field!r} is required{_where(index)}."
    if not field:
        return _not_an_object(index)
    reason = failure.detail.replace("`", "")
    reason = reason[0].lower() + reason[1:] if reason else reason
    if failure.in_key:
        reason += " (a key)"
    return _invalid(field, reason, index)


def _unexpected(
    prefix: str, unexpected: list[str], allowed: tuple[str, ...], index: int | None
) -> str:
    named = ", ".join(brief(key) for key in unexpected[:10])
    if len(unexpected) > 10:
        named += f" and {len(unexpected) - 10} more"
    return (
        f"{prefix}Unexpected fields: {named}{_where(index)}. Allowed fields: {', '.join(allowed)}."
    )


def _not_an_object(index: int | None) -> str:
    return NOT_A_TASK if index is None else f"Each task must be a JSON object{_where(index)}."


def _where(index: int | None) -> str:
    return f" (task at index {index} of the batch)" if index is not None else ""
