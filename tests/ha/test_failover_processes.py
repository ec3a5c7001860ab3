"""Failover between real daemon processes electing their leader in a real PostgreSQL, against
the simulator (see hakit for what is real and what stands in for the PostgreSQL state)."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from daemonkit import Samples
from hakit import LEASE, Instance, live_subscription, role_of, subscribed_framework, until
from pgserver import PgDatabase

from scale_scheduler.simulator import SimulatedCluster


@asynccontextmanager
async def _cluster(
    tmp_path: Path, db: PgDatabase, names: str = "abc"
) -> AsyncIterator[tuple[SimulatedCluster, list[Instance], str]]:
    """The first instance leads and registers the framework; the others start as standbys
    from a copy of its database. Yields the simulator, the instances and the framework id."""
    async with SimulatedCluster(agents=2, heartbeat_interval=0.2, seed=11) as sim:
        instances = [Instance(tmp_path, name, sim, db) for name in names]
        try:
            first = instances[0]
            first.start()
            await first.process.wait_ready()
            await first.wait_online()
            framework_id = subscribed_framework(sim)
            assert framework_id is not None
            for other in instances[1:]:
                other.copy_state_from(first)
                other.start()
            for other in instances[1:]:
                await other.process.wait_ready()
            yield sim, instances, framework_id
        finally:
            for instance in instances:
                proc = instance.process.proc
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                instance.process.stop_quietly()


async def test_three_instances_one_leader_and_kill_9_hands_over(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    async with _cluster(tmp_path, pg_database) as (sim, (a, b, c), framework_id):
        assert [await role_of(i) for i in (a, b, c)] == ["leader", "standby", "standby"]
        for standby in (b, c):
            status, body = await standby.get("/status/")  # the leader's, forwarded
            assert status == 200
            assert body["scheduler"] == {
                "hostname": "a.test",
                "is_online": True,
                "is_paused": False,
            }
            _, leader = await standby.get("/leader/")
            assert leader["leader"]["instance"] == "a"
            assert leader["leader"]["api_url"] == a.url + "/"
            assert leader["epoch"] == 1
            status, ready = await standby.get("/readyz")
            assert status == 200, ready
            assert "standby: requests are forwarded to the leader a" in ready
            metrics = await _metrics(standby)
            assert (
                metrics.get("scale_scheduler_leader"),
                metrics.get("scale_scheduler_leader_epoch"),
            ) == (0, 1)
        assert (await _metrics(a)).get("scale_scheduler_leader") == 1
        assert len(sim.frameworks()) == 1
        old = live_subscription(sim)
        a.process.kill9()
        # The advisory lock goes with a's session: a standby leads before the lease ends.
        await until(
            lambda: live_subscription(sim) not in (None, old), LEASE + 3, "a standby subscribes"
        )
        assert subscribed_framework(sim) == framework_id
        roles = {i.name: await role_of(i) for i in (b, c)}
        assert sorted(roles.values()) == ["leader", "standby"], roles
        new = b if roles["b"] == "leader" else c
        _, leader = await new.get("/leader/")
        assert (leader["leader"]["instance"], leader["epoch"]) == (new.name, 2)
        _, status = await new.get("/status/")
        assert status["scheduler"]["is_online"] is True
        metrics = await _metrics(new)
        assert metrics.get("scale_scheduler_leader") == 1
        assert metrics.get("scale_scheduler_leader_epoch") == 2
        assert metrics.get("scale_scheduler_leadership_changes_total") == 1
        assert len(sim.frameworks()) == 1  # one framework id throughout


async def _metrics(instance: Instance) -> Samples:
    status, text = await instance.get("/metrics")
    assert status == 200
    return Samples(text)


async def test_a_stopped_leader_is_replaced_and_comes_back_deposed(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    """SIGSTOP longer than the lease: a standby takes over with the same framework id; on
    SIGCONT the old leader calls Mesos no more and exits 7 (deposed), for systemd to bring it
    back as a standby."""
    async with _cluster(tmp_path, pg_database, names="ab") as (sim, (a, b), framework_id):
        proc = a.process.proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)
        await until(lambda: _leads(b, sim, framework_id), LEASE + 5, "b leads and is subscribed")
        os.kill(proc.pid, signal.SIGCONT)
        assert await a.exit_code() == 7, a.process.logs()
        fatal = [e for e in a.events() if e["event"] == "daemon_fatal"]
        assert [(f["exit_code"], f["reason"]) for f in fatal] == [(7, "DEPOSED")]
        assert subscribed_framework(sim) == framework_id  # b is still the one subscribed
        assert await role_of(b) == "leader"


async def _leads(instance: Instance, sim: SimulatedCluster, old: object) -> bool:
    return await role_of(instance) == "leader" and live_subscription(sim) not in (None, old)


async def test_failed_over_by_another_subscription_steps_down_with_an_election(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    """Another scheduler subscribes with our framework id: with an election the master's
    "Framework failed over" deposes the instance (exit 7), not refuses it (4)."""
    async with SimulatedCluster(agents=1, heartbeat_interval=0.2, seed=3) as sim:
        leader = Instance(tmp_path, "a", sim, pg_database)
        intruder = Instance(tmp_path, "x", sim, None)  # a single instance, no election
        try:
            leader.start()
            await leader.process.wait_ready()
            await leader.wait_online()
            framework_id = subscribed_framework(sim)
            intruder.copy_state_from(leader)
            intruder.start()
            assert await leader.exit_code() == 7, leader.process.logs()
            fatal = [e for e in leader.events() if e["event"] == "daemon_fatal"]
            assert [(f["exit_code"], f["message"]) for f in fatal] == [(7, "Framework failed over")]
            assert subscribed_framework(sim) == framework_id
        finally:
            leader.process.stop_quietly()
            intruder.process.stop_quietly()


async def test_failed_over_single_instance_keeps_exit_4(tmp_path: Path) -> None:
    """Without an election nothing changes: the failed-over instance exits 4 (not restarted),
    the one that took over keeps the framework: no ping-pong."""
    async with SimulatedCluster(agents=1, heartbeat_interval=0.2, seed=3) as sim:
        first = Instance(tmp_path, "a", sim, None)
        second = Instance(tmp_path, "b", sim, None)
        try:
            first.start()
            await first.process.wait_ready()
            await first.wait_online()
            framework_id = subscribed_framework(sim)
            second.copy_state_from(first)
            second.start()
            assert await first.exit_code() == 4, first.process.logs()
            fatal = [e for e in first.events() if e["event"] == "daemon_fatal"]
            assert [(f["exit_code"], f["reason"]) for f in fatal] == [(4, "FRAMEWORK_REFUSED")]
            await second.process.wait_ready()
            _, status = await second.get("/status/")
            assert status["scheduler"]["is_online"] is True
            assert subscribed_framework(sim) == framework_id
            _, leader = await second.get("/leader/")
            assert (leader["this"]["role"], leader["epoch"]) == ("leader", 1)
        finally:
            first.process.stop_quietly()
            second.process.stop_quietly()


async def test_repeated_failovers_epochs_only_increase(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    """Six failovers, alternately kill -9 and SIGSTOP (longer than the lease) of the leader,
    each victim started again as systemd would (deposed: exit 7). After each: exactly one
    leader, subscribed with the one framework id, in a higher epoch than before."""
    async with _cluster(tmp_path, pg_database) as (sim, instances, framework_id):
        epoch = 1
        for round_ in range(6):
            roles = {i.name: await role_of(i) for i in instances}
            assert sorted(roles.values()) == ["leader", "standby", "standby"], roles
            leader = next(i for i in instances if roles[i.name] == "leader")
            proc = leader.process.proc
            assert proc is not None
            old = live_subscription(sim)
            if round_ % 2 == 0:
                leader.process.kill9()
            else:
                os.kill(proc.pid, signal.SIGSTOP)
            others = [i for i in instances if i is not leader]
            await until(
                lambda others=others, old=old: _new_leader(others, sim, old),
                LEASE + 5,
                f"a new leader in round {round_}",
            )
            if round_ % 2 == 1:
                os.kill(proc.pid, signal.SIGCONT)
                assert await leader.exit_code() == 7, leader.process.logs()
            leader.start()  # Restart=on-failure: it comes back as a standby
            await until(lambda leader=leader: role_of(leader), 15, "the old leader answers")
            assert await role_of(leader) == "standby"
            new = [i for i in others if await role_of(i) == "leader"]
            assert len(new) == 1
            _, view = await new[0].get("/leader/")
            assert view["epoch"] > epoch
            epoch = view["epoch"]
            assert subscribed_framework(sim) == framework_id
        assert len(sim.frameworks()) == 1


async def _new_leader(others: list[Instance], sim: SimulatedCluster, old: object) -> bool:
    if live_subscription(sim) in (None, old):
        return False
    return any([await role_of(i) == "leader" for i in others])
