"""``serve()`` in-process: on SIGTERM the API stops accepting connections, a request already being
handled finishes its write, and only then does the store close."""

from __future__ import annotations

import asyncio
import os
import signal
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from scale_scheduler.api.app import SCHEDULER, build_app
from scale_scheduler.daemon.service.exit_codes import ExitCode
from scale_scheduler.daemon.service.service import serve
from scale_scheduler.state.scheduler import SchedulerRepository
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.store import Store


async def _refused(url: str) -> bool:
    parts = urlsplit(url)
    try:
        _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def test_sigterm_finishes_the_write_in_flight_and_refuses_new_connections(
    make_config: object,
) -> None:
    config = make_config()  # type: ignore[operator]
    app = build_app(config, connect_mesos=False)
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_write(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        state = await request.app[SCHEDULER].set_paused(True)
        return web.json_response({"is_paused": state.is_paused})

    app.router.add_post("/slow-write/", slow_write)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(config, app=app, on_ready=ready.set_result))
    url = await asyncio.wait_for(ready, 10)

    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.create_task(session.post(url + "slow-write/"))
        await asyncio.wait_for(entered.wait(), 10)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(200):
            if await _refused(url):
                break
            await asyncio.sleep(0.01)  # poll interval of this wait on a condition
        else:
            raise AssertionError("the API still accepts connections after SIGTERM")
        assert not server.done()
        release.set()
        response = await asyncio.wait_for(in_flight, 10)
        assert response.status == 200
        assert await response.json() == {"is_paused": True}
        response.release()

    assert await asyncio.wait_for(server, 10) is ExitCode.OK
    store = await Store.open(config.state.path)
    try:
        assert (await SchedulerRepository(SqliteState(store)).ensure_and_load()).is_paused is True
    finally:
        await store.close()
