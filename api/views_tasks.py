"""``/tasks/``: every task (filterable by ``state``), one task, and cancel or kill.

Details come from the database (terminal tasks live only there); the live part a database
cannot know, why a queued task waits, comes from the scheduling core's memory.
"""

from __future__ import annotations

from aiohttp import web

from scale_scheduler.api.errors import bad_request, json_response, not_found, text_error
from scale_scheduler.api.json_body import brief
from scale_scheduler.api.keys import CORE, PRUNER
from scale_scheduler.api.pagination import envelope, page_of
from scale_scheduler.api.views_usage import task_detail
from scale_scheduler.daemon.scheduling.core_facade import DeleteOutcome, TaskNotFoundError, TaskView
from scale_scheduler.state.domain import TaskState, parse_state

MAX_ID = 2**63 - 1  # SQLite's largest integer: no task has a larger id


def _task_id(request: web.Request) -> int:
    digits = request.match_info["task_id"].lstrip("0") or "0"
    if len(digits) > len(str(MAX_ID)) or int(digits) > MAX_ID:
        raise not_found(f"No task with id {digits}.")
    return int(digits)


def _missing(request: web.Request, task_id: int) -> web.HTTPException:
    """404 for a task not in the database: pruned by retention, or never there."""
    pruner = request.app.get(PRUNER)
    if pruner is not None and pruner.was_pruned(task_id):
        return not_found(pruner.policy.pruned_message(task_id))
    return not_found(f"No task with id {task_id}.")


async def _view(request: web.Request, task_id: int) -> TaskView:
    view = await request.app[CORE].task(task_id)
    if view is None:
        raise _missing(request, task_id)
    return view


async def list_tasks(request: web.Request) -> web.Response:
    page = page_of(request)
    state: TaskState | None = None
    raw = request.query.get("state")
    if raw:
        state = parse_state(raw)
        if state is None:
            names = ", ".join(s.value for s in TaskState)
            raise bad_request(f"Unknown task state {brief(raw)!r}; use one of {names}.")
    after = _after(request)
    count, views = await request.app[CORE].tasks(state, page.offset, page.size, after)
    body = envelope(request, page, count, views)
    if after is not None:
        query = {k: v for k, v in request.query.items() if k != "page"}
        last = views[-1].id if len(views) == page.size else None
        body["next"] = (
            str(request.url.with_query({**query, "after": last, "page_size": page.size}))
            if last
            else None
        )
        body["previous"] = None
    return json_response(body)


def _after(request: web.Request) -> int | None:
    """``?after=<id>``: keyset paging, for history too deep for ``page`` (which steps over every
    row before the page); with ``page`` too, pages count from that id."""
    raw = request.query.get("after")
    if raw is None:
        return None
    # The length first: int() of thousands of digits is slow, and refused past 4,300.
    if len(raw) > len(str(MAX_ID)) or not raw.isascii() or not raw.isdigit() or int(raw) > MAX_ID:
        raise bad_request(
            f"Query parameter 'after' must be a task id (0 or more), not {brief(raw)!r}."
        )
    return int(raw)


async def get_task(request: web.Request) -> web.Response:
    task_id = _task_id(request)
    view = await _view(request, task_id)
    return json_response(task_detail(view, request.app[CORE].task_usage(task_id)))


async def delete_task(request: web.Request) -> web.Response:
    """Cancel a queued task (200) or ask Mesos to kill a launched one (202; its state follows
    Mesos's updates). A task already finished answers 409."""
    task_id = _task_id(request)
    try:
        outcome = await request.app[CORE].cancel(task_id)
    except TaskNotFoundError:
        raise _missing(request, task_id) from None
    view = await _view(request, task_id)
    if outcome is DeleteOutcome.ALREADY_TERMINAL:
        raise text_error(
            web.HTTPConflict, f"Task {task_id} is already {view.state}; nothing to cancel."
        )
    status = 200 if outcome is DeleteOutcome.CANCELED else 202
    return json_response(view, status=status)
