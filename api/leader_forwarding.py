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
standing by (the forwarder's view of the leader was stale) does not forward it again, and an
instance never forwards to its own URL.

With no leader: the requests of ``ANSWERED_WITHOUT_LEADER`` (durable state: the pause flag, the
queue, the tasks, the nodes' flags, and ``/status/``) are answered by the standby itself, from
the shared database (PostgreSQL: ``core_facade``'s ``leaderless``), when its last look at the
leadership found no live term, or when the request could not be delivered to the leader (its
connection refused or not made in time: surely not sent). A write then commits only if, inside
its transaction, no term is live; if one is (a leader was elected meanwhile), nothing was changed
and the request goes to that leader. The request is never sent twice: an answer lost after it
was sent to the leader stays a 503. A leader elected but still loading its state answers writes
503 with ``Retry-After`` itself, and the standby returns that answer unchanged.

Everything else, and every request with the SQLite backend (no shared database to write to),
gets 503 ``text/plain`` with ``Retry-After`` while no leader can answer, except ``/status/``,
which the standby then answers itself (``scheduler.is_online: false``).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import NamedTuple

import aiohttp
import structlog
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from scale_scheduler.api.errors import Handler
from scale_scheduler.api.keys import CONFIG, CORE
from scale_scheduler.daemon.scheduling.core_facade import LeaderInstance, LeaderLiveError

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

ANSWERED_WITHOUT_LEADER = frozenset(
    {
        ("GET", "/status/"),
        ("GET", "/scheduler/"),
        ("PATCH", "/scheduler/"),
        ("GET", "/queue/"),
        ("POST", "/queue/"),
        ("GET", "/tasks/"),
        ("GET", "/tasks/{task_id}/"),
        ("DELETE", "/tasks/{task_id}/"),
        ("GET", "/nodes/"),
        ("GET", "/nodes/{node_id}/"),
        ("PATCH", "/nodes/{node_id}/"),
    }
)
"""(method, route) a standby answers itself while no leader can, from the shared database;
``/status/`` then says ``scheduler.is_online: false`` (this instance is not subscribed)."""

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


class NotDelivered(NamedTuple):
    """No leader answered, and the request may be answered elsewhere: it surely was not sent
    to one, or it is a read. ``answer`` is the 503 saying why."""

    answer: web.Response


def _answered_without_leader(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    method = hdrs.METH_GET if request.method == hdrs.METH_HEAD else request.method
    return resource is not None and (method, resource.canonical) in ANSWERED_WITHOUT_LEADER


async def forward_or_answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The leader's answer; ``handler``'s (this instance's own, from the database) for the
    requests of ``ANSWERED_WITHOUT_LEADER`` when no leader can answer."""
    core = request.app[CORE]
    own = _answered_without_leader(request)
    if own and core.answers_without_leader and core.leader().leader is None:
        return await _answer_without_leader(request, handler)
    outcome = await _forward(request, core.leader().leader)
    if not isinstance(outcome, NotDelivered):
        return outcome
    if own and core.answers_without_leader:
        return await _answer_without_leader(request, handler)
    if own and request.path == "/status/":
        return await handler(request)
    return outcome.answer


async def _answer_without_leader(request: web.Request, handler: Handler) -> web.StreamResponse:
    """This instance's own answer; a write that found a live term goes to its leader."""
    try:
        return await handler(request)
    except LeaderLiveError as exc:
        log.info("leader_found_by_write", leader=exc.holder, epoch=exc.epoch, path=request.path)
        leader = LeaderInstance(exc.holder, exc.api_url or "", "")
        outcome = await _forward(request, leader)
        return outcome.answer if isinstance(outcome, NotDelivered) else outcome


async def _forward(
    request: web.Request, leader: LeaderInstance | None
) -> web.StreamResponse | NotDelivered:
    """``leader``'s answer to ``request``, a 503 once it may have been sent, or ``NotDelivered``."""
    app = request.app
    this = app[CORE].leader().this
    retry_after = app[CONFIG].ha.lease_seconds
    forwarder = request.headers.get(FORWARDED_BY)
    if forwarder is not None:
        return NotDelivered(
            _unavailable(
                f"This instance ({this.instance}) is a standby, not the leader "
                f"(the request was forwarded here by {forwarder[:80]!r}); retry shortly.",
                retry_after,
            )
        )
    if leader is None or not leader.api_url:
        return NotDelivered(
            _unavailable(
                "No leader is known at the moment (an election is in progress); retry shortly.",
                retry_after,
            )
        )
    if leader.api_url == this.api_url or leader.instance == this.instance:
        return NotDelivered(
            _unavailable(
                f"This instance ({this.instance}) is not the leader yet; retry shortly.",
                retry_after,
            )
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
        answer = _unavailable(
            f"The leader {leader.instance} at {leader.api_url} cannot be reached "
            f"({type(exc).__name__}); retry shortly.",
            retry_after,
        )
        # Refused, or no connection made in time: the request surely did not reach it. A read
        # changes nothing, so it may be answered elsewhere whatever happened to it.
        not_sent = isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
        read = request.method in (hdrs.METH_GET, hdrs.METH_HEAD)
        return NotDelivered(answer) if not_sent or read else answer
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
