"""One structured access-log event and one latency observation (``/metrics``) per request.

Both come from one middleware timing the request once: every API request pays for it, and
dashboards poll ``/status/`` while the offer stream keeps the loop busy (B4 in
``bench/RESULTS.md``).
"""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from scale_scheduler.api.errors import Handler
from scale_scheduler.api.keys import LOOP_SHARE
from scale_scheduler.api.metrics import STREAM_TYPE, observe_request

log = structlog.get_logger("scale_scheduler.api.access")


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    request.app[LOOP_SHARE].note_request()  # the Mesos stream reader yields to a busy API
    status = 500
    # A stream's duration is its lifetime, not a latency; a request cancelled because its
    # client went away got no answer: neither is observed (both are logged).
    observe = True
    try:
        response = await handler(request)
        status = response.status
        observe = response.content_type != STREAM_TYPE
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        raise  # answered 500 by aiohttp: observed as such
    except BaseException:  # cancelled: the client went away
        observe = False
        raise
    finally:
        seconds = time.perf_counter() - started
        if observe:
            observe_request(request, status, seconds)
        log.info(
            "http_request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round(seconds * 1000, 3),
        )
