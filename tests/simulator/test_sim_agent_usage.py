"""The agents' usage endpoints: GET_CONTAINERS over the v1 agent API and /monitor/statistics.

Each agent answers under its libprocess id on the agents' shared port, which the offers' ``url``
and GET_AGENTS's ``pid`` name, as a real master gives them.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import pytest
from sim_client import FAST, SchedulerClient, framework_info

from scale_scheduler.simulator import SimulatedCluster

MIB = 1024 * 1024
USAGE = {"sim.outcome": "RUNNING", "sim.cpus_used": "0.5", "sim.mem_used": "100"}


def agent_base(offer: dict[str, Any]) -> str:
    url = offer["url"]
    address = url["address"]
    return f"{url['scheme']}://{address['ip']}:{address['port']}{url['path']}"


async def get_containers(
    session: aiohttp.ClientSession, base: str, **kwargs: Any
) -> tuple[int, Any]:
    async with session.post(f"{base}/api/v1", json={"type": "GET_CONTAINERS"}, **kwargs) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def running_task(client: SchedulerClient, task_id: str, **labels: str) -> tuple[str, str]:
    """Launch a task that keeps running; returns its agent's base URL and its container id."""
    offer = (await client.next_event("OFFERS"))["offers"]["offers"][0]
    assert (await client.launch(offer, task_id, cpus=1.0, mem=256.0, labels=labels))[0] == 202
    await client.ack(await client.update("TASK_STARTING"))
    running = await client.update("TASK_RUNNING")
    await client.ack(running)
    return agent_base(offer), running["container_status"]["container_id"]["value"]


async def test_offers_and_get_agents_name_each_agents_endpoint(
    sim: SimulatedCluster, client: SchedulerClient, session: aiohttp.ClientSession
) -> None:
    offers = (await client.next_event("OFFERS"))["offers"]["offers"]
    paths = {o["agent_id"]["value"]: o["url"]["path"] for o in offers}
    assert sorted(paths.values()) == ["/slave(1)", "/slave(2)", "/slave(3)"]
    assert {o["url"]["address"]["port"] for o in offers} == {sim.pool.agent_port}
    async with session.post(f"{sim.url}/api/v1", json={"type": "GET_AGENTS"}) as r:
        agents = (await r.json())["get_agents"]["agents"]
    for agent in agents:
        pid_id, _, address = agent["pid"].partition("@")
        assert "/" + pid_id == paths[agent["agent_info"]["id"]["value"]]
        assert address == f"127.0.0.1:{sim.pool.agent_port}"


async def test_get_containers_reports_each_running_task(
    sim: SimulatedCluster, client: SchedulerClient, session: aiohttp.ClientSession
) -> None:
    base, container = await running_task(client, "busy", **USAGE)
    status, first = await get_containers(session, base)
    assert status == 200
    assert first["type"] == "GET_CONTAINERS"
    [entry] = first["get_containers"]["containers"]
    assert entry["container_id"] == {"value": container}
    assert entry["executor_id"] == {"value": "busy"}
    assert entry["framework_id"] == {"value": client.framework_id}
    stats = entry["resource_statistics"]
    assert stats["cpus_limit"] == pytest.approx(1.1)  # the command executor's 0.1 included
    assert stats["mem_rss_bytes"] == 100 * MIB
    assert stats["mem_limit_bytes"] == (256 + 32) * MIB
    await asyncio.sleep(0.2)  # time must pass between two samples for CPU time to accrue
    _, second = await get_containers(session, base)
    later = second["get_containers"]["containers"][0]["resource_statistics"]

    def cpu(s: dict[str, Any]) -> float:
        return float(s["cpus_user_time_secs"] + s["cpus_system_time_secs"])

    rate = (cpu(later) - cpu(stats)) / (later["timestamp"] - stats["timestamp"])
    assert rate == pytest.approx(0.5, abs=0.01)
    # Other agents run nothing.
    others = [a for a in sim.agents if f"/{a.pid_id}" not in base]
    _, empty = await get_containers(session, base.rsplit("/", 1)[0] + "/" + others[0].pid_id)
    assert empty["get_containers"]["containers"] == []


