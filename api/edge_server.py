"""The API's listening socket and its connections: limits, timeouts, and aiohttp's own errors.

aiohttp's ``RequestHandler`` (one per connection) is subclassed through its public surface
(the asyncio protocol callbacks and ``handle_error``) and created by our own protocol factory
on a socket this module opens; the application's runner stays aiohttp's ``AppRunner``.

- **Bad requests** (a malformed or over-long request line or header, bad characters in the
  URL, body bytes left over after a 413) are answered by aiohttp before any middleware runs,
  with a body and an ``aiohttp.server`` error log, traceback included, that both quote the
  offending bytes: an ``Authorization`` header among them. ``handle_error`` here answers a
  fixed ``text/plain`` message and logs one ``api_bad_request`` warning with the status and
  the error's class, never a byte of the request.
- **Header timeout** (``api.header_timeout``): a new connection must deliver its first
  request's headers in time, or it is closed (slow-loris clients).
- **Body timeout** (``api.body_timeout``): once a request's headers are in, its whole body
  must arrive in time, or it is answered 408 and the connection closed (slow bodies: a
  connection busy with a request is never evicted, so without this it would be held forever).
- **Idle timeout** (``api.idle_timeout``): aiohttp's keep-alive timeout, also between
  requests while the next one trickles in.
- **Connection cap** (``api.max_connections``, lowered to fit the open-file limit): over it,
  the connection idle the longest (waiting for a request) is closed to make room; when every
  connection is busy with a request, the new one is answered 503 and closed. An idle flood
  cannot lock out a client that sends its request at once (``/status/``, a probe). A
  connection is busy from a request's headers until its answer is written out, so one still
  sending a large page to a slow reader is not taken for idle. No connection is held busy for
  long: a body within ``api.body_timeout``, the only endless answers (dashboard event streams)
  capped by ``api.max_event_streams``. No slot is reserved for probes: which path a connection
  asks for is known only from its headers, so a reserve would mean admitting connections past
  the cap, whose file descriptors it budgets.
"""

from __future__ import annotations

import asyncio
import resource
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_request import BaseRequest

from scale_scheduler.api.keys import CONFIG
from scale_scheduler.daemon.service.burst_log import BurstLog
from scale_scheduler.daemon.service.config import Config

log = structlog.get_logger(__name__)

FD_RESERVE = 64
"""File descriptors kept for everything but API clients (database, logs, ZooKeeper, ...),
besides ``mesos.max_call_connections`` and ``ACCEPT_BURST``."""

ACCEPT_BURST = 32
"""The listen backlog, which is also how many connections asyncio accepts on one wake-up: the
connections evicted to make room for them release their descriptors only on a later turn of
the loop, so a burst may briefly hold this many more than the cap."""

LINGER_SECONDS = 0.5
"""How long a refused connection's last bytes are read (and dropped) before it is closed."""
MAX_LINGERING = 64

ERROR_MESSAGES = {
    400: "Bad request: the request line or a header is malformed or too long.\n",
    500: "Internal server error; the daemon's log has the details.\n",
    504: "The request took too long.\n",
}


def connection_limit(config: Config) -> int:
    """``api.max_connections``, lowered (with a warning) to fit the process's open-file limit."""
    wanted = config.api.max_connections
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(1, soft - FD_RESERVE - ACCEPT_BURST - config.mesos.max_call_connections)
    if wanted <= room:
        return wanted
    log.warning(
        "api_max_connections_lowered",
        configured=wanted,
        used=room,
        open_file_limit=soft,
        hint="raise the open-file limit (LimitNOFILE= in the systemd unit, ulimit -n)",
    )
    return room


