"""``GET /leader/``: who leads, answered by every instance itself (never forwarded)."""

from __future__ import annotations

from aiohttp import web

from scale_scheduler.api.errors import json_response
from scale_scheduler.api.keys import CORE


async def get_leader(request: web.Request) -> web.Response:
    return json_response(request.app[CORE].leader())
