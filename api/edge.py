"""The one middleware every request passes through: ``edge_middleware``.

In this order, for every request:

1. its connection is marked busy (``edge_server``) and the loop share counts it (the Mesos stream
   reader yields to a busy API);
2. the request guard (``request_guard.guard``): ``Host`` (421); for a change, ``Origin`` and
   ``Sec-Fetch-Site`` (403), then ``Content-Type`` (415);
3. authentication (``auth.authenticate``): one ``Authorization`` header (400), the token where
   required (401);
4. when no route takes the path, aiohttp's trailing-slash and merged-slash redirect (308);
5. the body, within ``api.body_timeout`` (408; ``edge_server.read_body_in_time``);
6. the view, or, on a standby, the leader's answer (``leader_forwarding``: every path but the
   instance's own).

Errors from 2 to 6 become ``text/plain`` answers (``errors``), and every request ends in one
access-log event (``access_log``) and one latency observation (``metrics``; not for event
streams, nor for a request whose client went away). The security headers are added to every
answer as it is prepared (``request_guard.setup_request_guard``).

These were seven middlewares, each a coroutine frame and a call per request; ``/status/`` is
polled by dashboards while the offer stream keeps the loop busy, and its share of a bare
aiohttp endpoint is a benchmark target (B4 in ``bench/RESULTS.md``).
"""

from __future__ import annotations

import time
from functools import partial

from aiohttp import web
from aiohttp.web_urldispatcher import SystemRoute

from scale_scheduler.api.access_log import AccessLog
from scale_scheduler.api.auth import authenticate
from scale_scheduler.api.edge_server import note_request_started, read_body_in_time
from scale_scheduler.api.errors import Handler, ensure_text, error_answer
from scale_scheduler.api.keys import CONFIG, LOOP_SHARE
from scale_scheduler.api.leader_forwarding import forward_or_answer, forwards
from scale_scheduler.api.metrics import STREAM_TYPE, observe_request
from scale_scheduler.api.request_guard import OWN_NAMES, guard

ACCESS_LOG = web.AppKey("access_log", AccessLog)

_redirect_unslashed = web.normalize_path_middleware(append_slash=True, merge_slashes=True)


async def _body_then_view(request: web.Request, handler: Handler) -> web.StreamResponse:
    timed_out = await read_body_in_time(request)
    if timed_out is not None:
        return timed_out
    if forwards(request):
        return await forward_or_answer(request, handler)
    return await handler(request)


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    note_request_started(request)
    app = request.app
    app[LOOP_SHARE].note_request()
    status = 500
    observe = True
    try:
        try:
            guard(request, app[OWN_NAMES])
            authenticate(request, app[CONFIG].api)
            if isinstance(request.match_info.route, SystemRoute):  # no route takes it
                response = await _redirect_unslashed(
                    request, partial(_body_then_view, handler=handler)
                )
            else:
                response = await _body_then_view(request, handler)
        except web.HTTPException as exc:
            if exc.status >= 400:
                ensure_text(exc, request)
            raise
        except Exception as exc:
            answer = error_answer(exc, request)
            if answer is None:
                raise
            raise answer from None
        status = response.status
        # A stream's duration is its lifetime, not a latency: logged, not observed.
        observe = response.content_type != STREAM_TYPE
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        raise  # answered 500 by aiohttp: observed as such
    except BaseException:  # cancelled: the client went away, nobody got an answer
        observe = False
        raise
    finally:
        seconds = time.perf_counter() - started
        if observe:
            observe_request(request, status, seconds)
        app[ACCESS_LOG].request(request, status, seconds)


def setup_edge(app: web.Application) -> None:
    """Place the middleware's per-application parts (``build_app`` places the middleware)."""
    app[ACCESS_LOG] = AccessLog()
