"""A standby answers the whole API by forwarding to the leader (Marathon's model).

While this instance stands by, every request a route takes, except the instance's own
(``LOCAL_PATHS``: ``/leader/``, ``/metrics``, ``/healthz``, ``/readyz``, the dashboard's page
and files, ``/openapi.json``), is sent to the leader's ``api_url`` and its answer returned
unchanged: status, headers (``Location`` included, naming the leader) and body, streamed.

What it does not weaken: the standby checks every request as usual first (``Host``, ``Origin``,
``Content-Type``, the token, the body's size and deadline: ``api.edge`` forwards only once all
of them passed, in place of the view). The forwarded request carries the client's method,
path, query, body and end-to-end headers (``Authorization`` too: the leader checks the token
again), but not ``Host`` (the leader's own name from its ``api_url``, which it answers to), nor
``Origin`` and ``Sec-Fetch-*``, which the standby has checked and which name the standby, not
the leader.

Loop-free: a forwarded request carries ``FORWARDED_BY``. An instance that receives one while
standing by (the forwarder's view of the leader was stale) answers 503 instead of forwarding
again, and an instance never forwards to its own URL. With no leader known, or the leader
unreachable, the answer is 503 ``text/plain`` with ``Retry-After``, except for ``/status/``,
which the standby then answers itself (``scheduler.is_online: false``).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import aiohttp
import structlog
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from scale_scheduler.api.errors import Handler
from scale_scheduler.api.keys import CONFIG, CORE

log = structlog.get_logger(__name__)

FORWARDED_BY = "X-Scale-Scheduler-Forwarded-By"
"""Names the standby that forwarded a request (loop prevention)."""

LOCAL_PATHS = frozenset(
    {
        "/leader/",
        "/metrics",
        "/healthz",
        "/readyz",
        "/",
        "/dashboard.css",
        "/dashboard.js",
        "/openapi.json",
    }
)
"""Each instance's own answers, never forwarded."""

ANSWERED_WITHOUT_LEADER = frozenset({"/status/"})
"""Answered by the standby itself while no leader can answer: ``/status/`` then says
``scheduler.is_online: false`` (this instance is not subscribed) instead of a 503."""

CONNECT_TIMEOUT = 5.0
"""Seconds to reach the leader; past it the leader counts as unreachable (503)."""
READ_TIMEOUT = 60.0
"""Seconds the leader may be silent while answering (between two chunks of its answer)."""

# RFC 9110 section 7.6.1: meaningful for one connection only, never passed on.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        hdrs.CONNECTION,
        "Keep-Alive",
        hdrs.PROXY_AUTHENTICATE,
        hdrs.PROXY_AUTHORIZATION,
        hdrs.TE,
        hdrs.TRAILER,
        hdrs.TRANSFER_ENCODING,
        hdrs.UPGRADE,
    )
)
_NOT_SENT = HOP_BY_HOP | {
    hdrs.HOST.lower(),
    hdrs.CONTENT_LENGTH.lower(),  # the body is sent whole; the client sets it
    hdrs.ORIGIN.lower(),
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "sec-fetch-user",
}
_NOT_RETURNED = HOP_BY_HOP | {hdrs.CONTENT_LENGTH.lower()}

FORWARDING_SESSION = web.AppKey("forwarding_session", aiohttp.ClientSession)


def _unavailable(message: str, retry_after: float) -> web.Response:
    return web.Response(
        status=503,
        text=message + "\n",
        content_type="text/plain",
        headers={hdrs.RETRY_AFTER: str(max(1, math.ceil(retry_after)))},
    )


def forwards(request: web.Request) -> bool:
    """This instance stands by and ``request`` is not one of its own endpoints."""
    if not request.app[CORE].is_standby:
        return False
    if request.match_info.http_exception is not None:  # 404, 405: answered alike anywhere
        return False
    return request.path not in LOCAL_PATHS


async def forward_or_answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The leader's answer; ``handler``'s (this instance's own) for ``/status/`` when no leader
    can answer."""
    answer = await forward(request)
    if answer.status == 503 and request.path in ANSWERED_WITHOUT_LEADER and not answer.prepared:
        return await handler(request)
    return answer


async def forward(request: web.Request) -> web.StreamResponse:
    """The leader's answer to ``request``, or a 503 (not yet sent) saying why there is none."""
    app = request.app
    view = app[CORE].leader()
    retry_after = app[CONFIG].ha.lease_seconds
    this = view.this
    forwarder = request.headers.get(FORWARDED_BY)
    if forwarder is not None:
        return _unavailable(
            f"This instance ({this.instance}) is a standby, not the leader "
            f"(the request was forwarded here by {forwarder[:80]!r}); retry shortly.",
            retry_after,
        )
    leader = view.leader
    if leader is None or not leader.api_url:
        return _unavailable(
            "No leader is known at the moment (an election is in progress); retry shortly.",
            retry_after,
        )
    if leader.api_url == this.api_url or leader.instance == this.instance:
        return _unavailable(
            f"This instance ({this.instance}) is not the leader yet; retry shortly.",
            retry_after,
        )
    # The client's path and query as sent (still percent-encoded), under the leader's URL.
    target = URL(leader.api_url.rstrip("/") + request.raw_path, encoded=True)
    headers = CIMultiDict(
        (name, value)
        for name, value in request.headers.items()
        if name.lower() not in _NOT_SENT and name.lower() not in _connection_tokens(request)
    )
    headers[FORWARDED_BY] = this.instance
    body = await request.read() if request.body_exists else None
    session = app[FORWARDING_SESSION]
    try:
        upstream = await session.request(
            request.method, target, headers=headers, data=body, allow_redirects=False
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning(
            "leader_forward_failed",
            leader=leader.instance,
            api_url=leader.api_url,
            method=request.method,
            path=request.path,
            error=repr(exc),
        )
        return _unavailable(
            f"The leader {leader.instance} at {leader.api_url} cannot be reached "
            f"({type(exc).__name__}); retry shortly.",
            retry_after,
        )
    async with upstream:
        # Past this point the answer has begun: a failure while streaming it ends the
        # connection (the client sees a truncated answer, never a second one).
        return await _relay(request, upstream)


def _connection_tokens(request: web.Request) -> frozenset[str]:
    """Headers the client named in ``Connection``: hop-by-hop for this request too."""
    tokens = ",".join(request.headers.getall(hdrs.CONNECTION, []))
    return frozenset(t.strip().lower() for t in tokens.split(",") if t.strip())


async def _relay(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    for name, value in upstream.headers.items():
        if name.lower() not in _NOT_RETURNED:
            response.headers.add(name, value)
    if upstream.content_length is not None:
        response.content_length = upstream.content_length
    await response.prepare(request)
    async for chunk in upstream.content.iter_any():
        await response.write(chunk)
    await response.write_eof()
    return response


async def forwarding_context(app: web.Application) -> AsyncIterator[None]:
    """One client session for forwarding, its answers passed on as the leader encoded them."""
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
        ),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=(hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING),
    )
    app[FORWARDING_SESSION] = session
    try:
        yield
    finally:
        await session.close()
