"""A lean HTTP/1.1 client for the driver's calls to the master (ACCEPT, DECLINE, ACKNOWLEDGE...).

Owns a small pool of kept-alive connections to one endpoint (``http://`` or ``https://``), the
request bytes (a head built once: request line, ``Host``, the caller's headers; then
``Content-Length`` and the body) and a minimal response parser (status line, headers, a
``Content-Length``, chunked or close-delimited body). One request per connection at a time; no
redirect is followed and nothing is retried: what an answer means is the caller's business.
``post_many`` pipelines several requests on one connection (HTTP/1.1 pipelining: written in one
go, answered in order), so a burst of small calls costs one write and a few reads, not one of
each per call.

Failures are told apart by whether any byte of the request may have reached the server:
``CallNotSentError`` (the connection could not be made, connecting timed out, the TLS handshake
failed, the client was closed first) means surely not; ``CallUnansweredError`` (no complete
answer within the timeout, the connection lost or the answer garbled once the request was
written) means maybe.

Why not aiohttp's client: the daemon acknowledges every status update with one call, hundreds of
thousands of them after a burst of launches, and each aiohttp client request costs the one event
loop several times what this path does (bench/RESULTS.md, B2).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from scale_scheduler.daemon.mesos.timer_clock import TimerClock, TimerHandle

MAX_HEAD_BYTES = 64 * 1024
"""Largest status line plus headers accepted (and largest chunk-size or trailer line)."""
MAX_BODY_BYTES = 64 * 1024
"""Bytes of an answer's body kept; the rest is read and dropped (callers want a detail)."""
_NO_BODY = frozenset({204, 304})


class CallNotSentError(Exception):
    """No byte of the request left this process: the server surely did not get it."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class CallUnansweredError(Exception):
    """The request was written but no complete answer came back: the server may have it."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class _ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.x answer."""


@dataclass(frozen=True, slots=True)
class CallResponse:
    status: int
    body: bytes
    """At most the client's ``max_body`` bytes of it (``MAX_BODY_BYTES`` by default)."""


# Parser phases.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_EOF = range(7)


