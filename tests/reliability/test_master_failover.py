"""Master failover: two simulated masters elected through a real ZooKeeper, the real daemon
finding the leader with ``mesos.master: zk://...``. The leader steps down in the middle of
launches (and later the new leader is stopped outright): each time the daemon follows the new
leader, resubscribes with the same framework id and reconciles, and at the end every task is
accounted for exactly once (none lost, none launched twice, queue empty, database and API agree).
On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pgserver import PgDatabase
from reliability_kit import SIM, Daemon, audit, launches, task_body

from scale_scheduler.simulator import SimulatedCluster

TASKS = 1200


async def follow(daemon: Daemon, sim: SimulatedCluster, reconciles: int) -> None:
    """The daemon is subscribed to the current leader and has reconciled with it."""
    leader = sim.leader
    assert leader is not None
    await daemon.until_api(
        lambda s: s["scheduler"]["is_online"] and s["master"]["port"] == leader.port
    )
    await sim.wait_until(lambda: sim.record.calls["RECONCILE"] > reconciles, timeout=10)


@pytest.mark.slow
async def test_daemon_follows_the_leader_and_loses_nothing(
    zookeeper: str, tmp_path: Path, backend: PgDatabase | None
) -> None:
    zk = f"zk://{zookeeper}/mesos-{uuid.uuid4().hex[:8]}"
    async with SimulatedCluster(masters=2, agents=20, zk=zk, seed=4, **SIM) as sim:
        first, second = sim.masters
        assert sim.leader is first
        daemon = Daemon(tmp_path, zk, database=backend)
        try:
            await daemon.start()
            framework_id = await daemon.framework_id()
            # 0.3 s tasks on 160 slots: launches go on for several seconds.
            body = [task_body(f"f{i}", labels={"sim.duration": "0.3"}) for i in range(TASKS)]
            ids = await daemon.submit(body)

            await sim.wait_until(lambda: launches(sim) >= 200, timeout=30)
            reconciles = sim.record.calls["RECONCILE"]
            await sim.step_down(rejoin=True)  # first leaves the election, rejoins at the back
            await sim.wait_until(lambda: sim.leader is second, timeout=10)
            await follow(daemon, sim, reconciles)
            mark = launches(sim)
            await sim.wait_until(lambda: launches(sim) >= mark + 200, timeout=30)

            reconciles = sim.record.calls["RECONCILE"]
            assert launches(sim) < TASKS, "the run ended before the second failover"
            await sim.step_down(rejoin=False)  # the second leader goes away for good
            await sim.wait_until(lambda: sim.leader is first, timeout=10)
            await follow(daemon, sim, reconciles)

            states = await audit(daemon, sim, ids)
            assert len(states) == TASKS
            assert (await daemon.status())["queue_depth"] == 0
            assert [f.id for f in sim.frameworks()] == [framework_id]
            assert {info["id"]["value"] for info in sim.record.framework_infos[1:]} == {
                framework_id
            }
            detected = [e["master"] for e in daemon.events("mesos_leader_detected")]
            assert detected == [first.url, second.url, first.url]
            assert sim.record.teardown_received is False
            assert await daemon.close() == 0
        finally:
            await daemon.close()
