"""What each instance's ``/metrics`` shows when Prometheus scrapes every one (real daemon
processes sharing one real PostgreSQL as their state, the simulator): its own process's figures
everywhere, the scheduler's state (pause flag, tasks, queue depth, nodes, resources) only where
``scale_scheduler_leader`` is 1. A standby used to show the pause flag it read at its start and
an empty queue, whatever the leader did since."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from daemonkit import Samples, task
from hakit import Instance, role_of, until
from pgserver import PgDatabase

from scale_scheduler.simulator import SimulatedCluster

SCHEDULER_STATE = (
    "scale_scheduler_scheduler_paused",
    "scale_scheduler_queue_depth",
    "scale_scheduler_tasks",
    "scale_scheduler_nodes",
    "scale_scheduler_scheduled_cpus",
    "scale_scheduler_cluster_cpus",
)


async def _metrics(instance: Instance) -> Samples:
    status, text = await instance.get("/metrics")
    assert status == 200, text
    return Samples(text)


async def test_the_scheduler_state_is_the_leaders_to_export_and_follows_a_failover(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    async with SimulatedCluster(agents=2, heartbeat_interval=0.2, seed=17) as sim:
        a = Instance(tmp_path, "a", sim, pg_database, shared_state=True)
        b = Instance(tmp_path, "b", sim, pg_database, shared_state=True)
        try:
            a.start()
            await a.process.wait_ready()
            await a.wait_online()
            b.start()
            await b.process.wait_ready()
            assert await role_of(b) == "standby"
            async with aiohttp.ClientSession() as session:
                # Through the standby, as an operator would: the leader commits and applies.
                async with session.patch(
                    b.url + "/scheduler/", json={"is_paused": True}
                ) as response:
                    assert response.status == 201, await response.text()
                async with session.post(
                    b.url + "/queue/", json=[task("one"), task("two")]
                ) as response:
                    assert response.status == 201, await response.text()

            leader = await _metrics(a)
            assert leader.get("scale_scheduler_leader") == 1
            assert leader.get("scale_scheduler_scheduler_paused") == 1
            assert leader.get("scale_scheduler_queue_depth") == 2
            assert leader.get("scale_scheduler_tasks", state="QUEUED") == 2
            assert "scale_scheduler_nodes" in leader.types

            standby = await _metrics(b)
            assert standby.get("scale_scheduler_leader") == 0
            # Not a stale copy (paused 0, queue 0, as read or loaded at its start): none at all.
            assert [name for name in SCHEDULER_STATE if name in standby.types] == []
            # Its own process's figures are there: its connection, counters, requests.
            assert standby.get("scale_scheduler_mesos_connection_state", state="DISCONNECTED") == 1
            assert standby.get("scale_scheduler_offers_received_total") == 0
            assert standby.find("scale_scheduler_api_request_duration_seconds_count")
            assert "process_cpu_seconds" in standby.types

            # The leader dies: b leads, loads the state from the database, and exports it.
            a.process.kill9()

            async def b_leads() -> bool:
                return await role_of(b) == "leader"

            await until(b_leads, 10, "b leads")
            await b.wait_online()
            taken_over = await _metrics(b)
            assert taken_over.get("scale_scheduler_leader") == 1
            assert taken_over.get("scale_scheduler_scheduler_paused") == 1
            assert taken_over.get("scale_scheduler_queue_depth") == 2
        finally:
            a.process.stop_quietly()
            b.process.stop_quietly()
