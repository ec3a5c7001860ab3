"""``/scheduler/`` as the spec defines it: the global pause flag."""

from __future__ import annotations

from aiohttp import web

from scale_scheduler.api.errors import (
    check_update_fields,
    json_response,
    read_json_object,
    require_bool,
)
from scale_scheduler.api.keys import SCHEDULER
from scale_scheduler.api.own_names import own_url

UPDATABLE = ("is_paused",)


async def get_scheduler(request: web.Request) -> web.Response:
    repo = request.app[SCHEDULER]
    await repo.check_row()
    return json_response({"is_paused": repo.state.is_paused})


async def patch_scheduler(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    check_update_fields(data, UPDATABLE)
    is_paused = require_bool(data, "is_paused")
    repo = request.app[SCHEDULER]
    assert is_paused is not None
    state = await repo.set_paused(is_paused)
    location = own_url(request, request.path)
    return json_response({"is_paused": state.is_paused}, status=201, headers={"Location": location})
