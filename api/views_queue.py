"""``/queue/``: submit tasks (one or a batch of up to 10,000) and list the queue in launch order.

Bodies are decoded and validated by ``task_body``. A batch is all-or-nothing: one commit, and
the answer (201 with every created task) comes only after it.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from scale_scheduler.api.errors import json_response
from scale_scheduler.api.keys import CORE, SCHEDULER, STORE
from scale_scheduler.api.own_names import own_url
from scale_scheduler.api.pagination import envelope, page_of
from scale_scheduler.api.task_body import decode_tasks
from scale_scheduler.state.sqlite.task_rows import fetch_rows_by_ids, view_from_row


async def post_queue(request: web.Request) -> web.Response:
    tasks, batch = await decode_tasks(await request.read())
    views = await request.app[CORE].tracker.submit(tasks)
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
