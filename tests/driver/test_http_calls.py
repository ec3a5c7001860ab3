"""The driver's lean HTTP client against a real aiohttp server and raw asyncio servers: answers
(202, 307, 503, chunked, close-delimited, interim), keep-alive reuse counted at the server,
reconnects, and which failures surely sent nothing (refused, connect timeout, bad TLS) and which
may have reached the server (closed before answering, silent, garbled)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from clockkit import ManualClock
from driver_fakes import eventually

from scale_scheduler.daemon.mesos.http_calls import (
    MAX_BODY_BYTES,
    CallNotSentError,
    CallUnansweredError,
    HttpCallClient,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"


class RawServer:
    """An asyncio TCP server on 127.0.0.1 running ``handler`` per connection, counting them."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/api/v1/scheduler"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await self.handler(reader, writer)

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """One request (head and Content-Length body); b"" at end of stream."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return b""
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return head + body


def answering(*answers: bytes, then_close: bool = False) -> Callable[[RawServer], Handler]:
    """A handler answering the server's n-th request with the n-th of ``answers`` (the last one
    repeated), closing the connection after each answer if ``then_close``."""

    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await server.read_request(reader):
                writer.write(answers[min(len(server.requests), len(answers)) - 1])
                await writer.drain()
                if then_close:
                    writer.close()
                    return

        return handle

    return make


@contextlib.asynccontextmanager
async def raw(factory: Callable[[RawServer], Handler]) -> AsyncIterator[RawServer]:
    server = RawServer(lambda r, w: asyncio.sleep(0))
    server.handler = factory(server)
    async with server:
        yield server


@contextlib.asynccontextmanager
async def client_for(
    url: str,
    *,
    timeout: float = 2.0,
    max_connections: int = 16,
    ssl_context: ssl.SSLContext | None = None,
    clock: ManualClock | None = None,
) -> AsyncIterator[HttpCallClient]:
    client = HttpCallClient(
        url,
        {"Content-Type": "application/json"},
        timeout=timeout,
        max_connections=max_connections,
        ssl_context=ssl_context,
        clock=clock,
    )
    try:
        yield client
    finally:
        client.close()
        await eventually(lambda: client.open_connections == 0)


# -- against aiohttp's server --------------------------------------------------------------------


class AiohttpMaster:
    """A real aiohttp server: records requests and the transports they came on."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.transports: set[int] = set()
        self.status = 202
        self.chunks: list[bytes] | None = None
        app = web.Application()
        app.router.add_post("/api/v1/scheduler", self._handle)
        self.server = TestServer(app, host="127.0.0.1", port=0)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.read())
        self.headers.append(dict(request.headers))
        self.transports.add(id(request.transport))
        if self.chunks is not None:
            response = web.StreamResponse(status=self.status)
            response.enable_chunked_encoding()
            await response.prepare(request)
            for chunk in self.chunks:
                await response.write(chunk)
            await response.write_eof()
            return response
        if self.status in (301, 302, 303, 307, 308):
            return web.Response(
                status=self.status, headers={"Location": "//m2:5050/api/v1/scheduler"}
            )
        return web.Response(status=self.status, text="" if self.status < 300 else "try later")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/api/v1/scheduler"


@pytest.fixture
async def aio_master() -> AsyncIterator[AiohttpMaster]:
    master = AiohttpMaster()
    await master.server.start_server()
    yield master
    await master.server.close()


async def test_posts_the_body_with_the_given_headers(aio_master: AiohttpMaster) -> None:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Mesos-Stream-Id": "s-1",
        "Authorization": "Basic cHJpbmM6c2VjcmV0",
    }
    client = HttpCallClient(aio_master.url, headers, timeout=2.0)
    try:
        response = await client.post(b'{"type":"ACKNOWLEDGE"}')
    finally:
        client.close()
    assert response.status == 202
    assert aio_master.bodies == [b'{"type":"ACKNOWLEDGE"}']
    received = aio_master.headers[0]
    assert {name: received[name] for name in headers} == headers
    assert received["Host"] == f"127.0.0.1:{aio_master.server.port}"
    assert received["Content-Length"] == "22"


