"""Three real daemon processes on one real PostgreSQL state, against the simulator: a pause
written through a standby acts on the leader's next offer pass (issue 16, scenario 4), and a
PostgreSQL restart under load (scenario 3; ``pg_terminate_backend`` of the leader's sessions is
one of the faults of ``test_failover_processes``' repeated failovers)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path
from typing import Any

import aiohttp
from auditkit import SIM, audit
from hakit import (
    LEASE,
    Fleet,
    Instance,
    Ledger,
    live_subscription,
    restart_exited,
    role_of,
    shared_fleet,
    submit_forever,
    task_body,
    until,
)
from pgserver import PgDatabase

from scale_scheduler.daemon.service.exit_codes import ExitCode
from scale_scheduler.simulator import AgentSpec, SimulatedCluster

WATCH_SECONDS = 1.5
"""How long nothing may launch after a pause: offers come every 0.05 s (SIM's allocation
interval) and a refused one returns after 0.2 s, so many offer passes fall within it."""


async def _standby(fleet: Fleet) -> Instance:
    leader = await fleet.leader()
    standby = next(i for i in fleet.instances if i is not leader)
    assert await role_of(standby) == "standby"
    return standby


async def _send(method: str, url: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, json=body) as r:
        return r.status, await r.json() if r.content_type == "application/json" else await r.text()


async def _queue(fleet: Fleet, count: int) -> None:
    leader = await fleet.leader()
    status, body = await _send(
        "POST", leader.url + "/queue/", [task_body(f"t{i}") for i in range(count)]
    )
    assert status == 201, body


async def test_a_pause_through_a_standby_stops_every_launch_once_answered(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    agent = AgentSpec(cpus=4, mem=8192)
    async with (
        SimulatedCluster(agents=4, agent=agent, seed=41, **{**SIM, "task_duration": 0.5}) as sim,
        shared_fleet(tmp_path, pg_database, sim) as (fleet, _),
    ):
        standby = await _standby(fleet)
        loop = asyncio.get_running_loop()
        await _queue(fleet, 400)
        await sim.wait_until(lambda: len(sim.record.launch_log) >= 20, timeout=30)

        status, body = await _send("PATCH", standby.url + "/scheduler/", {"is_paused": True})
        answered = loop.time()
        assert (status, body) == (201, {"is_paused": True})
        await asyncio.sleep(WATCH_SECONDS)  # time must pass: nothing may launch during it
        late = [entry for entry in sim.record.launch_log if entry[0] > answered]
        assert late == [], f"{len(late)} launches after the pause was answered"
        status, view = await _send("GET", standby.url + "/status/", None)
        assert view["queue_depth"] > 0
        assert view["scheduler"]["is_paused"] is True

        # The check can fail: once unpaused (through the other standby) launches resume.
        leader = await fleet.leader()
        other = next(i for i in fleet.instances if i not in (standby, leader))
        status, _ = await _send("PATCH", other.url + "/scheduler/", {"is_paused": False})
        assert status == 201
        resumed = loop.time()
        await sim.wait_until(lambda: sim.record.launch_log[-1][0] > resumed, timeout=10)


async def test_a_node_paused_through_a_standby_gets_no_launch_once_answered(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    agent = AgentSpec(cpus=4, mem=8192)
    async with (
        SimulatedCluster(agents=4, agent=agent, seed=43, **{**SIM, "task_duration": 0.5}) as sim,
        shared_fleet(tmp_path, pg_database, sim) as (fleet, _),
    ):
        standby = await _standby(fleet)
        loop = asyncio.get_running_loop()
        await _queue(fleet, 400)
        hostname = sim.agents[0].hostname
        await sim.wait_until(
            lambda: any(host == hostname for _, _, host in sim.record.launch_log), timeout=30
        )
        status, nodes = await _send("GET", standby.url + f"/nodes/?hostname={hostname}", None)
        assert status == 200
        assert len(nodes["results"]) == 1, nodes
        node = nodes["results"][0]["id"]

        status, body = await _send("PATCH", standby.url + f"/nodes/{node}/", {"is_paused": True})
        answered = loop.time()
        assert status == 200, body
        assert body["is_paused"] is True
        await asyncio.sleep(WATCH_SECONDS)  # time must pass: nothing may launch there during it
        after = [host for when, _, host in sim.record.launch_log if when > answered]
        assert hostname not in after, f"{after.count(hostname)} launches on the paused node"
        assert after, "no launch elsewhere: the other nodes must keep working"


DOWN_SECONDS = 6.0
"""Longer than the lease (2 s) and than the state's wait for a lost database (5 s)."""


