"""``/scheduler/`` as the spec defines it: the global pause flag."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from scale_scheduler.api.errors import (
    check_update_fields,
    json_response,
    read_json_object,
    require_bool,
)
from scale_scheduler.api.keys import CORE
from scale_scheduler.api.own_names import own_url


class SchedulerView(msgspec.Struct, forbid_unknown_fields=True):
    """The scheduler's global pause flag."""

    is_paused: bool


class SchedulerUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """All fields are optional, at least one is required, no others."""

    is_paused: bool | msgspec.UnsetType = msgspec.UNSET


UPDATABLE = tuple(field.name for field in msgspec.structs.fields(SchedulerUpdate))


def _update(data: dict[str, Any]) -> SchedulerUpdate:
    """The PATCH body, checked field by field so that each 400 names its problem."""
    check_update_fields(data, UPDATABLE)
    is_paused = require_bool(data, "is_paused")
    return SchedulerUpdate(is_paused=msgspec.UNSET if is_paused is None else is_paused)


async def get_scheduler(request: web.Request) -> web.Response:
    return json_response(SchedulerView(await request.app[CORE].scheduler_paused()))


async def patch_scheduler(request: web.Request) -> web.Response:
    update = _update(await read_json_object(request))
    assert update.is_paused is not msgspec.UNSET  # the only field, and one is required
    is_paused = await request.app[CORE].set_paused(update.is_paused)
    location = own_url(request, request.path)
    return json_response(SchedulerView(is_paused), status=201, headers={"Location": location})
