"""Failover between real daemon processes electing their leader in a real PostgreSQL, against
the simulator (see hakit for what is real and what stands in for the PostgreSQL state)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from auditkit import SIM, audit
from daemonkit import Samples
from hakit import (
    LEASE,
    Fleet,
    Instance,
    Ledger,
    live_subscription,
    role_of,
    shared_fleet,
    submit_forever,
    subscribed_framework,
    terminate_backends_of,
    until,
)
from pgserver import PgDatabase

from scale_scheduler.simulator import AgentSpec, SimulatedCluster
from scale_scheduler.simulator.record import SubscriptionRecord


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


ROUNDS = 20
FAULTS = ("kill -9", "SIGSTOP", "cut off")


@pytest.mark.timeout(300)
async def test_repeated_failovers_epochs_only_increase(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    """Twenty failovers of three instances sharing one PostgreSQL state, each fault picked at
    random (the seed is printed; SCALE_TEST_FAILOVER_SEED replays it): the leader killed -9,
    SIGSTOPped longer than the lease (then SIGCONT: it is deposed, exit 7), or cut off from
    the database (``pg_terminate_backend`` of its sessions). Each victim is started again as
    systemd would. Meanwhile a client submits through any running instance, standbys mostly.

    After each round: exactly one leader, subscribed with the one framework id, in a higher
    epoch. At the end the audit, and the simulator's record: never two subscriptions live at
    once, no call of an old subscription accepted after the next one began, and the
    subscriptions follow the order of the terms (their epochs only increase)."""
    seed = int(os.environ.get("SCALE_TEST_FAILOVER_SEED") or random.SystemRandom().randrange(2**32))
    print(f"SCALE_TEST_FAILOVER_SEED={seed}")
    rng = random.Random(seed)
    agent = AgentSpec(cpus=4, mem=8192)
    async with (
        SimulatedCluster(agents=4, agent=agent, seed=seed % 10_000, **SIM) as sim,
        shared_fleet(tmp_path, pg_database, sim) as (fleet, framework_id),
    ):
        ledger, stop, frozen = Ledger(), asyncio.Event(), set[str]()
        client = asyncio.create_task(
            submit_forever(fleet, ledger, stop, random.Random(seed + 1), frozen=frozen)
        )
        epoch, faults = 1, []
        for round_ in range(ROUNDS):
            leader = await fleet.leader()
            proc = leader.process.proc
            assert proc is not None
            old = live_subscription(sim)
            fault = rng.choice(FAULTS)
            faults.append(fault)
            what = f"round {round_} ({fault} of {leader.name}), seed {seed}"
            if fault == "kill -9":
                await asyncio.to_thread(leader.process.kill9)
            elif fault == "SIGSTOP":
                frozen.add(leader.name)
                os.kill(proc.pid, signal.SIGSTOP)
            else:
                assert await terminate_backends_of(pg_database, proc.pid) >= 1, what
            others = [i for i in fleet.instances if i is not leader]
            await until(
                lambda others=others, old=old: _new_leader(others, sim, old),
                LEASE + 8,
                f"a new leader in {what}",
                detail=lambda others=others: "\n".join(
                    f"--- {i.name}:\n{i.process.logs()}" for i in others
                ),
            )
            if fault == "SIGSTOP":
                os.kill(proc.pid, signal.SIGCONT)
                frozen.discard(leader.name)
            if fault != "kill -9":  # deposed: it stands down and exits 7
                assert await leader.exit_code() == 7, (what, leader.process.logs())
            leader.start()  # Restart=on-failure: it comes back as a standby
            await until(lambda leader=leader: role_of(leader), 20, f"{leader.name} answers")
            assert await role_of(leader) == "standby", what
            _, view = await (await fleet.leader()).get("/leader/")
            assert view["epoch"] > epoch, what
            epoch = view["epoch"]
            assert subscribed_framework(sim) == framework_id, what
        stop.set()
        await client
        print(f"faults: {faults}; acknowledged {len(ledger.acked)} tasks")

        stored = {int(i): str(n) for i, n in await fleet.db("SELECT id, name FROM tasks")}
        ledger.check_against(stored)
        assert ledger.acked_through_standby > 0
        await audit(fleet, sim, stored)
        # One framework id throughout, in Mesos and in the database.
        assert [fw.id for fw in sim.frameworks()] == [framework_id]
        assert await fleet.db("SELECT framework_id FROM framework") == [(framework_id,)]
        record = sim.record
        assert {sub.framework_id for sub in record.subscriptions} == {framework_id}
        assert record.overlapping_subscriptions() == []
        assert record.calls_after_takeover() == []
        assert _terms_in_order(fleet, record.subscriptions) >= ROUNDS + 1


def _terms_in_order(fleet: Fleet, subscriptions: list[SubscriptionRecord]) -> int:
    """Each subscription was made by the leader of a term no older than the previous
    subscription's (the instances' ``leadership_acquired`` events, matched by the host name
    each instance gives Mesos), and the terms' epochs only increase. Returns the terms."""
    terms = sorted(
        (event["epoch"], instance.name)
        for instance in fleet.instances
        for event in instance.events()
        if event["event"] == "leadership_acquired"
    )
    epochs = [epoch for epoch, _ in terms]
    assert epochs == list(range(1, len(terms) + 1)), f"epochs not one up each term: {epochs}"
    at = 0
    for sub in subscriptions:
        name = (sub.hostname or "").removesuffix(".test")
        while at < len(terms) and terms[at][1] != name:
            at += 1
        assert at < len(terms), f"a subscription of {name} out of the terms' order: {terms}"
    return len(terms)


async def _new_leader(others: list[Instance], sim: SimulatedCluster, old: object) -> bool:
    if live_subscription(sim) in (None, old):
        return False
    return any([await role_of(i) == "leader" for i in others])
