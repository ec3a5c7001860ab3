"""End to end with ``mesos.driver: pymesos``: the daemon's own ``build_app(config)`` (store,
pymesos driver, scheduling core, API) against the simulated cluster, in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pymesos_kit import require_pymesos

require_pymesos()

from scale_scheduler.api.app import build_app  # noqa: E402
from scale_scheduler.api.keys import CORE  # noqa: E402
from scale_scheduler.daemon.config import Config, parse_config  # noqa: E402
from scale_scheduler.daemon.pymesos_driver import PymesosDriver  # noqa: E402
from scale_scheduler.daemon.scheduler_core import SchedulerCore  # noqa: E402
from scale_scheduler.simulator import SimulatedCluster  # noqa: E402

SIM: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "allocation_interval": 0.05,
    "task_duration": 0.05,
    "task_start_delay": 0.02,
    "status_update_retry": 0.3,
    "agent_reregister_delay": 0.05,
    "default_refuse_seconds": 0.2,
    "seed": 17,
}


def pymesos_config(tmp_path: Path, master: str) -> Config:
    return parse_config(
        {
            "mesos": {
                "driver": "pymesos",
                "master": master,
                "user": "svc",
                "hostname": "sched.test",
                "backoff_initial": 0.05,
                "backoff_max": 0.2,
                "request_timeout": 5.0,
            },
            "state": {"path": str(tmp_path / "state.db")},
            "api": {"port": 0},
            "logging": {"format": "console", "level": "warning"},
            "scheduler": {
                "refuse_seconds": 0.2,
                "idle_refuse_seconds": 0.5,
                "revive_interval": 0.1,
                "launch_timeout": 5.0,
                "reconcile_retry": 0.2,
                "agents_refresh_interval": 0.5,
            },
        },
        environ={},
    )


class Daemon:
    """The in-process daemon on one database; ``stop`` then ``start`` is a process restart."""

    def __init__(self, tmp_path: Path, sim: SimulatedCluster) -> None:
        self.config = pymesos_config(tmp_path, sim.url)
        self.sim = sim
        self.client: TestClient[web.Request, web.Application] | None = None

    async def start(self) -> None:
        self.client = TestClient(TestServer(build_app(self.config)))
        await self.client.start_server()
        await self.until(lambda: self.core.driver.status.subscribed, timeout=10)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    @property
    def api(self) -> TestClient[web.Request, web.Application]:
        assert self.client is not None
        return self.client

    @property
    def core(self) -> SchedulerCore:
        return self.api.app[CORE]

    async def submit(self, tasks: list[dict[str, Any]]) -> list[int]:
        response = await self.api.post("/queue/", json=tasks)
        assert response.status == 201, await response.text()
        return [task["id"] for task in await response.json()]

    async def states(self, ids: list[int]) -> list[str]:
        out = []
        for task_id in ids:
            body = await (await self.api.get(f"/tasks/{task_id}/")).json()
            out.append(body["state"])
        return out

    async def until(self, predicate: Callable[[], bool], timeout: float = 20) -> None:
        await self.sim.wait_until(predicate, timeout=timeout, interval=0.02)


def task(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": "true", "cpus": 0.5, "mem": 64, **extra}


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with SimulatedCluster(agents=5, **SIM) as sim:
        d = Daemon(tmp_path, sim)
        await d.start()
        yield d
        await d.stop()
        assert sim.record.teardown_received is False


async def test_the_daemon_runs_on_pymesos_and_finishes_a_hundred_tasks(daemon: Daemon) -> None:
    core = daemon.core
    assert isinstance(core.driver, PymesosDriver)
    status = await (await daemon.api.get("/status/")).json()
    assert status["scheduler"]["is_online"] is True
    assert status["master"]["port"] == int(daemon.sim.url.rsplit(":", 1)[1])
    ids = await daemon.submit([task(f"t{i}") for i in range(100)])
    await daemon.until(lambda: core.queue_depth == 0 and not core.tracker.tasks, timeout=60)
    assert await daemon.states(ids) == ["FINISHED"] * 100
    record = daemon.sim.record
    assert record.launched_more_than_once() == {}
    assert sorted(record.launch_counts) == sorted(f"{i}-1" for i in ids)
    # Explicit acknowledgements only: each of the 300 agent updates once, from the core.
    assert record.calls["ACKNOWLEDGE"] >= 300
    ours = core.driver.status.framework_id
    await daemon.until(lambda: core.pipeline.suppressed)
    await daemon.until(
        lambda: not [o for o in daemon.sim.offers() if o["framework_id"]["value"] == ours]
    )


async def test_pause_holds_launches_and_unpause_revives(daemon: Daemon) -> None:
    core = daemon.core
    record = daemon.sim.record
    await (await daemon.api.patch("/scheduler/", json={"is_paused": True})).read()
    ids = await daemon.submit([task(f"p{i}") for i in range(10)])
    await daemon.until(lambda: record.calls["SUPPRESS"] >= 1)
    await asyncio.sleep(0.5)  # ten allocation cycles: nothing may launch
    assert sum(record.launch_counts.values()) == 0
    assert core.queue_depth == 10
    waiting = await (await daemon.api.get(f"/tasks/{ids[0]}/")).json()
    assert waiting["waiting_reason"] == "the scheduler is paused"
    revives = record.calls["REVIVE"]
    await (await daemon.api.patch("/scheduler/", json={"is_paused": False})).read()
    await daemon.until(lambda: record.calls["REVIVE"] > revives)
    await daemon.until(lambda: core.queue_depth == 0 and not core.tracker.tasks)
    assert await daemon.states(ids) == ["FINISHED"] * 10


async def test_a_restart_resubscribes_with_the_same_framework_id(daemon: Daemon) -> None:
    sim = daemon.sim
    first_id = daemon.core.driver.status.framework_id
    assert first_id is not None
    ids = await daemon.submit([task(f"r{i}", labels={"sim.duration": "0.6"}) for i in range(40)])
    await daemon.until(lambda: sum(sim.record.launch_counts.values()) >= 10)
    await daemon.stop()  # the process goes away; Mesos keeps the tasks running
    assert sim.record.teardown_received is False
    assert [f.id for f in sim.frameworks()] == [first_id]
    await daemon.start()
    core = daemon.core
    assert core.driver.status.framework_id == first_id
    assert sim.record.framework_infos[-1]["id"] == {"value": first_id}
    await daemon.until(lambda: core.queue_depth == 0 and not core.tracker.tasks, timeout=60)
    assert await daemon.states(ids) == ["FINISHED"] * 40
    assert sim.record.launched_more_than_once() == {}
    assert [f.id for f in sim.frameworks()] == [first_id]