async def test_a_postgresql_restart_under_load_settles_on_one_leader_and_loses_nothing(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    """The server stops (fast: sessions ended) for longer than the lease while a client
    submits through any instance; instances that stand down are started again as systemd
    would. Writes meet the outage as 503; afterwards exactly one instance leads, subscribed
    with the one framework id, every acknowledged task is stored, and the audit holds."""
    server = pg_database.server
    agent = AgentSpec(cpus=4, mem=8192)
    async with (
        SimulatedCluster(agents=4, agent=agent, seed=47, **SIM) as sim,
        shared_fleet(tmp_path, pg_database, sim) as (fleet, framework_id),
    ):
        ledger, stop, exits = Ledger(), asyncio.Event(), list[int]()
        client = asyncio.create_task(submit_forever(fleet, ledger, stop, random.Random(47)))
        keeper = asyncio.create_task(restart_exited(fleet, stop, exits))
        await sim.wait_until(lambda: len(ledger.acked) >= 60, timeout=30)
        await asyncio.to_thread(server.stop, "fast")
        acked_before_outage = len(ledger.acked)
        await asyncio.sleep(DOWN_SECONDS)  # time must pass: the outage is the scenario
        refused_in_outage = ledger.refused
        await asyncio.to_thread(server.start)
        await sim.wait_until(lambda: len(ledger.acked) >= acked_before_outage + 60, timeout=60)
        stop.set()
        await asyncio.gather(client, keeper)

        assert refused_in_outage > 0, "no write was answered 503 during the outage"
        # Standing down (7), or a start that found no database (3): both restarted by systemd.
        assert set(exits) <= {ExitCode.DEPOSED, ExitCode.STORE_ERROR}, exits
        leader = await fleet.leader()  # leadership settled on exactly one instance
        assert live_subscription(sim) is not None
        _, status = await leader.get("/status/")
        assert status["scheduler"]["is_online"] is True
        stored = {int(i): str(n) for i, n in await fleet.db("SELECT id, name FROM tasks")}
        ledger.check_against(stored)
        await audit(fleet, sim, stored)
        assert [fw.id for fw in sim.frameworks()] == [framework_id]
        assert sim.record.overlapping_subscriptions() == []
        assert sim.record.calls_after_takeover() == []


async def test_a_leader_stopped_inside_its_write_holds_no_takeover_back(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    """SIGSTOP while the leader's write is inside its fenced transaction: a row lock the test
    holds keeps the write there until the leader is stopped; released, the server finishes the
    statement and the stopped leader's session sits idle in its transaction, holding the share
    lock on the leadership row that every new term must wait for. The server ends that session
    once the lease has passed (idle_in_transaction_session_timeout): a standby takes over,
    the old leader exits 7 on SIGCONT, and its write never commits."""
    async with (
        SimulatedCluster(agents=1, seed=53, **SIM) as sim,
        shared_fleet(tmp_path, pg_database, sim) as (fleet, framework_id),
    ):
        leader = await fleet.leader()
        proc = leader.process.proc
        assert proc is not None
        old = live_subscription(sim)
        blocker, watcher = await pg_database.connect(), await pg_database.connect()
        try:
            held = blocker.transaction()
            await held.start()
            await blocker.execute("SELECT * FROM scheduler WHERE id = 1 FOR UPDATE")
            patch = asyncio.create_task(
                _send("PATCH", leader.url + "/scheduler/", {"is_paused": True})
            )

            async def write_waits() -> bool:
                # Another session than the blocker's: pg_stat_activity is read once per
                # transaction, and the blocker's would keep showing its first snapshot.
                rows = await watcher.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'UPDATE scheduler%'"
                )
                return len(rows) == 1

            await until(write_waits, 10, "the leader's write waits on the row lock")
            os.kill(proc.pid, signal.SIGSTOP)
            await held.rollback()
        finally:
            await blocker.close()
            await watcher.close()
        others = [i for i in fleet.instances if i is not leader]

        async def taken_over() -> bool:
            if live_subscription(sim) in (None, old):
                return False
            return any([await role_of(i) == "leader" for i in others])

        await until(taken_over, LEASE + 6, "a standby takes over from the stopped leader")
        os.kill(proc.pid, signal.SIGCONT)
        assert await leader.exit_code() == ExitCode.DEPOSED, leader.process.logs()
        answer = await asyncio.gather(patch, return_exceptions=True)
        assert not (isinstance(answer[0], tuple) and answer[0][0] == 201), answer
        assert await fleet.db("SELECT is_paused FROM scheduler") == [(False,)]
        assert [fw.id for fw in sim.frameworks()] == [framework_id]
        assert sim.record.overlapping_subscriptions() == []
        assert sim.record.calls_after_takeover() == []