async def test_sequential_calls_reuse_one_connection(aio_master: AiohttpMaster) -> None:
    async with client_for(aio_master.url) as client:
        for i in range(200):
            response = await client.post(b'{"n":%d}' % i)
            assert response.status == 202
        assert client.connections_made == 1
    assert len(aio_master.bodies) == 200
    assert len(aio_master.transports) == 1


async def test_concurrent_calls_share_at_most_the_connection_limit(
    aio_master: AiohttpMaster,
) -> None:
    async with client_for(aio_master.url, max_connections=4) as client:
        responses = await asyncio.gather(*(client.post(b'{"n":%d}' % i) for i in range(1000)))
        assert {r.status for r in responses} == {202}
        assert 1 < client.connections_made <= 4
    assert sorted(aio_master.bodies) == sorted(b'{"n":%d}' % i for i in range(1000))
    assert 1 < len(aio_master.transports) <= 4


@pytest.mark.parametrize("status", [307, 400, 403, 503])
async def test_any_status_is_returned_not_followed(aio_master: AiohttpMaster, status: int) -> None:
    aio_master.status = status
    async with client_for(aio_master.url) as client:
        response = await client.post(b"{}")
        assert response.status == status
        assert len(aio_master.bodies) == 1  # a 307 is not followed
        if status >= 400:
            assert response.body == b"try later"
        aio_master.status = 202
        assert (await client.post(b"{}")).status == 202
        assert client.connections_made == 1


async def test_a_chunked_answer_is_read_whole(aio_master: AiohttpMaster) -> None:
    aio_master.status = 400
    aio_master.chunks = [b"bad ", b"stream ", b"id"]
    async with client_for(aio_master.url) as client:
        response = await client.post(b"{}")
        assert (response.status, response.body) == (400, b"bad stream id")
        aio_master.chunks = None
        aio_master.status = 202
        assert (await client.post(b"{}")).status == 202
        assert client.connections_made == 1


# -- answers from raw servers --------------------------------------------------------------------


async def test_chunked_answer_split_byte_by_byte_with_extensions_and_trailers() -> None:
    answer = (
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nno le\r\n6\r\nader y\r\n2\r\net\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )

    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await server.read_request(reader):
                for i in range(len(answer)):
                    writer.write(answer[i : i + 1])
                    await writer.drain()

        return handle

    async with raw(make) as server, client_for(server.url) as client:
        first = await client.post(b"{}")
        second = await client.post(b"{}")
        assert (first.status, first.body) == (503, b"no leader yet")
        assert second == first
        assert server.connections == 1


async def test_interim_answers_are_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
    async with raw(answering(answer)) as server, client_for(server.url) as client:
        assert (await client.post(b"{}")).status == 202
        assert (await client.post(b"{}")).status == 202
        assert server.connections == 1


async def test_connection_close_answers_are_not_reused() -> None:
    answer = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    async with raw(answering(answer)) as server, client_for(server.url) as client:
        for _ in range(3):
            assert (await client.post(b"{}")).status == 202
        assert server.connections == 3
        assert client.connections_made == 3


async def test_a_body_without_length_ends_with_the_connection() -> None:
    answer = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nbad stream id"
    async with (
        raw(answering(answer, then_close=True)) as server,
        client_for(server.url) as client,
    ):
        response = await client.post(b"{}")
        assert (response.status, response.body) == (400, b"bad stream id")
        assert (await client.post(b"{}")).status == 400
        assert server.connections == 2


async def test_a_long_body_is_cut_and_the_connection_kept() -> None:
    big = b"x" * (MAX_BODY_BYTES + 5000)
    first = b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
    async with raw(answering(first, ACCEPTED)) as server, client_for(server.url) as client:
        response = await client.post(b"{}")
        assert response.status == 400
        assert response.body == big[:MAX_BODY_BYTES]
        assert (await client.post(b"{}")).status == 202
        assert server.connections == 1


async def test_max_body_keeps_more_of_a_long_body() -> None:
    big = b"x" * (MAX_BODY_BYTES + 5000)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
    async with raw(answering(answer)) as server:
        client = HttpCallClient(server.url, {}, timeout=2.0, max_body=len(big) + 1)
        try:
            response = await client.post(b"{}")
        finally:
            client.close()
    assert response.body == big


