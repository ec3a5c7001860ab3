"""``/queue/``: submit tasks (one or a batch of up to 10,000) and list the queue in launch order.

Bodies are decoded and validated by msgspec in one pass (fast enough for 20,000 tasks a
second); only when that fails does the slower path look again to name every unexpected field,
or the field and reason of a bad value. A batch is all-or-nothing: one commit, and the answer
(201 with every created task) comes only after it.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any

import msgspec
from aiohttp import web

from scale_scheduler.api.errors import bad_request, json_response
from scale_scheduler.api.keys import CORE, SCHEDULER, STORE
from scale_scheduler.api.own_names import own_url
from scale_scheduler.api.pagination import envelope, page_of
from scale_scheduler.daemon.task_tracker import NewTask
from scale_scheduler.state.tasks import TaskSpec, constraints_from, fetch_rows_by_ids, view_from_row

MAX_BATCH = 10_000
_NAME = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
_INT64_MAX = 2**63 - 1  # what the database holds


class ContainerIn(msgspec.Struct, forbid_unknown_fields=True):
    image: Annotated[str, msgspec.Meta(min_length=1)]


class TaskIn(msgspec.Struct, forbid_unknown_fields=True):
    """One task as ``POST /queue/`` accepts it."""

    name: _NAME
    cpus: Annotated[float, msgspec.Meta(gt=0)]
    mem: Annotated[float, msgspec.Meta(gt=0)]
    command: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    container: ContainerIn | None = None
    disk: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    gpus: Annotated[int, msgspec.Meta(ge=0, le=_INT64_MAX)] = 0
    ports: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0
    env: dict[str, str] = msgspec.field(default_factory=dict)
    priority: Annotated[int, msgspec.Meta(ge=-_INT64_MAX - 1, le=_INT64_MAX)] = 100
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    constraints: dict[str, str] = msgspec.field(default_factory=dict)


FIELDS = tuple(f.name for f in msgspec.structs.fields(TaskIn))
_decoder = msgspec.json.Decoder(TaskIn | list[TaskIn])
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_INDEX = re.compile(r"^\[(?P<index>\d+)\]")


def _where(index: int | None) -> str:
    return f" (task at index {index} of the batch)" if index is not None else ""


def _explain(error: msgspec.ValidationError, body: bytes) -> str:
    text = str(error)
    match = _PATH.search(text)
    path = match.group("path") if match else ""
    detail = text[: match.start()] if match else text
    index: int | None = None
    index_match = _INDEX.match(path)
    if index_match:
        index = int(index_match.group("index"))
        path = path[index_match.end() :]
    field = path.replace("[...]", "").lstrip(".")  # msgspec writes a mapping's value as [...]
    if detail.startswith("Object contains unknown field"):
        item = msgspec.json.decode(body)
        if index is not None:
            item = item[index]
        if field:  # inside a nested object (container)
            for part in field.split("."):
                item = item[part]
            allowed: tuple[str, ...] = ("image",)
        else:
            allowed = FIELDS
        unexpected = [key for key in item if key not in allowed]
        prefix = f"{field}: " if field else ""
        return (
            f"{prefix}Unexpected fields: {', '.join(unexpected)}{_where(index)}. "
            f"Allowed fields: {', '.join(allowed)}."
        )
    if detail.startswith("Object missing required field"):
        missing = detail.split("`")[1]
        where = f"{field}." if field else ""
        return f"Field {where + missing!r} is required{_where(index)}."
    if not field and index is None:
        return "The request body must be a task (JSON object) or a list of tasks."
    if not field:
        return f"Each task must be a JSON object{_where(index)}."
    reason = detail.replace("`", "")
    reason = reason[0].lower() + reason[1:] if reason else reason
    return f"Field {field!r} is invalid{_where(index)}: {reason}."


def _unknown_fields(body: bytes) -> str | None:
    """Name unexpected top-level fields first, even when another field is also invalid."""
    data = msgspec.json.decode(body)
    items = data if isinstance(data, list) else [data]
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        unexpected = [key for key in item if key not in FIELDS]
        if unexpected:
            where = _where(index if isinstance(data, list) else None)
            return (
                f"Unexpected fields: {', '.join(unexpected)}{where}. "
                f"Allowed fields: {', '.join(FIELDS)}."
            )
    return None


_INT_FIELDS = ("gpus", "ports", "priority", "max_attempts")


def _with_whole_numbers(body: bytes) -> TaskIn | list[TaskIn] | None:
    """JSON does not tell 2.0 from 2: integer fields written as whole floats, validated again
    (None when there were none, or the body is still invalid)."""
    data = msgspec.json.decode(body)
    changed = False
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict):
            continue
        for name in _INT_FIELDS:
            value = item.get(name)
            if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
                item[name] = int(value)
                changed = True
    if not changed:
        return None
    try:
        return msgspec.convert(data, TaskIn | list[TaskIn])
    except msgspec.ValidationError:
        return None


def decode_tasks(body: bytes) -> tuple[list[TaskIn], bool]:
    """The tasks of a request body and whether it was a batch; 400 saying what is wrong."""
    if not body.strip():
        raise bad_request("The request body is empty; send a task or a list of tasks.")
    decoded: TaskIn | list[TaskIn] | None
    try:
        decoded = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        decoded = _with_whole_numbers(body)
        if decoded is None:
            raise bad_request(_unknown_fields(body) or _explain(exc, body)) from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.") from None
    batch = isinstance(decoded, list)
    items = decoded if isinstance(decoded, list) else [decoded]
    if not items:
        raise bad_request("The batch is empty; send at least one task.")
    if len(items) > MAX_BATCH:
        raise bad_request(f"A batch holds at most {MAX_BATCH} tasks; this one has {len(items)}.")
    for index, item in enumerate(items):
        if item.command is None and item.container is None:
            raise bad_request(
                "Field 'command' is required when there is no 'container' "
                f"(a task runs a command, an image, or both){_where(index if batch else None)}."
            )
    return items, batch


def to_new_task(item: TaskIn) -> NewTask:
    return NewTask(
        spec=TaskSpec(
            name=item.name,
            command=item.command,
            image=item.container.image if item.container is not None else None,
            env=item.env or None,
            labels=item.labels or None,
        ),
        priority=item.priority,
        cpus=item.cpus,
        mem=item.mem,
        disk=item.disk,
        gpus=item.gpus,
        ports=item.ports,
        constraints=constraints_from(item.constraints),
        max_attempts=item.max_attempts,
    )


async def post_queue(request: web.Request) -> web.Response:
    items, batch = decode_tasks(await request.read())
    views = await request.app[CORE].tracker.submit([to_new_task(item) for item in items])
    if batch:
        return json_response(views, status=201)
    location = own_url(request, f"/tasks/{views[0].id}/")
    return json_response(views[0], status=201, headers={"Location": location})


async def get_queue(request: web.Request) -> web.Response:
    page = page_of(request)
    tracker = request.app[CORE].tracker
    paused = request.app[SCHEDULER].state.is_paused
    # Read the order from memory in one synchronous step, then the details from the database.
    tasks = list(itertools.islice(tracker.index.queued(), page.offset, page.offset + page.size))
    reasons = {task.id: tracker.waiting_reason(task, paused) for task in tasks}
    count = tracker.queue_depth
    rows = await fetch_rows_by_ids(request.app[STORE], [task.id for task in tasks])
    results: list[Any] = [
        view_from_row(rows[task.id], reasons[task.id]) for task in tasks if task.id in rows
    ]
    return json_response(envelope(request, page, count, results))
