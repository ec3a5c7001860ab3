"""End to end with ``mesos.driver: pymesos``: the daemon's own ``build_app(config)`` (store,
pymesos driver, scheduling core, API) against the simulated cluster, in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemonkit import Daemon, running_daemon, task
from pymesos_kit import require_pymesos

require_pymesos()

from scale_scheduler.daemon.mesos.pymesos_driver import PymesosDriver  # noqa: E402
from scale_scheduler.daemon.service.leader_guard import LeaderGuardedDriver  # noqa: E402

SIM = {"seed": 17}  # the kit's simulator settings, with this suite's seed


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path, agents=5, sim=SIM, driver="pymesos") as d:
        yield d
        await d.stop()
        assert d.sim.record.teardown_received is False


async def test_the_daemon_runs_on_pymesos_and_finishes_a_hundred_tasks(daemon: Daemon) -> None:
    core = daemon.core
    assert isinstance(core.driver, LeaderGuardedDriver)
    assert isinstance(core.driver.wrapped, PymesosDriver)
    status = await (await daemon.client.get("/status/")).json()
    assert status["scheduler"]["is_online"] is True
    assert status["master"]["port"] == int(daemon.sim.url.rsplit(":", 1)[1])
    ids = await daemon.submit([task(f"t{i}") for i in range(100)])
    await daemon.until(lambda: core.queue_depth == 0 and not core.board.tasks, timeout=60)
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
    await (await daemon.client.patch("/scheduler/", json={"is_paused": True})).read()
    ids = await daemon.submit([task(f"p{i}") for i in range(10)])
    await daemon.until(lambda: record.calls["SUPPRESS"] >= 1)
    await asyncio.sleep(0.5)  # nothing may launch over ten allocation cycles
    assert sum(record.launch_counts.values()) == 0
    assert core.queue_depth == 10
    waiting = await (await daemon.client.get(f"/tasks/{ids[0]}/")).json()
    assert waiting["waiting_reason"] == "the scheduler is paused"
    revives = record.calls["REVIVE"]
    await (await daemon.client.patch("/scheduler/", json={"is_paused": False})).read()
    await daemon.until(lambda: record.calls["REVIVE"] > revives)
    await daemon.until(lambda: core.queue_depth == 0 and not core.board.tasks)
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
    await daemon.until(lambda: core.queue_depth == 0 and not core.board.tasks, timeout=60)
    assert await daemon.states(ids) == ["FINISHED"] * 40
    assert sim.record.launched_more_than_once() == {}
    assert [f.id for f in sim.frameworks()] == [first_id]
