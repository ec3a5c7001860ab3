"""Fake Mesos agents' usage endpoints for the benchmarks: one process answering every agent.

``python -m bench.fake_agents [--containers N] [--port 0]`` prints one JSON line
``{"url": ..., "port": ...}`` once it listens, then serves until SIGTERM:

- ``POST /<pid>/api/v1`` (any ``slave(N)``): GET_CONTAINERS with ``containers`` containers, each
  using half a CPU since start-up (CPU time accruing), 128 MiB, 1 MiB of disk, frameworks
  ``fw-0``..``fw-2`` in turn;
- ``GET /bench/stats``: ``{"agent_calls": N}``.

Its own process, apart from the fake master's: real agents are other machines, and a master
that also served 2,000 agents' answers would slow the offer stream the benchmark measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

import msgspec
from aiohttp import web

AGENT_CONTAINERS = 10


class FakeAgents:
    def __init__(self, containers: int, framework_id: str | None = None) -> None:
        """``framework_id``: every container's (else ``fw-0``..``fw-2`` in turn)."""
        self.containers = containers
        self.framework_id = framework_id
        self.started = time.time()
        self.calls = 0

    def body(self, pid: str) -> bytes:
        now = time.time()
        cpu = 0.5 * (now - self.started)
        items = [
            {
                "framework_id": {"value": self.framework_id or f"fw-{i % 3}"},
                "executor_id": {"value": f"{pid}-{i}"},
                "executor_name": "Command Executor",
                "container_id": {"value": f"{pid}-c{i}"},
                "resource_statistics": {
                    "timestamp": now,
                    "processes": 1,
                    "threads": 1,
                    "cpus_user_time_secs": cpu * 0.8,
                    "cpus_system_time_secs": cpu * 0.2,
                    "cpus_limit": 1.1,
                    "mem_rss_bytes": 134217728,
                    "mem_total_bytes": 134217728,
                    "mem_limit_bytes": 301989888,
                    "disk_used_bytes": 1048576,
                },
            }
            for i in range(self.containers)
        ]
        return msgspec.json.encode(
            {"type": "GET_CONTAINERS", "get_containers": {"containers": items}}
        )

    async def api(self, request: web.Request) -> web.Response:
        await request.read()
        self.calls += 1
        return web.Response(
            body=self.body(request.match_info["pid"]), content_type="application/json"
        )

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"agent_calls": self.calls})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{pid}/api/v1", self.api)
        app.router.add_get("/bench/stats", self.stats)
        return app


async def serve(args: argparse.Namespace) -> None:
    agents = FakeAgents(args.containers)
    runner = web.AppRunner(agents.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = runner.addresses[0][1]
    print(json.dumps({"url": f"http://127.0.0.1:{port}", "port": port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_agents", description=__doc__)
    parser.add_argument("--containers", type=int, default=AGENT_CONTAINERS)
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