async def test_the_default_usage_is_a_share_of_the_reservation(
    client: SchedulerClient, session: aiohttp.ClientSession
) -> None:
    base, _ = await running_task(client, "plain", **{"sim.outcome": "RUNNING"})
    _, body = await get_containers(session, base)
    stats = body["get_containers"]["containers"][0]["resource_statistics"]
    assert stats["mem_rss_bytes"] == 128 * MIB  # task_mem_usage 0.5 of 256 MiB
    assert "disk_used_bytes" in stats  # the disk/du isolator is on by default


async def test_finished_tasks_have_no_container(
    client: SchedulerClient, session: aiohttp.ClientSession
) -> None:
    offer = (await client.next_event("OFFERS"))["offers"]["offers"][0]
    await client.launch(offer, "quick")
    for state in ("TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"):
        await client.ack(await client.update(state))
    _, body = await get_containers(session, agent_base(offer))
    assert body["get_containers"]["containers"] == []


async def test_monitor_statistics_is_paced_at_two_per_second(
    client: SchedulerClient, session: aiohttp.ClientSession
) -> None:
    base, _ = await running_task(client, "watched", **USAGE)
    loop = asyncio.get_running_loop()
    started = loop.time()
    bodies = []
    for _ in range(3):
        async with session.get(f"{base}/monitor/statistics") as r:
            assert r.status == 200
            bodies.append(await r.json())
    # The limiter lets one through now and one per half second after it: at least 1 s for 3.
    assert loop.time() - started >= 1.0
    entry = bodies[-1][0]
    assert entry["executor_id"] == "watched"
    assert entry["statistics"]["mem_rss_bytes"] == 100 * MIB


async def test_an_old_agent_has_no_v1_api_and_a_silent_one_never_answers(
    sim: SimulatedCluster, client: SchedulerClient, session: aiohttp.ClientSession
) -> None:
    base, _ = await running_task(client, "old", **USAGE)
    agent = sim.pool.by_index[int(base.rsplit("(", 1)[1].rstrip(")")) - 1]
    assert sim.set_agent_http(agent.id, "v0")
    status, _ = await get_containers(session, base)
    assert status == 404
    async with session.get(f"{base}/monitor/statistics.json") as r:
        assert r.status == 200
        assert (await r.json())[0]["executor_id"] == "old"
    assert sim.set_agent_http(agent.hostname, "silent")
    with pytest.raises(asyncio.TimeoutError):
        await get_containers(session, base, timeout=aiohttp.ClientTimeout(total=0.3))
    with pytest.raises(ValueError, match="unknown agent http mode"):
        sim.set_agent_http(agent.id, "sometimes")


async def test_a_task_with_a_bad_usage_label_is_an_error(client: SchedulerClient) -> None:
    offer = (await client.next_event("OFFERS"))["offers"]["offers"][0]
    await client.launch(offer, "bad", labels={"sim.cpus_used": "lots"})
    status = await client.update()
    assert status["state"] == "TASK_ERROR"
    assert "sim.cpus_used must be a number" in status["message"]


async def test_credentials_and_disk_isolation(session: aiohttp.ClientSession) -> None:
    creds = (("ops", "s3cret"),)
    async with SimulatedCluster(
        **FAST, credentials=creds, disk_usage_isolation=False, agents=1
    ) as sim:
        authorization = "Basic " + base64.b64encode(b"ops:s3cret").decode()
        async with aiohttp.ClientSession(headers={"Authorization": authorization}) as authed:
            c = SchedulerClient(authed, sim.url)
            assert await c.subscribe(framework_info(principal="ops")) == 200
            base, _ = await running_task(c, "private", **USAGE)
            status, _ = await get_containers(session, base)
            assert status == 401
            status, body = await get_containers(authed, base)
            assert status == 200
            stats = body["get_containers"]["containers"][0]["resource_statistics"]
            assert "disk_used_bytes" not in stats
            await c.close()


async def test_unknown_agents_and_calls(
    sim: SimulatedCluster, session: aiohttp.ClientSession
) -> None:
    base = f"http://127.0.0.1:{sim.pool.agent_port}"
    status, _ = await get_containers(session, f"{base}/slave(99)")
    assert status == 404
    status, _ = await get_containers(session, f"{base}/master")
    assert status == 404
    async with session.post(f"{base}/slave(1)/api/v1", json={"type": "LAUNCH_CONTAINER"}) as r:
        assert r.status == 400
    async with session.post(f"{base}/slave(1)/api/v1", data=b"{}") as r:
        assert r.status == 415
