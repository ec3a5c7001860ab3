"""Test doubles for the native driver: a small scriptable Mesos master and a relay (the
recording handler, the in-memory id store and ``eventually`` are re-exported from ``daemonkit``).

``FakeMaster`` speaks just enough of the v1 scheduler API (SUBSCRIBE with a RecordIO stream,
calls answered 202, GET_FRAMEWORKS on the operator API) and lets a test script failures:
answer the next subscriptions with given statuses, redirect, require credentials, stop the
heartbeats, push raw bytes or events onto the open streams. ``Relay`` sits in front of one to
refuse new connections or drop them mid-call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from daemonkit import MemoryIdStore as MemoryIdStore  # re-exported for the driver tests
from daemonkit import RecordingHandler as RecordingHandler
from daemonkit import driver_config as driver_config
from daemonkit import eventually as eventually
from daemonkit import gave_up as gave_up

from scale_scheduler.daemon.mesos.loop_share import LoopShare
from scale_scheduler.daemon.mesos.native_driver import DriverSettings, NativeDriver

API_URL = "http://sched.test:8000/"

FAST = DriverSettings(request_timeout=2.0, backoff_initial=0.05, backoff_max=0.2)


MakeDriver = Callable[..., NativeDriver]


class CountingShare(LoopShare):
    """A loop share that counts the records the driver has handled: a test awaits the count to
    know an event it pushed (a heartbeat, say) has been read."""

    def __init__(self) -> None:
        super().__init__()
        self.records = 0

    async def after_record(self) -> None:
        self.records += 1
        await super().after_record()


def record(event: dict[str, Any]) -> bytes:
    payload = json.dumps(event).encode()
    return b"%d\n%s" % (len(payload), payload)


@dataclass
class Stream:
    framework_id: str
    stream_id: str
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    closed: bool = False


class FakeMaster:
    def __init__(self, *, heartbeat: float = 0.2, name: str = "fake") -> None:
        self.heartbeat = heartbeat
        self.name = name
        self.send_heartbeats = True
        self.statuses: list[int] = []  # answer the next SUBSCRIBEs with these, in order
        self.redirect_to: str | None = None  # "host:port" of the leader
        self.hang_subscribes = 0  # never answer this many SUBSCRIBEs
        self.required_auth: str | None = None
        self.call_status = 202
        self.call_delay = 0.0
        self.reported_id: str | None = None  # answer SUBSCRIBED with this id instead
        self.subscribes: list[dict[str, Any]] = []
        self.subscribe_headers: list[dict[str, str]] = []
        self.calls: list[dict[str, Any]] = []
        self.call_headers: list[dict[str, str]] = []
        self.frameworks: dict[str, dict[str, Any]] = {}
        self.removed: set[str] = set()
        self.streams: list[Stream] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.subscribed = asyncio.Event()
        self._ids = itertools.count(1)
        self._server: TestServer | None = None
        app = web.Application()
        app.router.add_post("/api/v1/scheduler", self._scheduler)
        app.router.add_post("/api/v1", self._operator)
        self.app = app

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, port: int | None = None) -> str:
        self._server = TestServer(self.app, host="127.0.0.1", port=port)
        await self._server.start_server()
        return self.url

    async def close(self) -> None:
        await self.close_streams()
        if self._server is not None:
            await self._server.close()

    @property
    def port(self) -> int:
        assert self._server is not None
        assert self._server.port is not None
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting ----------------------------------------------------------------------------

    def live_streams(self) -> list[Stream]:
        return [s for s in self.streams if not s.closed]

    async def push(self, event: dict[str, Any]) -> None:
        await self.push_raw(record(event))

    async def push_raw(self, data: bytes) -> None:
        for stream in self.live_streams():
            stream.queue.put_nowait(data)

    async def close_streams(self) -> None:
        for stream in self.live_streams():
            stream.queue.put_nowait(None)

    def calls_of(self, call_type: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["type"] == call_type]

    # -- HTTP ---------------------------------------------------------------------------------

    async def _operator(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("type") != "GET_FRAMEWORKS":
            return web.Response(status=400, text="unsupported")
        frameworks = [
            {
                "framework_info": info,
                "active": any(s.framework_id == fid for s in self.live_streams()),
            }
            for fid, info in self.frameworks.items()
            if fid not in self.removed
        ]
        return web.json_response(
            {"type": "GET_FRAMEWORKS", "get_frameworks": {"frameworks": frameworks}}
        )

    async def _scheduler(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if self.required_auth is not None and request.headers.get("Authorization") != (
            self.required_auth
        ):
            return web.Response(status=401, text="Unauthorized")
        if body.get("type") == "SUBSCRIBE":
            return await self._subscribe(request, body)
        return await self._call(request, body)

    async def _call(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.call_delay:
                await asyncio.sleep(self.call_delay)  # a deliberately slow master
            stream_id = request.headers.get("Mesos-Stream-Id")
            if not any(s.stream_id == stream_id for s in self.live_streams()):
                return web.Response(status=400, text="bad stream id")
            self.calls.append(body)
            self.call_headers.append(dict(request.headers))
            if body["type"] == "TEARDOWN":
                fid = body["framework_id"]["value"]
                self.removed.add(fid)
                for stream in self.live_streams():
                    if stream.framework_id == fid:
                        stream.queue.put_nowait(None)
            return web.Response(status=self.call_status)
        finally:
            self.in_flight -= 1

    async def _subscribe(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        self.subscribes.append(body)
        self.subscribe_headers.append(dict(request.headers))
        if self.hang_subscribes > 0:
            self.hang_subscribes -= 1
            await asyncio.Event().wait()  # never answers (ends when the server closes)
        if self.statuses:
            return web.Response(status=self.statuses.pop(0), text="scripted failure")
        if self.redirect_to is not None:
            return web.Response(
                status=307, headers={"Location": f"//{self.redirect_to}/api/v1/scheduler"}
            )
        info = body["subscribe"]["framework_info"]
        fid = (body.get("framework_id") or {}).get("value") or f"{self.name}-fw-{next(self._ids)}"
        stream = Stream(framework_id=fid, stream_id=str(uuid.uuid4()))
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Mesos-Stream-Id": stream.stream_id}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        if fid in self.removed:
            await response.write(
                record({"type": "ERROR", "error": {"message": "Framework has been removed"}})
            )
            return response
        self.frameworks[fid] = {**info, "id": {"value": fid}}
        self.streams.append(stream)
        subscribed = {
            "framework_id": {"value": self.reported_id or fid},
            "heartbeat_interval_seconds": self.heartbeat,
            "master_info": {
                "id": self.name,
                "ip": 16777343,
                "port": self.port,
                "hostname": f"{self.name}.example",
                "address": {
                    "hostname": f"{self.name}.example",
                    "ip": "127.0.0.1",
                    "port": self.port,
                },
            },
        }
        try:
            await response.write(record({"type": "SUBSCRIBED", "subscribed": subscribed}))
            self.subscribed.set()
            while True:
                try:
                    data = await asyncio.wait_for(stream.queue.get(), self.heartbeat)
                except asyncio.TimeoutError:
                    if self.send_heartbeats:
                        await response.write(record({"type": "HEARTBEAT"}))
                    continue
                if data is None:
                    break
                await response.write(data)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            stream.closed = True
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


class Relay:
    """A TCP relay on 127.0.0.1 in front of a fake master, to break connections the way networks
    do: ``refuse()`` stops accepting (connections already open keep flowing, so a subscription
    through it stays live), and ``drop_after_request`` cuts each new connection once the client
    has sent its request, before any answer."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.drop_after_request = False
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def refuse(self) -> None:
        assert self._server is not None
        self._server.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.drop_after_request:
            await reader.read(65536)
            self.dropped += 1
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()
