"""One structured access-log event per request."""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from scale_scheduler.api.errors import Handler

log = structlog.get_logger("scale_scheduler.api.access")


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        log.info(
            "http_request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