class ConnectionGate:
    """The open connections, and which of them wait for a request (oldest first)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: set[GuardedRequestHandler] = set()
        self._idle: dict[GuardedRequestHandler, None] = {}  # insertion order: longest idle first
        self._refusals = BurstLog(log, "api_connection_refused")
        self._over_capacity = _over_capacity_response(limit)
        self._lingering = 0

    def refuse(self, transport: asyncio.Transport) -> bool:
        """Answer 503 and close; True if the connection lingers a moment first.

        The write side is shut at once and what the client still sends is read and dropped
        for ``LINGER_SECONDS``: closing with its request unread would reset the connection
        and lose the answer. Past ``MAX_LINGERING`` such connections, close at once."""
        transport.write(self._over_capacity)
        if self._lingering >= MAX_LINGERING or not transport.can_write_eof():
            transport.close()
            return False
        self._lingering += 1
        transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
        return True

    def lingering_closed(self) -> None:
        self._lingering -= 1

    def admit(self, handler: GuardedRequestHandler) -> bool:
        """Make room if needed and count ``handler`` in; False if every connection is busy."""
        if len(self._open) >= self.limit:
            if not self._idle:
                self._refusals.note(limit=self.limit, reason="every connection is busy")
                return False
            oldest = next(iter(self._idle))
            self.release(oldest)
            oldest.close_idle("evicted_for_new_connection")
        self._open.add(handler)
        self._idle[handler] = None
        return True

    def busy(self, handler: GuardedRequestHandler) -> None:
        self._idle.pop(handler, None)

    def idle(self, handler: GuardedRequestHandler) -> None:
        if handler in self._open:
            self._idle.pop(handler, None)
            self._idle[handler] = None

    def release(self, handler: GuardedRequestHandler) -> None:
        self._open.discard(handler)
        self._idle.pop(handler, None)


def _over_capacity_response(limit: int) -> bytes:
    body = (
        f"Too many connections: the daemon serves at most {limit} at once "
        "(api.max_connections); retry shortly.\n"
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 1\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's connection handler with the header timeout, the cap and quiet errors."""

    __slots__ = (
        "_edge_gate",
        "_edge_header_timeout",
        "_edge_header_timer",
        "_edge_lingering",
        "_edge_refused",
    )

    def __init__(
        self, manager: web.Server, *, gate: ConnectionGate, header_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._edge_gate = gate
        self._edge_header_timeout = header_timeout
        self._edge_header_timer: asyncio.TimerHandle | None = None
        self._edge_refused = False
        self._edge_lingering = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._edge_gate.admit(self):
            self._edge_refused = True
            assert isinstance(transport, asyncio.Transport)
            self._edge_lingering = self._edge_gate.refuse(transport)
            return
        super().connection_made(transport)
        self._edge_header_timer = asyncio.get_running_loop().call_later(
            self._edge_header_timeout, self.close_idle, "header_timeout"
        )

    def data_received(self, data: bytes) -> None:
        if not self._edge_refused:
            super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._edge_refused:
            if self._edge_lingering:
                self._edge_gate.lingering_closed()
            return
        self._cancel_header_timer()
        self._edge_gate.release(self)
        super().connection_lost(exc)

    def _cancel_header_timer(self) -> None:
        if self._edge_header_timer is not None:
            self._edge_header_timer.cancel()
            self._edge_header_timer = None

    def request_started(self) -> None:
        """A request's headers arrived: the header timeout is met; the connection is busy."""
        self._cancel_header_timer()
        self._edge_gate.busy(self)

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        """aiohttp's (it writes the answer out); idle only once that is done.

        An answer that closes the connection while the request's body is still arriving (the
        408 of ``read_body_in_time``) closes it at once: aiohttp would first read and
        drop the rest for up to 10 s (its lingering time), which a slow client welcomes."""
        try:
            result = await super().finish_response(request, resp, start_time)
        finally:
            self._edge_gate.idle(self)
        if not resp.keep_alive and not request.content.is_eof():
            self.force_close()
        return result

    def close_idle(self, reason: str) -> None:
        self._edge_header_timer = None
        log.debug("api_connection_closed", reason=reason)
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A fixed answer and one log line; ``message`` and ``exc`` may quote request bytes."""
        error = type(exc).__name__ if exc is not None else None
        if status >= 500:
            # A failure of the daemon itself (no view raises past the edge middleware): keep the
            # traceback, which shows code, not the request.
            log.error("api_server_error", status=status, error=error, exc_info=exc)
        else:
            log.warning("api_bad_request", status=status, error=error, remote=request.remote)
        if request.writer.output_size > 0:  # as aiohttp's: an answer is already under way
            raise ConnectionError("Response is sent already, cannot send another response")
        response = web.Response(
            status=status,
            text=ERROR_MESSAGES.get(status, f"{status} {HTTPStatus(status).phrase}\n"),
            content_type="text/plain",
            headers={"X-Content-Type-Options": "nosniff"},
        )
        response.force_close()
        return response


def note_request_started(request: web.Request) -> None:
    """Tell the connection that a request started (nothing under other servers); it ends when
    its answer is written (``GuardedRequestHandler.finish_response``)."""
    protocol = request.protocol
    if isinstance(protocol, GuardedRequestHandler):
        protocol.request_started()


async def read_body_in_time(request: web.Request) -> web.Response | None:
    """The whole body within ``api.body_timeout`` (``request.read()`` keeps it for the view),
    or the 408 answer, its connection to be closed.

    Called once a request passed the checks before its view, so a refused request's body is
    not read, and after the trailing-slash redirect (aiohttp's ``normalize_path_middleware``
    clones the request, which it can do only with its body unread)."""
    if not request.body_exists:
        return None
    timeout = request.app[CONFIG].api.body_timeout
    try:
        await asyncio.wait_for(request.read(), timeout)
    except TimeoutError:  # the access log's line (status 408) is the only one: floodable
        response = web.Response(
            status=408,
            text=f"The request body did not arrive within {timeout:g} s (api.body_timeout).\n",
            content_type="text/plain",
        )
        response.force_close()
        return response
    return None


class ApiListener:
    """The API's socket, serving ``runner``'s application through ``GuardedRequestHandler``."""

    def __init__(
        self, runner: web.AppRunner, config: Config, *, backlog: int = ACCEPT_BURST
    ) -> None:
        self._runner = runner
        self._config = config
        self._backlog = backlog
        self._server: asyncio.Server | None = None
        self.gate = ConnectionGate(connection_limit(config))

    async def start(self) -> None:
        """Listen on ``api.host:api.port``; ``OSError`` if that cannot be done."""
        server = self._runner.server
        if server is None:
            raise RuntimeError("Call runner.setup() before starting the listener")
        loop = asyncio.get_running_loop()
        api = self._config.api
        gate = self.gate

        def connection() -> GuardedRequestHandler:
            return GuardedRequestHandler(
                server,
                loop=loop,
                gate=gate,
                header_timeout=api.header_timeout,
                keepalive_timeout=api.idle_timeout,
                access_log=None,
            )

        self._server = await loop.create_server(
            connection, api.host or None, api.port, backlog=self._backlog, reuse_address=True
        )

    @property
    def port(self) -> int:
        """The bound port (the real one when ``api.port`` is 0)."""
        assert self._server is not None, "the listener is not started"
        return int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop accepting connections (the open ones end with ``runner.cleanup()``)."""
        if self._server is not None:
            self._server.close()
