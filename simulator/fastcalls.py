"""The scheduler-call hot path: plain non-SUBSCRIBE calls answered straight from the socket.

Owns `CallSite`, the listening site of one master, and `FastCallProtocol`, the protocol of each
connection. A framework sends one ACKNOWLEDGE per status update (three per task) and an ACCEPT
per offer; through aiohttp's server each of those costs several times what the master's own work
does. So each connection starts in a lean mode that parses HTTP/1.1 requests itself and answers
the common case: `POST /api/v1/scheduler` with a `Content-Length` body of `application/json`, on
the leading master, without configured credentials or call faults, any call but SUBSCRIBE. The
master's answer (202, 200, or its `CallError` as text/plain) is exactly what `http.py` gives.

Anything else (another path or method, SUBSCRIBE, chunked bodies, `Expect`, `Connection:
close`, bad JSON, auth, faults, a non-leader) hands the connection, with the bytes not yet
answered, to aiohttp's request handler for good, so every other behaviour stays in `http.py`.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from aiohttp import web

from scale_scheduler.simulator import protocol
from scale_scheduler.simulator.master import CallError

if TYPE_CHECKING:
    from scale_scheduler.simulator.master import Master

log = structlog.get_logger(__name__)

_REQUEST_LINE = b"POST " + protocol.SCHEDULER_PATH.encode() + b" HTTP/1.1"
_MAX_HEAD = 16 * 1024  # a longer head goes to aiohttp, which applies its own limits
_MAX_BODY = 64 * 1024 * 1024  # build_app's client_max_size: aiohttp answers 413 beyond it
_HANDOFF_HEADERS = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
_STATUS_TEXT = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    500: "Internal Server Error",
}
_HEAD_CACHE = 256  # distinct request heads remembered per connection
_decode = msgspec.json.decode


def _empty(status: int) -> bytes:
    return f"HTTP/1.1 {status} {_STATUS_TEXT[status]}\r\nContent-Length: 0\r\n\r\n".encode()


_EMPTY = {202: _empty(202), 200: _empty(200)}


def _text(status: int, message: str) -> bytes:
    body = message.encode()
    reason = _STATUS_TEXT.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Not(enum.Enum):
    """Why `_next` answered nothing."""

    COMPLETE = "the request is not complete yet"
    MINE = "the request is not one for the lean path"


def _parse_head(head: bytes) -> tuple[int, str | None] | None:
    """(Content-Length, Mesos-Stream-Id) of a request head the lean path takes, else None."""
    lines = head.split(b"\r\n")
    if lines[0] != _REQUEST_LINE:
        return None
    length = -1
    ctype = stream_id = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        name = name.lower()
        if not sep or not name or name.strip() != name:
            return None
        value = value.strip(b" \t")
        if name == b"content-length":
            if length >= 0 or not value.isdigit():
                return None
            length = int(value)
        elif name == b"content-type":
            if ctype is not None:
                return None
            ctype = value.lower()
        elif name == b"mesos-stream-id":
            if stream_id is not None:
                return None
            stream_id = value.decode("latin-1")
        elif name == b"connection":
            if value.lower() != b"keep-alive":
                return None
        elif name in _HANDOFF_HEADERS:
            return None
    if ctype != b"application/json" or length < 0 or length > _MAX_BODY:
        return None
    return length, stream_id


class FastCallProtocol(asyncio.Protocol):
    """One connection: lean until a request it does not take, then aiohttp's for good."""

    def __init__(
        self,
        master: Master,
        fallback: Callable[[], asyncio.Protocol],
        connections: set[FastCallProtocol],
    ) -> None:
        self._master = master
        self._fallback = fallback
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._inner: asyncio.Protocol | None = None
        self._paused = False
        self._heads: dict[bytes, tuple[int, str | None] | None] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)
            return
        # Usually `data` is exactly one request: read it in place, copy nothing into a buffer.
        buf: bytes | bytearray = data
        if self._buf:
            self._buf += data
            buf = self._buf
        pos = 0
        out: list[bytes] = []
        while pos < len(buf):
            answer, pos_after = self._next(buf, pos)
            if answer is _Not.COMPLETE:
                break
            if answer is _Not.MINE:
                self._flush(out)
                self._hand_off(bytes(buf[pos:]))
                return
            out.append(answer)
            pos = pos_after
        self._flush(out)
        if buf is self._buf:
            del buf[:pos]
        elif pos < len(buf):
            self._buf = bytearray(buf[pos:])

    def _flush(self, out: list[bytes]) -> None:
        if out and self._transport is not None:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _next(self, buf: bytes | bytearray, pos: int) -> tuple[bytes | _Not, int]:
        """Answer the complete request at `pos` in `buf`; also returns where the next starts."""
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            return (_Not.MINE if len(buf) - pos > _MAX_HEAD else _Not.COMPLETE), pos
        head = bytes(buf[pos:end])
        # A client repeats the same few heads (only Content-Length varies): parse each once.
        heads = self._heads
        if head in heads:
            parsed = heads[head]
        else:
            parsed = _parse_head(head)
            if len(heads) >= _HEAD_CACHE:
                heads.clear()
            heads[head] = parsed
        if parsed is None:
            return _Not.MINE, pos
        length, stream_id = parsed
        start = end + 4
        stop = start + length
        if len(buf) < stop:
            return _Not.COMPLETE, pos
        answer = self._answer(buf[start:stop], stream_id)
        if answer is None:
            return _Not.MINE, pos
        return answer, stop

    def _answer(self, body: bytes | bytearray, stream_id: str | None) -> bytes | None:
        master = self._master
        cluster = master.cluster
        if not master.leading or master.config.credentials or cluster.faults.rules:
            return None
        try:
            call: Any = _decode(body)
        except msgspec.DecodeError:
            return None
        call_type = call.get("type") if isinstance(call, dict) else None
        if call_type == "SUBSCRIBE" or call_type not in protocol.SCHEDULER_CALL_TYPES:
            return None
        cluster.record.calls[call_type] += 1
        try:
            fw = master.framework_for_call(call, stream_id)
            status = master.handle_call(fw, call_type, call)
        except CallError as exc:
            return _text(exc.status, exc.message)
        except Exception:  # aiohttp would answer 500 too; the connection stays usable
            log.exception("sim_call_failed", call_type=call_type)
            return _text(500, "500 Internal Server Error")
        return _EMPTY.get(status) or _empty(status)

    def _hand_off(self, unanswered: bytes) -> None:
        inner = self._inner = self._fallback()
        transport = self._transport
        assert transport is not None
        self._buf = bytearray()
        inner.connection_made(transport)
        if self._paused:
            inner.pause_writing()
        if unanswered:
            inner.data_received(unanswered)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return self._inner.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._transport = None
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._paused = True
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._paused = False
        if self._inner is not None:
            self._inner.resume_writing()

    def close(self) -> None:
        """Drop a connection still in lean mode (aiohttp closes the ones it was handed)."""
        if self._inner is None and self._transport is not None:
            self._transport.close()


class CallSite(web.BaseSite):
    """A TCP site whose connections start on the lean call path (see the module docstring)."""

    __slots__ = ("_connections", "_host", "_master", "_port", "bound_port")

    def __init__(self, runner: web.BaseRunner, master: Master, host: str, port: int) -> None:
        super().__init__(runner)
        self._master = master
        self._host = host
        self._port = port
        self._connections: set[FastCallProtocol] = set()
        self.bound_port = 0

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.bound_port or self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        master, connections = self._master, self._connections

        def factory() -> FastCallProtocol:
            return FastCallProtocol(master, server, connections)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(factory, self._host, self._port)
        sockets = self._server.sockets
        self.bound_port = int(sockets[0].getsockname()[1]) if sockets else self._port

    async def stop(self) -> None:
        for conn in list(self._connections):
            conn.close()
        await super().stop()
