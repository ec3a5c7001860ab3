"""Several masters: one leader, 307/503 from the others, failover, ZooKeeper election."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import pytest
from sim_client import FAST, SchedulerClient, framework_info

from scale_scheduler.simulator import SimulatedCluster


async def test_non_leader_redirects_to_leader(session: aiohttp.ClientSession) -> None:
    async with SimulatedCluster(**FAST, masters=3) as sim:
        assert sim.leader is sim.masters[0]
        for follower in sim.masters[1:]:
            async with session.post(
                follower.url + "/api/v1/scheduler",
                json={"type": "SUBSCRIBE"},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 307
                assert (
                    resp.headers["Location"]
                    == f"//127.0.0.1:{sim.masters[0].port}/api/v1/scheduler"
                )
            async with session.post(
                follower.url + "/api/v1", json={"type": "GET_TASKS"}, allow_redirects=False
            ) as resp:
                assert resp.status == 307
                assert resp.headers["Location"].endswith(f":{sim.masters[0].port}/api/v1")


async def test_failover_keeps_tasks_and_the_new_leader_learns_them_from_agents(
    session: aiohttp.ClientSession,
) -> None:
    async with SimulatedCluster(**{**FAST, "agent_reregister_delay": 0.6}, masters=2) as sim:
        c = SchedulerClient(session, sim.url)
        assert await c.subscribe() == 200
        offer = (await c.next_event("OFFERS"))["offers"]["offers"][0]
        await c.launch(offer, "survivor", labels={"sim.outcome": "RUNNING"})
        await c.ack(await c.update("TASK_STARTING"))
        await c.ack(await c.update("TASK_RUNNING"))

        assert await sim.step_down() == 0
        assert sim.leader is sim.masters[1]
        with pytest.raises(EOFError):
            await c.next_event("NEVER", timeout=2)
        # The old leader redirects; a resubscription with the same id is admitted.
        again = SchedulerClient(session, sim.url)
        assert await again.subscribe(framework_info(id={"value": c.framework_id})) == 307
        again = SchedulerClient(session, sim.masters[1].url)
        assert await again.subscribe(framework_info(id={"value": c.framework_id})) == 200
        assert again.framework_id == c.framework_id
        # Agents have not re-registered yet: Mesos stays silent about their tasks.
        item = {"task_id": {"value": "survivor"}, "agent_id": offer["agent_id"]}
        await again.call("RECONCILE", {"tasks": [item]})
        with pytest.raises(TimeoutError):
            await again.update(timeout=0.2)
        await sim.wait_until(lambda: all(a.master is sim.masters[1] for a in sim.agents), 3)
        await again.call("RECONCILE", {"tasks": [item]})
        status = await again.update()
        assert status["state"] == "TASK_RUNNING"
        assert status["reason"] == "REASON_RECONCILIATION"
        assert sim.record.launch_counts["survivor"] == 1
        assert sim.record.launched_more_than_once() == {}
        # The task's resources stay allocated under the new leader.
        agent = next(a for a in sim.agents if a.id == offer["agent_id"]["value"])
        assert agent.allocated.scalar("cpus") == pytest.approx(0.5)
        offered = [o for o in sim.offers() if o["agent_id"] == offer["agent_id"]]
        assert all(
            r["scalar"]["value"] == 3.5
            for o in offered
            for r in o["resources"]
            if r["name"] == "cpus"
        )
        await again.close()


async def test_unacknowledged_updates_reach_the_new_leader(session: aiohttp.ClientSession) -> None:
    async with SimulatedCluster(**FAST, masters=2) as sim:
        c = SchedulerClient(session, sim.url)
        await c.subscribe()
        offer = (await c.next_event("OFFERS"))["offers"]["offers"][0]
        await c.launch(offer, "t", labels={"sim.outcome": "RUNNING"})
        starting = await c.update("TASK_STARTING")  # never acknowledged
        await sim.step_down()
        again = SchedulerClient(session, sim.masters[1].url)
        await again.subscribe(framework_info(id={"value": c.framework_id}))
        resent = await again.update(timeout=5)
        assert resent["uuid"] == starting["uuid"]
        await again.close()


async def test_new_leader_reports_recovered_frameworks(session: aiohttp.ClientSession) -> None:
    async with SimulatedCluster(**FAST, masters=2) as sim:
        c = SchedulerClient(session, sim.url)
        await c.subscribe()
        offer = (await c.next_event("OFFERS"))["offers"]["offers"][0]
        await c.launch(offer, "t", labels={"sim.outcome": "RUNNING"})
        await c.update("TASK_STARTING")
        await sim.step_down()
        await sim.wait_until(lambda: sim.framework(c.framework_id) is not None, 3)
        async with session.post(
            sim.masters[1].url + "/api/v1", json={"type": "GET_FRAMEWORKS"}
        ) as r:
            (fw,) = (await r.json())["get_frameworks"]["frameworks"]
        assert fw["recovered"] is True
        assert fw["connected"] is False
        assert fw["framework_info"]["name"] == "sim-test"


async def _zk_children(hosts: str, path: str) -> dict[str, dict[str, object]]:
    from kazoo.client import KazooClient

    def read() -> dict[str, dict[str, object]]:
        client = KazooClient(hosts=hosts, timeout=10)
        client.start(10)
        try:
            return {c: json.loads(client.get(f"{path}/{c}")[0]) for c in client.get_children(path)}
        finally:
            client.stop()
            client.close()

    return await asyncio.to_thread(read)


async def test_zookeeper_election(zookeeper: str, session: aiohttp.ClientSession) -> None:
    path = f"/sim-{uuid.uuid4().hex[:8]}"
    async with SimulatedCluster(**FAST, masters=2, zk=f"zk://{zookeeper}{path}") as sim:
        assert sim.leader is sim.masters[0]
        nodes = await _zk_children(zookeeper, path)
        assert len(nodes) == 2
        assert all(name.startswith("json.info_") for name in nodes)
        lowest = min(nodes, key=lambda n: int(n.rsplit("_", 1)[1]))
        assert nodes[lowest]["address"] == {
            "hostname": "127.0.0.1",
            "ip": "127.0.0.1",
            "port": sim.masters[0].port,
        }
        assert nodes[lowest]["id"] == sim.masters[0].master_id

        await sim.step_down()
        await sim.wait_until(lambda: sim.leader is sim.masters[1], timeout=10)
        await sim.wait_until(lambda: sim.masters[0].leader_info is not None, timeout=10)
        async with session.post(
            sim.masters[0].url + "/api/v1/scheduler",
            json={"type": "SUBSCRIBE"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 307
            assert resp.headers["Location"] == f"//127.0.0.1:{sim.masters[1].port}/api/v1/scheduler"
        c = SchedulerClient(session, sim.masters[1].url)
        assert await c.subscribe() == 200
        await c.next_event("OFFERS")
        await c.close()

        await sim.step_down(rejoin=False)  # master 1 leaves: master 0 (re-joined) leads
        await sim.wait_until(lambda: sim.leader is sim.masters[0], timeout=10)
        await sim.step_down(rejoin=False)
        await sim.wait_until(lambda: sim.leader is None and sim.masters[1].leader_info is None, 10)
        assert await _zk_children(zookeeper, path) == {}
        async with session.post(sim.masters[1].url + "/api/v1/scheduler", json={}) as resp:
            assert resp.status == 503
