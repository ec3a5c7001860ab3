"""B4's peer: a bare aiohttp JSON endpoint, nothing else on its loop.

``python -m bench.bare_api`` listens on a free loopback port, prints ``{"url": ...}`` and answers
``GET /status/`` with a fixed JSON body the size and shape of the daemon's ``/status/``, encoded
per request as the daemon does (msgspec), until SIGTERM/SIGINT. No middleware, no access log.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import msgspec
from aiohttp import web

BODY = {
    "master": {"hostname": "127.0.0.1", "port": 5050, "is_online": True},
    "scheduler": {"hostname": "bench-scheduler", "is_online": True, "is_paused": False},
    "queue_depth": 0,
    "resources": {
        "total": {"cpus": 64000.0, "mem": 262144000.0, "disk": 2000000000.0},
        "scheduled": {"cpus": 0.0, "mem": 0.0, "disk": 0.0},
        "used": {"cpus": 0.0, "mem": 0.0, "disk": 0.0},
    },
}
_encode = msgspec.json.Encoder().encode


async def status(request: web.Request) -> web.Response:
    return web.Response(body=_encode(BODY), content_type="application/json")


async def serve() -> None:
    app = web.Application()
    app.router.add_get("/status/", status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(json.dumps({"url": f"http://127.0.0.1:{runner.addresses[0][1]}"}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> int:
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