async def test_a_kept_connection_the_server_closed_is_replaced() -> None:
    async with (
        raw(answering(ACCEPTED, then_close=True)) as server,
        client_for(server.url) as client,
    ):
        assert (await client.post(b"{}")).status == 202
        # The server closed its end after answering: the client notices while idle ...
        await eventually(lambda: client.open_connections == 0)
        # ... and the next call opens a new connection instead of failing.
        assert (await client.post(b"{}")).status == 202
        assert server.connections == 2


# -- failures: surely not sent -------------------------------------------------------------------


async def test_a_refused_connection_surely_sent_nothing() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    async with client_for(f"http://127.0.0.1:{port}/api/v1/scheduler") as client:
        with pytest.raises(CallNotSentError) as raised:
            await client.post(b"{}")
        assert not raised.value.timed_out
        assert client.open_connections == 0


async def test_a_connect_that_never_completes_times_out_unsent() -> None:
    """A TLS server that accepts TCP but never answers the handshake: connecting times out."""

    def silent(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # never answers

        return handle

    async with raw(silent) as server:
        url = server.url.replace("http://", "https://")
        async with client_for(url, timeout=0.2, ssl_context=ssl.create_default_context()) as c:
            with pytest.raises(CallNotSentError, match="timed out") as raised:
                await c.post(b"{}")
            assert raised.value.timed_out
        assert server.requests == []


async def test_close_fails_waiting_callers_as_unsent() -> None:
    def slow(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            await reader.read()  # never answers

        return handle

    async with raw(slow) as server:
        client = HttpCallClient(server.url, {}, timeout=5.0, max_connections=1)
        first = asyncio.ensure_future(client.post(b"{}"))
        second = asyncio.ensure_future(client.post(b"{}"))
        await eventually(lambda: len(server.requests) == 1)
        client.close()
        with pytest.raises(CallUnansweredError):
            await first
        with pytest.raises(CallNotSentError):
            await second
        assert len(server.requests) == 1


# -- failures: the server may have the request ---------------------------------------------------


async def test_a_server_closing_before_answering_leaves_the_outcome_unknown() -> None:
    def hang_up(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.transport.abort()

        return handle

    async with raw(hang_up) as server, client_for(server.url) as client:
        with pytest.raises(CallUnansweredError, match="connection lost") as raised:
            await client.post(b'{"type":"ACCEPT"}')
        assert not raised.value.timed_out
        assert len(server.requests) == 1  # it did arrive


async def test_a_silent_server_times_out_with_the_outcome_unknown() -> None:
    def silent(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            await reader.read()  # never answers

        return handle

    clock = ManualClock()
    async with raw(silent) as server, client_for(server.url, timeout=0.25, clock=clock) as client:
        call = asyncio.ensure_future(client.post(b"{}"))
        await eventually(lambda: len(server.requests) == 1)
        clock.advance(0.125)
        assert clock.pending == 1  # the silence timer has not fired: within the limit
        clock.advance(0.125)
        assert clock.pending == 0
        with pytest.raises(CallUnansweredError, match=r"no answer within 0\.25s") as raised:
            await call
        assert raised.value.timed_out
        assert len(server.requests) == 1


async def test_a_slow_but_progressing_answer_is_waited_for() -> None:
    """The timeout limits silence, not the whole answer (as aiohttp's read timeout does).

    Each piece comes 0.2 s of the client's clock after the one before, the whole answer takes
    0.8 s: more than three times the 0.25 s limit.
    """
    pieces = [b"HTTP/1.1 202 Accepted\r\n", b"Content-Length: 2\r\n\r\n", b"o", b"k"]
    sends: asyncio.Queue[bytes] = asyncio.Queue()

    def paced(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            while True:
                writer.write(await sends.get())

        return handle

    clock = ManualClock()
    async with raw(paced) as server, client_for(server.url, timeout=0.25, clock=clock) as client:
        call = asyncio.ensure_future(client.post(b"{}"))
        await eventually(lambda: len(server.requests) == 1)
        for piece in pieces:
            clock.advance(0.2)
            read = client.answer_reads
            sends.put_nowait(piece)
            await eventually(lambda read=read: client.answer_reads > read)
        response = await call
        assert (response.status, response.body) == (202, b"ok")


@pytest.mark.parametrize(
    "answer",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 2x2 Accepted\r\n\r\n",
        b"HTTP/1.1 202 Accepted\r\nContent-Length: many\r\n\r\n",
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_a_garbled_answer_leaves_the_outcome_unknown(answer: bytes) -> None:
    async with (
        raw(answering(answer, ACCEPTED)) as server,
        client_for(server.url) as client,
    ):
        with pytest.raises(CallUnansweredError, match="unreadable answer"):
            await client.post(b"{}")
        assert (await client.post(b"{}")).status == 202  # on a fresh connection
        assert server.connections == 2


async def test_a_cancelled_call_does_not_leave_its_connection_in_the_pool() -> None:
    first_answer = asyncio.Event()

    def late_once(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await server.read_request(reader):
                if len(server.requests) == 1:
                    await first_answer.wait()
                writer.write(ACCEPTED)

        return handle

    async with raw(late_once) as server, client_for(server.url, max_connections=1) as client:
        call = asyncio.ensure_future(client.post(b"{}"))
        await eventually(lambda: len(server.requests) == 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        first_answer.set()  # the answer to the cancelled call comes late
        # The late answer to the cancelled call must not be taken as this call's answer.
        assert (await client.post(b"{}")).status == 202
        assert server.connections == 2


# -- https ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def tls_master(certificate: tuple[Path, Path]) -> AsyncIterator[AiohttpMaster]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    master = AiohttpMaster()
    master.server = TestServer(master.server.app, host="127.0.0.1", port=0)
    await master.server.start_server(ssl=context)
    yield master
    await master.server.close()


async def test_https_with_a_trusted_certificate(
    tls_master: AiohttpMaster, certificate: tuple[Path, Path]
) -> None:
    url = tls_master.url.replace("http://", "https://")
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    async with client_for(url, ssl_context=trusting) as client:
        assert (await client.post(b"{}")).status == 202
        assert (await client.post(b"{}")).status == 202
        assert client.connections_made == 1
    assert tls_master.bodies == [b"{}", b"{}"]


async def test_https_with_an_untrusted_certificate_sends_nothing(
    tls_master: AiohttpMaster,
) -> None:
    url = tls_master.url.replace("http://", "https://")
    async with client_for(url) as client:  # the system's trust store: the test CA is unknown
        with pytest.raises(CallNotSentError, match="cannot connect"):
            await client.post(b"{}")
    assert tls_master.bodies == []


# -- pipelining ----------------------------------------------------------------------------------


async def test_post_many_pipelines_on_one_connection_and_keeps_the_order() -> None:
    def numbered(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while request := await server.read_request(reader):
                body = request.split(b"\r\n\r\n", 1)[1]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                # Answers written back to back: several arrive in one read.

        return handle

    async with raw(numbered) as server, client_for(server.url) as client:
        bodies = [b'{"n":%d}' % i for i in range(200)]
        answers = await client.post_many(bodies)
        assert [a.body for a in answers if not isinstance(a, Exception)] == bodies
        assert server.connections == 1
        assert client.answer_reads < len(bodies)  # not one read per answer
        # The connection is kept for the next call.
        assert (await client.post(b"{}")).status == 200
        assert server.connections == 1


async def test_post_many_reports_the_unanswered_rest_when_the_server_hangs_up() -> None:
    def answers_two(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for _ in range(2):
                await server.read_request(reader)
                writer.write(ACCEPTED)
            await writer.drain()
            writer.transport.abort()

        return handle

    async with raw(answers_two) as server, client_for(server.url) as client:
        answers = await client.post_many([b"{}"] * 5)
        assert [a.status for a in answers[:2] if not isinstance(a, Exception)] == [202, 202]
        assert all(isinstance(a, CallUnansweredError) for a in answers[2:])


async def test_post_many_stops_at_a_connection_close_answer() -> None:
    closing = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    async with raw(answering(closing, then_close=True)) as server, client_for(server.url) as client:
        answers = await client.post_many([b"{}"] * 3)
        assert not isinstance(answers[0], Exception)
        assert answers[0].status == 202
        assert all(isinstance(a, CallUnansweredError) for a in answers[1:])
        assert (await client.post(b"{}")).status == 202  # a fresh connection
        assert server.connections == 2


async def test_post_many_to_a_refused_port_surely_sent_nothing() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with client_for(f"http://127.0.0.1:{port}/api/v1/scheduler") as client:
        answers = await client.post_many([b"{}"] * 3)
    assert all(isinstance(a, CallNotSentError) for a in answers)
