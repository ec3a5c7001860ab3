"""Operator API `POST /api/v1` in master.proto's Response shapes."""

from __future__ import annotations

from typing import Any

import aiohttp
from sim_client import SchedulerClient, framework_info

from scale_scheduler.simulator import SimulatedCluster


async def _op(session: aiohttp.ClientSession, url: str, call_type: str) -> dict[str, Any]:
    async with session.post(url + "/api/v1", json={"type": call_type}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["type"] == call_type
    return body[call_type.lower()]


async def test_get_agents_lists_total_resources(
    sim: SimulatedCluster, session: aiohttp.ClientSession
) -> None:
    agents = (await _op(session, sim.url, "GET_AGENTS"))["agents"]
    assert len(agents) == 3
    agent = agents[0]
    assert agent["active"] is True
    assert agent["agent_info"]["hostname"] == "sim-agent-0"
    total = {r["name"]: r for r in agent["total_resources"]}
    assert total["cpus"]["scalar"]["value"] == 4.0
    assert total["mem"]["scalar"]["value"] == 8192.0
    assert total["ports"]["ranges"]["range"] == [{"begin": 31000, "end": 32000}]
    assert agent["registered_time"]["nanoseconds"] > 0


async def test_get_tasks_and_frameworks(
    sim: SimulatedCluster, session: aiohttp.ClientSession, client: SchedulerClient
) -> None:
    offer = (await client.next_event("OFFERS"))["offers"]["offers"][0]
    await client.launch(offer, "op-task", labels={"sim.outcome": "RUNNING", "team": "x"})
    await client.ack(await client.update("TASK_STARTING"))
    await client.ack(await client.update("TASK_RUNNING"))
    tasks = await _op(session, sim.url, "GET_TASKS")
    (task,) = tasks["tasks"]
    assert task["task_id"] == {"value": "op-task"}
    assert task["framework_id"] == {"value": client.framework_id}
    assert task["agent_id"] == offer["agent_id"]
    assert task["state"] == "TASK_RUNNING"
    assert [s["state"] for s in task["statuses"]] == ["TASK_STARTING", "TASK_RUNNING"]
    assert {"key": "team", "value": "x"} in task["labels"]["labels"]
    frameworks = await _op(session, sim.url, "GET_FRAMEWORKS")
    (fw,) = frameworks["frameworks"]
    expected = dict(framework_info(), id={"value": client.framework_id})
    assert fw["framework_info"] == expected
    assert (fw["active"], fw["connected"], fw["recovered"]) == (True, True, False)
    assert fw["registered_time"]["nanoseconds"] > 0
    assert {r["name"] for r in fw["allocated_resources"]} == {"cpus", "mem"}

    await client.close()
    await sim.wait_until(lambda: not sim.framework(client.framework_id).connected, timeout=3)
    (fw,) = (await _op(session, sim.url, "GET_FRAMEWORKS"))["frameworks"]
    assert (fw["active"], fw["connected"]) == (False, False)


async def test_completed_tasks_after_terminal_ack(
    sim: SimulatedCluster, session: aiohttp.ClientSession, client: SchedulerClient
) -> None:
    offer = (await client.next_event("OFFERS"))["offers"]["offers"][0]
    await client.launch(offer, "done")
    for _ in range(3):
        await client.ack(await client.update())
    await sim.wait_until(lambda: sim.task("done") is None)
    tasks = await _op(session, sim.url, "GET_TASKS")
    assert tasks["tasks"] == []
    assert [t["state"] for t in tasks["completed_tasks"]] == ["TASK_FINISHED"]


async def test_get_master_and_health(sim: SimulatedCluster, session: aiohttp.ClientSession) -> None:
    master = await _op(session, sim.url, "GET_MASTER")
    assert master["master_info"]["port"] == sim.masters[0].port
    assert master["master_info"]["id"] == sim.masters[0].master_id
    assert await _op(session, sim.url, "GET_HEALTH") == {"healthy": True}
    async with session.get(sim.url + "/version") as resp:
        assert (await resp.json())["version"].startswith("1.")


async def test_operator_errors(sim: SimulatedCluster, session: aiohttp.ClientSession) -> None:
    async with session.post(sim.url + "/api/v1", json={"type": "FLY"}) as resp:
        assert resp.status == 400
    async with session.post(
        sim.url + "/api/v1", data=b"{}", headers={"Content-Type": "text/plain"}
    ) as resp:
        assert resp.status == 415
