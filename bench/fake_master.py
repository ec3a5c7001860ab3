"""A purpose-built fast fake Mesos master for the benchmarks (real HTTP, real RecordIO).

``python -m bench.fake_master --offers FILE [--mode offers|idle] [--port 0]`` prints one JSON line
``{"url": ...}`` once it listens, then serves until SIGTERM/SIGINT:

- ``POST /api/v1/scheduler`` SUBSCRIBE: 200, ``Mesos-Stream-Id``, a SUBSCRIBED record (the
  framework id sent, or ``bench.offer_stream.FRAMEWORK_ID``), then in ``offers`` mode OFFERS
  records of 100 fresh offers each, written as fast as the client reads them (each write waits
  for the socket to drain), or in ``idle`` mode only HEARTBEATs. A new SUBSCRIBE ends the
  previous stream;
- every other call (DECLINE, ACCEPT, SUPPRESS, REVIVE, RECONCILE, ACKNOWLEDGE, ...): counted,
  then 202 at once. The offer ids of DECLINE and ACCEPT and the tasks of LAUNCH are counted;
- ``POST /api/v1`` (operator API): GET_AGENTS answers no agents; ``GET /version`` for pymesos;
- with ``--agents-api``, every recorded agent's ``POST /slave(N)/api/v1``: GET_CONTAINERS with
  ``AGENT_CONTAINERS`` containers (CPU time accruing), the offers' ``url`` pointing here; with
  ``--agents-port P`` the offers' ``url`` points at port P instead (``bench.fake_agents``);
- ``GET /bench/stats``: the counters and a monotonic timestamp (rates are taken between two reads).

It keeps no offer state and validates nothing: it exists to measure the client, not to be Mesos.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from bench.fake_agents import AGENT_CONTAINERS, FakeAgents
from bench.offer_stream import FRAMEWORK_ID, OfferStream, load_offers

EVENTS_PER_WRITE = 4


class _Id(msgspec.Struct):
    value: str = ""


class _Launch(msgspec.Struct):
    task_infos: list[msgspec.Raw] = []


class _Operation(msgspec.Struct):
    type: str = ""
    launch: _Launch | None = None


class _Accept(msgspec.Struct):
    offer_ids: list[_Id] = []
    operations: list[_Operation] = []


class _Decline(msgspec.Struct):
    offer_ids: list[_Id] = []


class _Call(msgspec.Struct):
    type: str = ""
    framework_id: _Id | None = None
    accept: _Accept | None = None
    decline: _Decline | None = None


_decode_call = msgspec.json.Decoder(_Call).decode
_encode = msgspec.json.Encoder().encode


def _record(event: dict[str, Any]) -> bytes:
    payload = _encode(event)
    return b"%d\n%s" % (len(payload), payload)


HEARTBEAT = _record({"type": "HEARTBEAT"})


class FakeMaster:
    def __init__(self, stream: OfferStream, mode: str, heartbeat: float) -> None:
        self.stream = stream
        self.mode = mode
        self.heartbeat = heartbeat
        self.generation = 0
        self._agents = FakeAgents(AGENT_CONTAINERS, FRAMEWORK_ID)
        self.stats: dict[str, Any] = {
            "subscribes": 0,
            "offers_sent": 0,
            "offers_declined": 0,
            "offers_accepted": 0,
            "tasks_launched": 0,
            "calls": {},
            "bytes_sent": 0,
            "record_bytes": stream.record_bytes,
        }

    async def scheduler(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        call = _decode_call(body)
        calls = self.stats["calls"]
        calls[call.type] = calls.get(call.type, 0) + 1
        if call.type == "SUBSCRIBE":
            return await self._subscribe(request, body)
        if call.decline is not None:
            self.stats["offers_declined"] += len(call.decline.offer_ids)
        if call.accept is not None:
            self.stats["offers_accepted"] += len(call.accept.offer_ids)
            for operation in call.accept.operations:
                if operation.launch is not None:
                    self.stats["tasks_launched"] += len(operation.launch.task_infos)
        return web.Response(status=202)

    async def _subscribe(self, request: web.Request, body: bytes) -> web.StreamResponse:
        sent = json.loads(body)
        framework_id = (sent.get("framework_id") or {}).get("value") or FRAMEWORK_ID
        self.generation += 1
        generation = self.generation
        self.stats["subscribes"] += 1
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "application/json", "Mesos-Stream-Id": f"stream-{generation}"},
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        host, port = request.url.host or "127.0.0.1", request.url.port or 5050
        subscribed = {
            "type": "SUBSCRIBED",
            "subscribed": {
                "framework_id": {"value": framework_id},
                "heartbeat_interval_seconds": max(self.heartbeat, 1.0),
                "master_info": {
                    "id": "bench-master",
                    "ip": 16777343,
                    "port": port,
                    "hostname": host,
                    "version": "1.11.0",
                    "address": {"hostname": host, "ip": "127.0.0.1", "port": port},
                },
            },
        }
        await response.write(_record(subscribed))
        try:
            if self.mode == "offers":
                await self._offers(response, generation)
            else:
                while generation == self.generation:
                    await response.write(HEARTBEAT)
                    await asyncio.sleep(self.heartbeat)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    async def _offers(self, response: web.StreamResponse, generation: int) -> None:
        stream, stats = self.stream, self.stats
        per_event = stream.per_event
        while generation == self.generation:
            data = b"".join(stream.next_record() for _ in range(EVENTS_PER_WRITE))
            await response.write(data)
            stats["offers_sent"] += per_event * EVENTS_PER_WRITE
            stats["bytes_sent"] += len(data)

    async def operator(self, request: web.Request) -> web.Response:
        call = json.loads(await request.read())
        kind = call.get("type", "")
        if kind == "GET_AGENTS":
            return web.json_response({"type": "GET_AGENTS", "get_agents": {"agents": []}})
        return web.json_response({"type": kind})

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "1.11.0", "build_user": "bench"})

    async def bench_stats(self, request: web.Request) -> web.Response:
        return web.json_response({**self.stats, "now": time.monotonic()})

    async def agent(self, request: web.Request) -> web.Response:
        """One agent's GET_CONTAINERS: its containers use half a CPU each since start-up."""
        await request.read()
        self.stats["agent_calls"] = self.stats.get("agent_calls", 0) + 1
        return web.Response(
            body=self._agents.body(request.match_info["pid"]), content_type="application/json"
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/api/v1/scheduler", self.scheduler)
        app.router.add_post("/api/v1", self.operator)
        app.router.add_post("/{pid}/api/v1", self.agent)
        app.router.add_get("/version", self.version)
        app.router.add_get("/bench/stats", self.bench_stats)
        return app


async def serve(args: argparse.Namespace) -> None:
    offers = load_offers(Path(args.offers))
    stream = OfferStream(offers, per_event=args.per_event)
    master = FakeMaster(stream, args.mode, args.heartbeat)
    runner = web.AppRunner(master.app(), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = runner.addresses[0][1]
    agents_port = port if args.agents_api else args.agents_port
    if agents_port:  # the offers' url names where the agents' endpoints are
        for offer in offers:
            url = offer.get("url")
            if isinstance(url, dict):
                address = url.get("address", {})
                url["address"] = {**address, "ip": "127.0.0.1", "port": agents_port}
        master.stream = OfferStream(offers, per_event=args.per_event)
    print(json.dumps({"url": f"http://127.0.0.1:{port}"}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        master.generation += 1
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_master", description=__doc__)
    parser.add_argument("--offers", required=True, help="recorded offers (JSON list)")
    parser.add_argument("--mode", choices=("offers", "idle"), default="offers")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--per-event", type=int, default=100)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument(
        "--agents-api", action="store_true", help="serve the agents' GET_CONTAINERS too"
    )
    parser.add_argument(
        "--agents-port",
        type=int,
        default=0,
        help="the offers' url names this port (``bench.fake_agents`` serving the agents)",
    )
    args = parser.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
