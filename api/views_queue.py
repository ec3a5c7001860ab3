"""``/queue/``: submit tasks (one or a batch of up to 10,000) and list the queue in launch order.

Bodies are decoded and validated by ``task_body``. A batch is all-or-nothing: one commit, and
the answer (201 with every created task) comes only after it.
"""

from __future__ import annotations

from aiohttp import web

from scale_scheduler.api.errors import json_response
from scale_scheduler.api.keys import CORE
from scale_scheduler.api.own_names import own_url
from scale_scheduler.api.pagination import envelope, page_of
from scale_scheduler.api.task_body import decode_tasks


async def post_queue(request: web.Request) -> web.Response:
    tasks, batch = await decode_tasks(await request.read())
    views = await request.app[CORE].submit(tasks)
    if batch:
        return json_response(views, status=201)
    location = own_url(request, f"/tasks/{views[0].id}/")
    return json_response(views[0], status=201, headers={"Location": location})


async def get_queue(request: web.Request) -> web.Response:
    page = page_of(request)
    count, views = await request.app[CORE].queue_page(page.offset, page.size)
    return json_response(envelope(request, page, count, views))
