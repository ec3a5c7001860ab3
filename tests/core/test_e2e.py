"""End to end: the API app with the native driver and the scheduling core against the simulated
Mesos cluster. Throughput, pause, node pause, cancel/kill/retry and a restart mid-run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemonkit import Daemon, running_daemon, task

from scale_scheduler.api.app import STORE

SIM = {"seed": 5}  # the kit's simulator settings, with this suite's seed


def sim_labels(duration: float | None = None, outcome: str | None = None) -> dict[str, str]:
    labels = {}
    if duration is not None:
        labels["sim.duration"] = str(duration)
    if outcome is not None:
        labels["sim.outcome"] = outcome
    return labels


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path, agents=20, sim=SIM) as d:
        yield d


async def test_thousand_tasks_on_twenty_agents(daemon: Daemon) -> None:
    ids: list[int] = []
    for start in range(0, 1000, 250):
        ids += await daemon.submit([task(f"t{i}") for i in range(start, start + 250)])
    assert len(set(ids)) == 1000
    core = daemon.core
    await daemon.until(lambda: core.queue_depth == 0 and not core.board.tasks, timeout=60)
    assert await daemon.count("FINISHED") == 1000
    assert await daemon.count("QUEUED") == 0
    record = daemon.sim.record
    assert record.launched_more_than_once() == {}
    assert sorted(record.launch_counts) == sorted(f"{i}-1" for i in ids)
    ours = core.driver.status.framework_id
    # Nothing left to launch: no offer is held, and the framework is suppressed.
    await daemon.until(
        lambda: not [o for o in daemon.sim.offers() if o["framework_id"]["value"] == ours]
    )
    await daemon.until(lambda: core.pipeline.suppressed)
    status = await (await daemon.client.get("/status/")).json()
    assert status["queue_depth"] == 0
    assert status["resources"]["total"]["cpus"] == 80.0
    assert status["resources"]["scheduled"] == {"cpus": 0.0, "mem": 0.0, "disk": 0.0}
    hosts = {node.hostname for node in core.nodes.by_id.values()}
    assert len(hosts) == 20


async def test_pause_stops_launches_suppresses_and_unpause_revives(daemon: Daemon) -> None:
    client = daemon.client
    assert client is not None
    core = daemon.core
    record = daemon.sim.record

    def launches() -> int:
        return sum(record.launch_counts.values())

    # 400 tasks of 0.3 s on 160 slots: capacity keeps freeing up while work stays queued.
    ids = await daemon.submit([task(f"p{i}", labels=sim_labels(duration=0.3)) for i in range(400)])
    await daemon.until(lambda: launches() >= 100)
    suppressed = record.calls["SUPPRESS"]
    response = await client.patch("/scheduler/", json={"is_paused": True})
    assert response.status == 201
    await daemon.until(lambda: record.calls["SUPPRESS"] > suppressed)
    ours = core.driver.status.framework_id

    def offers_held() -> list[dict[str, Any]]:
        return [o for o in daemon.sim.offers() if o["framework_id"]["value"] == ours]

    # Suppressed: no new offers. Once none is outstanding, the pass in flight at the pause
    # is over too, and nothing is left to launch on.
    await daemon.until(lambda: not offers_held())
    frozen = launches()
    await asyncio.sleep(0.7)  # nothing may launch over two task lifetimes while agents free up
    assert launches() == frozen
    assert 0 < core.queue_depth == await daemon.count("QUEUED")
    assert offers_held() == []
    queued = await (await client.get("/queue/?page_size=1")).json()
    assert queued["results"][0]["waiting_reason"] == "the scheduler is paused"
    revives = record.calls["REVIVE"]
    await client.patch("/scheduler/", json={"is_paused": False})
    await daemon.until(lambda: record.calls["REVIVE"] > revives)
    await daemon.until(lambda: core.queue_depth == 0 and not core.board.tasks, timeout=60)
    assert await daemon.count("FINISHED") == 400
    assert record.launched_more_than_once() == {}
    assert sorted(record.launch_counts) == sorted(f"{i}-1" for i in ids)


async def test_offers_arriving_while_paused_are_declined(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, agents=2, sim=SIM) as d:
        sim = d.sim
        try:
            core = d.core
            assert d.client is not None
            await d.submit([task("huge", cpus=100)])  # fits nowhere: offers keep coming
            await d.until(lambda: core.pipeline.passes > 0)
            # The master keeps offering although we suppress: each offer must be declined.
            sim.fail_calls(500, "SUPPRESS")
            await d.client.patch("/scheduler/", json={"is_paused": True})
            await d.submit([task("x")])

            def declined_paused() -> bool:
                last = core.pipeline.last_pass
                return last is not None and "SCHEDULER_PAUSED" in last.decline_reasons

            await d.until(declined_paused, timeout=10)
            assert sim.record.calls["ACCEPT"] == 0
            assert core.queue_depth == 2
            sim.clear_call_faults()
            await d.client.patch("/scheduler/", json={"is_paused": False})
            await d.until(lambda: sim.record.calls["ACCEPT"] == 1, timeout=10)
        finally:
            await d.stop()


async def test_node_pause_leaves_other_nodes_working(daemon: Daemon) -> None:
    client = daemon.client
    assert client is not None
    core = daemon.core
    await daemon.until(lambda: len(core.nodes.by_id) == 20)
    target = (await (await client.get("/nodes/?hostname=sim-agent-0")).json())["results"][0]
    body = {"is_paused": True, "pause_reason": "maintenance"}
    assert (await client.patch(f"/nodes/{target['id']}/", json=body)).status == 200
    await client.patch("/scheduler/", json={"is_paused": True})
    await client.patch("/scheduler/", json={"is_paused": False})
    node = await (await client.get(f"/nodes/{target['id']}/")).json()
    assert (node["is_paused"], node["pause_reason"], node["state"]) == (
        True,
        "maintenance",
        "PAUSED",
    )
    ids = await daemon.submit([task(f"n{i}") for i in range(300)])
    await daemon.until(lambda: core.queue_depth == 0 and not core.board.tasks, timeout=60)
    hosts = [(await daemon.task(i))["hostname"] for i in ids[::10]]
    assert "sim-agent-0" not in hosts
    row = await daemon.app[STORE].fetchone(
        "SELECT COUNT(*) FROM tasks WHERE hostname = 'sim-agent-0'"
    )
    assert row == (0,)
    assert await daemon.count("FINISHED") == 300


async def test_cancel_kill_and_retries(daemon: Daemon) -> None:
    client = daemon.client
    assert client is not None
    core = daemon.core
    record = daemon.sim.record
    (runner,) = await daemon.submit([task("runner", labels=sim_labels(outcome="RUNNING"))])
    (flaky,) = await daemon.submit(
        [task("flaky", max_attempts=3, labels=sim_labels(outcome="FAILED"))]
    )
    (huge,) = await daemon.submit([task("huge", cpus=500)])
    await daemon.until(
        lambda: (
            core.board.tasks.get(runner) is not None
            and core.board.tasks[runner].state.value == "RUNNING"
        )
    )
    cancel = await client.delete(f"/tasks/{huge}/")
    assert cancel.status == 200
    assert (await cancel.json())["state"] == "CANCELED"
    kill = await client.delete(f"/tasks/{runner}/")
    assert kill.status == 202
    await daemon.until(lambda: runner not in core.board.tasks and flaky not in core.board.tasks)
    assert (await daemon.task(runner))["state"] == "KILLED"
    flaky_view = await daemon.task(flaky)
    assert flaky_view["state"] == "FAILED"
    assert flaky_view["attempts"] == 3
    assert flaky_view["failures"] == 3
    assert [record.launch_counts[f"{flaky}-{n}"] for n in (1, 2, 3)] == [1, 1, 1]
    assert record.launched_more_than_once() == {}
    assert core.queue_depth == 0
    assert (await client.delete("/tasks/999999/")).status == 404


async def test_restart_mid_run_loses_nothing_and_relaunches_nothing(daemon: Daemon) -> None:
    record = daemon.sim.record
    # 20 agents x 8 slots = 160 at a time; 400 tasks of 0.6 s leave work queued and running.
    ids = await daemon.submit([task(f"r{i}", labels=sim_labels(duration=0.6)) for i in range(400)])
    core = daemon.core
    await daemon.until(lambda: sum(record.launch_counts.values()) >= 100)
    reconciles = record.calls["RECONCILE"]
    await daemon.stop()  # the process goes away; Mesos keeps the tasks running
    queued_at_stop = await count_in(daemon, "QUEUED")
    assert queued_at_stop > 0
    await daemon.start()
    core = daemon.core
    assert core.queue_depth == queued_at_stop  # nothing queued was lost
    await daemon.until(lambda: record.calls["RECONCILE"] > reconciles)
    await daemon.until(lambda: core.queue_depth == 0 and not core.board.tasks, timeout=60)
    assert await daemon.count("FINISHED") == 400
    assert record.launched_more_than_once() == {}
    assert sorted(record.launch_counts) == sorted(f"{i}-1" for i in ids)


async def count_in(daemon: Daemon, state: str) -> int:
    from scale_scheduler.state.store import Store

    store = await Store.open(daemon.config.state.path)
    try:
        row = await store.fetchone("SELECT COUNT(*) FROM tasks WHERE state = ?", (state,))
    finally:
        await store.close()
    assert row is not None
    return int(row[0])