class _Connection(asyncio.Protocol):
    """One connection to the server and the parser of the answers to its requests in flight
    (one, or several pipelined: answered in the order they were written)."""

    def __init__(self, client: HttpCallClient) -> None:
        self._client = client
        self._loop = client.loop
        self._clock = client.clock
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = True
        self._counted = True  # holds one of the client's connection slots
        self._waiters: deque[asyncio.Future[CallResponse]] = deque()
        self._timer: TimerHandle | None = None
        self._timeout = 0.0
        self._reads = 0
        self._armed_reads = 0
        self._buffer = bytearray()
        self._phase = _HEAD
        self._status = 0
        self._remaining = 0
        self._body = bytearray()

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self._waiters:
            self.abort()  # bytes nobody asked for: this connection cannot be trusted
            return
        self._reads += 1
        self._client.answer_reads += 1
        self._buffer += data
        while True:
            try:
                done = self._parse()
            except _ProtocolError as exc:
                self._fail(CallUnansweredError(f"unreadable answer: {exc}"))
                self.abort()
                return
            if not done:
                return
            self._complete()
            if not self._waiters:
                if self._buffer:
                    self.keep_alive = False  # more answers than requests
                return
            if not self.keep_alive:
                # The server closes after this answer: the pipelined requests behind it fail
                # when the connection is lost (they may or may not have been read).
                return

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost finishes or fails the request

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiters:
            if self._phase == _UNTIL_EOF and exc is None:
                self._complete()
            if self._waiters:
                reason = repr(exc) if exc is not None else "the server closed the connection"
                self._fail(CallUnansweredError(f"connection lost before the answer: {reason}"))
        self.release_slot()

    # -- one request ----------------------------------------------------------------------------

    def send(
        self, data: bytes, timeout: float, count: int = 1
    ) -> list[asyncio.Future[CallResponse]]:
        """Write ``data``: ``count`` requests, answered in order (one future each)."""
        assert self.transport is not None
        if not self._waiters:
            self._buffer.clear()
            self._reset_answer()
        waiters = [self._loop.create_future() for _ in range(count)]
        self._waiters.extend(waiters)
        self._timeout = timeout
        self._armed_reads = self._reads
        if self._timer is None:
            self._timer = self._clock.call_later(timeout, self._check_timeout)
        self.transport.write(data)
        return waiters

    def _reset_answer(self) -> None:
        self._phase = _HEAD
        self._body = bytearray()

    def _check_timeout(self) -> None:
        self._timer = None
        if not self._waiters:
            return
        if self._reads != self._armed_reads:
            # Bytes came within the last interval: the limit is on silence, as a read timeout.
            self._armed_reads = self._reads
            self._timer = self._clock.call_later(self._timeout, self._check_timeout)
            return
        self._fail(CallUnansweredError(f"no answer within {self._timeout:g}s", timed_out=True))
        self.abort()

    def _complete(self) -> None:
        """The oldest request's answer is in."""
        waiter = self._waiters.popleft()
        response = CallResponse(self._status, bytes(self._body))
        self._reset_answer()
        if not self._waiters:
            self._finish()
        if not waiter.done():
            waiter.set_result(response)

    def _fail(self, exc: Exception) -> None:
        """Every request still waiting fails with ``exc``."""
        waiters, self._waiters = self._waiters, deque()
        self._finish()
        self.keep_alive = False
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self) -> None:
        self.keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def release_slot(self) -> None:
        """Give the client back this connection's slot (once)."""
        if self._counted:
            self._counted = False
            self._client.slot_freed(self)

    # -- the answer -----------------------------------------------------------------------------

    def _parse(self) -> bool:
        """Consume buffered bytes; True once the answer is complete."""
        buffer = self._buffer
        while True:
            phase = self._phase
            if phase == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise _ProtocolError("status line and headers too long")
                    return False
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                if self._read_head(head):
                    return True
            elif phase == _LENGTH:
                take = min(self._remaining, len(buffer))
                self._keep(buffer, take)
                self._remaining -= take
                return not self._remaining
            elif phase == _CHUNK_SIZE:
                line = self._line(buffer)
                if line is None:
                    return False
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise _ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
                if size < 0:
                    raise _ProtocolError("negative chunk size")
                self._remaining = size
                self._phase = _CHUNK_DATA if size else _TRAILERS
            elif phase == _CHUNK_DATA:
                take = min(self._remaining, len(buffer))
                self._keep(buffer, take)
                self._remaining -= take
                if self._remaining:
                    return False
                self._phase = _CHUNK_END
            elif phase == _CHUNK_END:
                if len(buffer) < 2:
                    return False
                if buffer[:2] != b"\r\n":
                    raise _ProtocolError("chunk not followed by CRLF")
                del buffer[:2]
                self._phase = _CHUNK_SIZE
            elif phase == _TRAILERS:
                line = self._line(buffer)
                if line is None:
                    return False
                if not line:
                    return True
            else:  # _UNTIL_EOF: the answer ends when the server closes the connection
                self._keep(buffer, len(buffer))
                return False

    def _read_head(self, head: bytes) -> bool:
        """Take a status line and headers; True when the answer has no body."""
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise _ProtocolError(f"bad status line {lines[0][:60]!r}")
        code = parts[1]
        if len(code) != 3 or not code.isdigit():
            raise _ProtocolError(f"bad status code {code[:10]!r}")
        status = int(code)
        if status < 200:
            return False  # an interim answer (100 Continue): the real one follows
        self._status = status
        keep_alive = parts[0] != b"HTTP/1.0"
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise _ProtocolError(f"bad header line {line[:60]!r}")
            name = name.strip().lower()
            if name == b"content-length":
                value = value.strip()
                if not value.isdigit():
                    raise _ProtocolError(f"bad Content-Length {value[:20]!r}")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.strip().lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif name == b"connection":
                tokens = {token.strip() for token in value.lower().split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        self.keep_alive = keep_alive
        if status in _NO_BODY:
            return True
        if chunked:
            self._phase = _CHUNK_SIZE
            return False
        if length is not None:
            if length == 0:
                return True
            self._remaining = length
            self._phase = _LENGTH
            return False
        self.keep_alive = False
        self._phase = _UNTIL_EOF
        return False

    def _keep(self, buffer: bytearray, count: int) -> None:
        room = self._client.max_body - len(self._body)
        if room > 0:
            self._body += buffer[: min(count, room)]
        del buffer[:count]

    @staticmethod
    def _line(buffer: bytearray) -> bytes | None:
        end = buffer.find(b"\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise _ProtocolError("line too long")
            return None
        line = bytes(buffer[:end])
        del buffer[: end + 2]
        return line


class HttpCallClient:
    """POSTs to one URL over at most ``max_connections`` kept-alive connections.

    ``headers`` go with every request (``Host`` and ``Content-Length`` are added). ``timeout``
    bounds connecting and then each silence while waiting for the answer. Callers beyond the
    connection limit wait, in order, for a free connection. ``ssl_context`` is used for
    ``https://`` URLs (default: the system's trusted certificates, with host name checks).
    ``clock`` times the silences (default: the running loop). ``max_body`` bytes of an
    answer's body are kept.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        timeout: float,
        max_connections: int = 16,
        ssl_context: ssl.SSLContext | None = None,
        clock: TimerClock | None = None,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.loop = asyncio.get_running_loop()
        self.clock: TimerClock = clock or self.loop
        self._host = parts.hostname
        self._tls = parts.scheme == "https"
        self._port = parts.port or (443 if self._tls else 80)
        self._ssl_context = ssl_context
        self._timeout = timeout
        self._limit = max(1, max_connections)
        self.max_body = max_body
        """Bytes of an answer's body kept; the rest is read and dropped."""
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        netloc = parts.netloc.rsplit("@", 1)[-1]
        lines = [f"POST {target} HTTP/1.1", f"Host: {netloc}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self._idle: list[_Connection] = []
        self._connections: set[_Connection] = set()
        self._open = 0
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._retired = False
        self._closed = False
        self.connections_made = 0
        self.answer_reads = 0
        """Reads of answer bytes, over every connection (a test knows a piece has arrived)."""

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def active(self) -> bool:
        """Whether a connection is open or a caller waits for one."""
        return self._open > 0 or bool(self._waiters)

    async def post(self, body: bytes) -> CallResponse:
        """Send ``body``; the answer, whatever its status."""
        conn = await self._acquire()
        data = b"%s%d\r\n\r\n%s" % (self._head, len(body), body)
        try:
            (waiter,) = conn.send(data, self._timeout)
            response = await waiter
        except BaseException:
            conn.abort()  # cancelled or failed mid-request: the connection's state is unknown
            raise
        self._release(conn)
        return response

    async def post_many(self, bodies: Sequence[bytes]) -> list[CallResponse | Exception]:
        """Send ``bodies`` pipelined on one connection (one write); each one's answer, or the
        error it failed with (``CallNotSentError`` for all when no connection could be had,
        ``CallUnansweredError`` for those unanswered when the connection failed)."""
        if not bodies:
            return []
        try:
            conn = await self._acquire()
        except CallNotSentError as exc:
            return [exc] * len(bodies)
        head = self._head
        data = b"".join([b"%s%d\r\n\r\n%s" % (head, len(body), body) for body in bodies])
        out: list[CallResponse | Exception] = []
        try:
            waiters = conn.send(data, self._timeout, len(bodies))
            for waiter in waiters:
                try:
                    out.append(await waiter)
                except (CallUnansweredError, CallNotSentError) as exc:
                    out.append(exc)
        except BaseException:
            conn.abort()  # cancelled mid-request: the connection's state is unknown
            raise
        self._release(conn)
        return out

    def retire(self) -> None:
        """Take no new connections; close idle ones now and busy ones after their answer."""
        self._retired = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.abort()

    def close(self) -> None:
        """Close every connection; waiting callers get ``CallNotSentError``, callers whose
        request is out get ``CallUnansweredError``."""
        self._closed = True
        self.retire()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(CallNotSentError("the client was closed"))
        for conn in list(self._connections):
            conn.abort()

    # -- the pool -------------------------------------------------------------------------------

    async def _acquire(self) -> _Connection:
        while True:
            if self._closed:
                raise CallNotSentError("the client was closed")
            idle = self._idle
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    return conn
            if self._open < self._limit:
                return await self._connect()
            waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    passed = waiter.result()
                    if passed is not None:
                        self._release(passed)
                    else:
                        self._wake_one()
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
            if handed is not None and not handed.closed:
                return handed
            # A slot was freed (or the connection handed over died): try again.

    async def _connect(self) -> _Connection:
        self._open += 1
        conn = _Connection(self)
        self._connections.add(conn)
        try:
            context = None
            if self._tls:
                if self._ssl_context is None:
                    # Reads the system's certificate store: off the loop, once per client.
                    self._ssl_context = await asyncio.to_thread(ssl.create_default_context)
                context = self._ssl_context
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: conn,
                    self._host,
                    self._port,
                    ssl=context,
                    server_hostname=self._host if context is not None else None,
                ),
                self._timeout,
            )
        except asyncio.TimeoutError:
            conn.abort()
            conn.release_slot()
            raise CallNotSentError(
                f"connecting to {self._host}:{self._port} timed out after {self._timeout:g}s",
                timed_out=True,
            ) from None
        except (OSError, ValueError) as exc:
            # Refused, unresolvable, TLS handshake failed: no byte of the request went out.
            conn.abort()
            conn.release_slot()
            raise CallNotSentError(f"cannot connect to {self._host}:{self._port}: {exc!r}") from exc
        except BaseException:
            conn.abort()
            conn.release_slot()
            raise
        if self._closed or conn.closed:
            conn.abort()
            raise CallNotSentError("the connection closed before the request was written")
        self.connections_made += 1
        return conn

    def _release(self, conn: _Connection) -> None:
        """A request is over: hand the connection to the next waiter, keep it, or close it."""
        if conn.closed or not conn.keep_alive or self._closed:
            if not conn.closed and conn.transport is not None:
                conn.transport.close()  # after the answer: nothing is lost by closing
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if self._retired:
            conn.abort()
            return
        self._idle.append(conn)

    def slot_freed(self, conn: _Connection) -> None:
        self._open -= 1
        self._connections.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
