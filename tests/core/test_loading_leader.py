"""A leader elected while standing by serves its API while it loads its state: until the load is
done it answers writes, and the reads it serves from memory, 503 with ``Retry-After`` (a standby
forwarding to it returns that answer unchanged), never from the empty memory of a core that has
not loaded (task ids counted from 1 again, no nodes). Its ``/metrics`` leaves the scheduler's
state out until then too, rather than show an empty queue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from corekit import Clock, FakeDriver
from daemonkit import scrape

from scale_scheduler.api.app import FACADE, SCHEDULER, SCHEDULER_CORE, STATE, build_app
from scale_scheduler.daemon.scheduling.scheduler_core import SchedulerCore
from scale_scheduler.daemon.service.config import Config

Client = TestClient[web.Request, web.Application]

TASK = {"name": "t", "command": "true", "cpus": 1, "mem": 64}


@pytest.fixture
async def client(
    core_config: Config,
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> Client:
    app = build_app(core_config, connect_mesos=False)

    async def core_context(app: web.Application) -> AsyncIterator[None]:
        # Attached but not started: a new leader between its election and the end of its load.
        core = SchedulerCore(core_config, app[STATE], app[SCHEDULER], FakeDriver(), Clock())
        app[SCHEDULER_CORE] = core
        app[FACADE].attach_core(core)
        yield
        await core.stop()

    app.cleanup_ctx.append(core_context)
    return await aiohttp_client(app)


async def test_writes_and_memory_reads_wait_for_the_load(client: Client) -> None:
    core: SchedulerCore = client.app[SCHEDULER_CORE]  # type: ignore[index]
    for method, path, body in (
        ("POST", "/queue/", TASK),
        ("DELETE", "/tasks/1/", None),
        ("PATCH", "/nodes/1/", {"is_paused": True}),
        ("GET", "/nodes/", None),
        ("GET", "/queue/", None),
    ):
        response = await client.request(method, path, json=body)
        assert response.status == 503, (method, path, await response.text())
        assert response.content_type == "text/plain"
        assert response.headers["Retry-After"] == "1"
        assert "loading its state as a new leader" in await response.text()
    # The pause flag is not memory the load fills: it is written and answered as ever.
    response = await client.patch("/scheduler/", json={"is_paused": True})
    assert response.status == 201
    loading = await scrape(client)
    assert loading.get("scale_scheduler_leader") == 1
    assert "scale_scheduler_queue_depth" not in loading.types
    assert "scale_scheduler_scheduler_paused" not in loading.types
    await core.start()
    response = await client.post("/queue/", json=TASK)
    assert response.status == 201, await response.text()
    loaded = await scrape(client)
    assert loaded.get("scale_scheduler_queue_depth") == 1
    assert loaded.get("scale_scheduler_scheduler_paused") == 1
    response = await client.get("/nodes/")
    assert response.status == 200
