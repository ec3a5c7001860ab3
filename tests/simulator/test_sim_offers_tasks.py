"""Offers (allocation, filters, suppression, timeouts) and tasks (launch, updates, kill)."""

from __future__ import annotations

import gc
from typing import Any

import aiohttp
import pytest
from sim_client import FAST, SchedulerClient, framework_info, task_info

from scale_scheduler.simulator import AgentSpec, SimulatedCluster
from scale_scheduler.simulator.agents import SimTask


def _offers(event: dict[str, Any]) -> list[dict[str, Any]]:
    return event["offers"]["offers"]


def _scalar(offer: dict[str, Any], name: str) -> float:
    return sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == name)


async def test_offers_carry_resources_attributes_and_role(session: aiohttp.ClientSession) -> None:
    spec = AgentSpec(
        cpus=2,
        mem=1024,
        disk=100,
        ports=((31000, 31009),),
        attributes=(("rack", "r{i%2}"), ("size", "3")),
    )
    async with SimulatedCluster(**FAST, agents=2, agent=spec) as sim:
        c = SchedulerClient(session, sim.url)
        info = framework_info(roles=["batch"], capabilities=[{"type": "MULTI_ROLE"}])
        assert await c.subscribe(info) == 200
        offers = _offers(await c.next_event("OFFERS"))
        assert len(offers) == 2
        offer = offers[0]
        assert offer["framework_id"]["value"] == c.framework_id
        assert offer["allocation_info"] == {"role": "batch"}
        assert {r["name"] for r in offer["resources"]} == {"cpus", "mem", "disk", "ports"}
        assert all(r["allocation_info"] == {"role": "batch"} for r in offer["resources"])
        ports = next(r for r in offer["resources"] if r["name"] == "ports")
        assert ports["ranges"]["range"] == [{"begin": 31000, "end": 31009}]
        assert _scalar(offer, "cpus") == 2
        attrs = {a["name"]: a for a in offer["attributes"]}
        assert attrs["rack"] == {"name": "rack", "type": "TEXT", "text": {"value": "r0"}}
        assert attrs["size"]["scalar"] == {"value": 3.0}
        assert offer["hostname"] == "sim-agent-0"
        await c.close()


async def test_gpu_agents_only_go_to_gpu_frameworks(session: aiohttp.ClientSession) -> None:
    async with SimulatedCluster(**FAST, agents=1, agent=AgentSpec(gpus=1)) as sim:
        plain = SchedulerClient(session, sim.url)
        assert await plain.subscribe() == 200
        with pytest.raises(TimeoutError):
            await plain.next_event("OFFERS", timeout=0.3)
        gpu = SchedulerClient(session, sim.url)
        caps = [{"type": "GPU_RESOURCES"}]
        assert await gpu.subscribe(framework_info(capabilities=caps)) == 200
        offer = _offers(await gpu.next_event("OFFERS"))[0]
        assert _scalar(offer, "gpus") == 1
        await plain.close()
        await gpu.close()


async def test_task_goes_through_its_states_with_uuids(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    offer = _offers(await client.next_event("OFFERS"))[0]
    assert await client.launch(offer, "t1") == (202, "")
    seen = []
    for _ in range(3):
        status = await client.update()
        seen.append(status["state"])
        assert len(status["uuid"]) == 24  # base64 of 16 bytes
        assert status["agent_id"] == offer["agent_id"]
        assert status["source"] == "SOURCE_EXECUTOR"
        await client.ack(status)
    assert seen == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert sim.record.launch_counts["t1"] == 1
    await sim.wait_until(lambda: sim.task("t1") is None)


async def test_unused_resources_return_and_finished_tasks_free_theirs(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    offer = _offers(await client.next_event("OFFERS"))[0]
    await client.launch(offer, "t1", cpus=1.5, labels={"sim.duration": "0.5"})
    while True:
        again = _offers(await client.next_event("OFFERS"))
        same = [o for o in again if o["agent_id"] == offer["agent_id"]]
        if same:
            break
    assert _scalar(same[0], "cpus") == pytest.approx(2.5)
    for _ in range(3):
        await client.ack(await client.update())
    agent = next(a for a in sim.agents if a.id == offer["agent_id"]["value"])
    await sim.wait_until(lambda: agent.allocated.is_empty())


async def test_launch_beyond_the_offer_is_task_error_without_uuid(client: SchedulerClient) -> None:
    offer = _offers(await client.next_event("OFFERS"))[0]
    await client.launch(offer, "huge", cpus=100)
    status = await client.update()
    assert status["state"] == "TASK_ERROR"
    assert status["reason"] == "REASON_TASK_INVALID"
    assert status["source"] == "SOURCE_MASTER"
    assert "uuid" not in status


async def test_duplicate_task_id_is_task_error(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    offers = _offers(await client.next_event("OFFERS"))
    await client.launch(offers[0], "dup", labels={"sim.outcome": "RUNNING"})
    await client.launch(offers[1], "dup")
    states = {(await client.update())["state"] for _ in range(2)}
    assert "TASK_ERROR" in states
    assert sim.record.launch_counts["dup"] == 1
    assert sim.record.launch_attempts["dup"] == 2
    assert sim.record.launched_more_than_once() == {}


@pytest.mark.parametrize(
    ("capabilities", "expected"),
    [([{"type": "PARTITION_AWARE"}], "TASK_DROPPED"), ([], "TASK_LOST")],
)
async def test_stale_offer_gives_lost_or_dropped(
    sim: SimulatedCluster,
    session: aiohttp.ClientSession,
    capabilities: list[dict[str, str]],
    expected: str,
) -> None:
    c = SchedulerClient(session, sim.url)
    assert await c.subscribe(framework_info(capabilities=capabilities)) == 200
    offer = _offers(await c.next_event("OFFERS"))[0]
    assert (await c.call("DECLINE", {"offer_ids": [offer["id"]]}))[0] == 202
    await c.launch(offer, "late")
    status = await c.update()
    assert status["state"] == expected
    assert status["reason"] == "REASON_INVALID_OFFERS"
    assert "uuid" not in status
    assert sim.record.launch_counts["late"] == 0
    await c.close()


async def test_rescinded_offer_cannot_be_used(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    offer = _offers(await client.next_event("OFFERS"))[0]
    assert sim.rescind_offers() >= 1
    rescind = await client.next_event("RESCIND")
    assert rescind["rescind"]["offer_id"]["value"]
    await client.launch(offer, "t")
    assert (await client.update())["reason"] == "REASON_INVALID_OFFERS"


async def test_offers_from_two_agents_in_one_accept_are_invalid(client: SchedulerClient) -> None:
    offers = _offers(await client.next_event("OFFERS"))
    task = task_info(offers[0], "x")
    await client.call(
        "ACCEPT",
        {
            "offer_ids": [offers[0]["id"], offers[1]["id"]],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}],
        },
    )
    status = await client.update()
    assert status["reason"] == "REASON_INVALID_OFFERS"
    assert "single agent" in status["message"]


async def test_decline_filter_holds_per_agent_until_revive(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    offers = _offers(await client.next_event("OFFERS"))
    declined = offers[0]
    code, _ = await client.call(
        "DECLINE", {"offer_ids": [declined["id"]], "filters": {"refuse_seconds": 60}}
    )
    assert code == 202
    await client.call(
        "DECLINE", {"offer_ids": [o["id"] for o in offers[1:]], "filters": {"refuse_seconds": 0}}
    )
    for _ in range(3):
        again = _offers(await client.next_event("OFFERS"))
        assert declined["agent_id"] not in [o["agent_id"] for o in again]
        await client.call(
            "DECLINE", {"offer_ids": [o["id"] for o in again], "filters": {"refuse_seconds": 0}}
        )
    await client.call("REVIVE", {})
    while True:
        again = _offers(await client.next_event("OFFERS"))
        if declined["agent_id"] in [o["agent_id"] for o in again]:
            break


async def test_short_refuse_seconds_expire(client: SchedulerClient) -> None:
    offer = _offers(await client.next_event("OFFERS"))[0]
    await client.call("DECLINE", {"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 0.3}})
    event = await client.next_event("OFFERS", timeout=3)
    assert offer["agent_id"] in [o["agent_id"] for o in _offers(event)]


async def test_a_filter_lasts_at_least_one_allocation_interval(
    session: aiohttp.ClientSession,
) -> None:
    # Mesos's allocator stretches every filter to an allocation interval (MESOS-4302), so a
    # short one still keeps the agent out of the next cycle; 0 installs no filter at all.
    async with SimulatedCluster(**{**FAST, "allocation_interval": 30.0}, agents=2) as sim:
        c = SchedulerClient(session, sim.url)
        await c.subscribe()
        offers = _offers(await c.next_event("OFFERS"))  # the SUBSCRIBE's own allocation
        short, none = offers
        await c.call("DECLINE", {"offer_ids": [short["id"]], "filters": {"refuse_seconds": 0.5}})
        await c.call("DECLINE", {"offer_ids": [none["id"]], "filters": {"refuse_seconds": 0}})
        master = sim.leader
        assert master is not None
        filters = master.frameworks[c.framework_id].filters
        (_role, agent), (_resources, expires) = next(iter(filters.items()))
        assert len(filters) == 1
        assert agent == short["agent_id"]["value"]
        assert expires - sim.timers.now() > 29.0
        master.allocate()  # the next periodic allocation: only the unfiltered agent
        again = _offers(await c.next_event("OFFERS"))
        assert [o["agent_id"] for o in again] == [none["agent_id"]]
        await c.close()


async def test_suppress_stops_offers_and_revive_restores_them(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    offers = _offers(await client.next_event("OFFERS"))
    assert (await client.call("SUPPRESS", {"roles": []}))[0] == 202
    await client.call(
        "DECLINE", {"offer_ids": [o["id"] for o in offers], "filters": {"refuse_seconds": 0}}
    )
    with pytest.raises(TimeoutError):
        await client.next_event("OFFERS", timeout=0.4)
    assert (await client.call("REVIVE", {"roles": ["*"]}))[0] == 202
    assert _offers(await client.next_event("OFFERS"))


async def test_offer_timeout_rescinds(session: aiohttp.ClientSession) -> None:
    async with SimulatedCluster(**FAST, offer_timeout=0.2) as sim:
        c = SchedulerClient(session, sim.url)
        await c.subscribe()
        offer = _offers(await c.next_event("OFFERS"))[0]
        rescinded = set()
        while offer["id"]["value"] not in rescinded:
            rescinded.add((await c.next_event("RESCIND"))["rescind"]["offer_id"]["value"])
        assert offer["id"]["value"] not in {o["id"]["value"] for o in sim.offers()}
        await c.close()


async def test_update_is_resent_until_acknowledged_and_next_waits(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    offer = _offers(await client.next_event("OFFERS"))[0]
    await client.launch(offer, "slow-ack")
    first = await client.update()
    again = await client.update()  # resent after status_update_retry
    assert again["state"] == first["state"] == "TASK_STARTING"
    assert again["uuid"] == first["uuid"]
    assert sim.task("slow-ack").state in ("TASK_RUNNING", "TASK_FINISHED")
    await client.ack(first)
    nxt = await client.update()
    assert nxt["state"] == "TASK_RUNNING"


async def test_a_task_acknowledged_in_full_is_not_kept_for_its_resends(
    session: aiohttp.ClientSession,
) -> None:
    # Every update is sent with a resend due status_update_retry later, which cannot be
    # cancelled: it kept the task (TaskInfo, statuses) alive that long after its last
    # acknowledgement. Under B6, ten seconds of finished tasks that every garbage collection of
    # the simulator walked, standing its loop still for up to a second.
    config = {**FAST, "status_update_retry": 60.0, "max_completed_tasks": 0}
    async with SimulatedCluster(**config) as sim:
        client = SchedulerClient(session, sim.url)
        assert await client.subscribe() == 200
        offer = _offers(await client.next_event("OFFERS"))[0]
        assert await client.launch(offer, "done") == (202, "")
        for _ in range(3):
            await client.ack(await client.update())
        await sim.wait_until(lambda: sim.task("done") is None)
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, SimTask) and o.task_id == "done"]
        assert alive == []
        await client.close()


async def test_kill_with_killing_state(sim: SimulatedCluster, client: SchedulerClient) -> None:
    offer = _offers(await client.next_event("OFFERS"))[0]
    await client.launch(offer, "k", labels={"sim.outcome": "RUNNING"})
    await client.ack(await client.update("TASK_STARTING"))
    await client.ack(await client.update("TASK_RUNNING"))
    assert (await client.call("KILL", {"task_id": {"value": "k"}}))[0] == 202
    killing = await client.update()
    assert killing["state"] == "TASK_KILLING"
    await client.ack(killing)
    killed = await client.update()
    assert killed["state"] == "TASK_KILLED"
    assert killed["uuid"]


async def test_kill_without_killing_capability(
    sim: SimulatedCluster, session: aiohttp.ClientSession
) -> None:
    c = SchedulerClient(session, sim.url)
    await c.subscribe(framework_info(capabilities=[]))
    offer = _offers(await c.next_event("OFFERS"))[0]
    await c.launch(offer, "k", env={"SIM_OUTCOME": "RUNNING"})
    await c.ack(await c.update("TASK_STARTING"))
    await c.ack(await c.update("TASK_RUNNING"))
    await c.call("KILL", {"task_id": {"value": "k"}})
    assert (await c.update())["state"] == "TASK_KILLED"
    await c.close()


async def test_kill_of_unknown_task_answers_by_reconciliation(client: SchedulerClient) -> None:
    await client.call("KILL", {"task_id": {"value": "ghost"}})
    status = await client.update()
    assert status["state"] == "TASK_UNKNOWN"
    assert status["reason"] == "REASON_RECONCILIATION"


@pytest.mark.parametrize(
    ("labels", "partition_aware", "final"),
    [
        ({"sim.outcome": "FAILED"}, True, "TASK_FAILED"),
        ({"sim.outcome": "lost"}, True, "TASK_LOST"),
        ({"sim.outcome": "GONE"}, True, "TASK_GONE"),
        ({"sim.outcome": "GONE"}, False, "TASK_LOST"),
        ({"sim.outcome": "ERROR"}, True, "TASK_ERROR"),
    ],
)
async def test_scripted_outcomes(
    sim: SimulatedCluster,
    session: aiohttp.ClientSession,
    labels: dict[str, str],
    partition_aware: bool,
    final: str,
) -> None:
    caps = [{"type": "PARTITION_AWARE"}] if partition_aware else []
    c = SchedulerClient(session, sim.url)
    await c.subscribe(framework_info(capabilities=caps))
    offer = _offers(await c.next_event("OFFERS"))[0]
    await c.launch(offer, "s", labels={**labels, "sim.duration": "0.05"})
    states = []
    for _ in range(3):
        status = await c.update()
        states.append(status["state"])
        await c.ack(status)
    assert states == ["TASK_STARTING", "TASK_RUNNING", final]
    await c.close()


async def test_env_script_controls_duration(client: SchedulerClient) -> None:
    offer = _offers(await client.next_event("OFFERS"))[0]
    await client.launch(offer, "long", env={"SIM_DURATION": "30"})
    await client.ack(await client.update("TASK_STARTING"))
    await client.ack(await client.update("TASK_RUNNING"))
    with pytest.raises(TimeoutError):
        await client.update(timeout=FAST["task_duration"] * 3)


async def test_bad_script_is_task_error(client: SchedulerClient) -> None:
    offer = _offers(await client.next_event("OFFERS"))[0]
    await client.launch(offer, "bad", labels={"sim.outcome": "EXPLODE"})
    status = await client.update()
    assert status["state"] == "TASK_ERROR"
    assert "EXPLODE" in status["message"]


async def test_reconcile_explicit_and_implicit(
    sim: SimulatedCluster, client: SchedulerClient
) -> None:
    offer = _offers(await client.next_event("OFFERS"))[0]
    await client.launch(offer, "r1", labels={"sim.outcome": "RUNNING"})
    await client.ack(await client.update("TASK_STARTING"))
    await client.ack(await client.update("TASK_RUNNING"))
    await client.call(
        "RECONCILE",
        {
            "tasks": [
                {"task_id": {"value": "r1"}},
                {"task_id": {"value": "nope"}, "agent_id": offer["agent_id"]},
            ]
        },
    )
    got = {}
    for _ in range(2):
        status = await client.update()
        assert "uuid" not in status
        assert status["reason"] == "REASON_RECONCILIATION"
        assert status["source"] == "SOURCE_MASTER"
        got[status["task_id"]["value"]] = status["state"]
    assert got == {"r1": "TASK_RUNNING", "nope": "TASK_GONE"}
    await client.call("RECONCILE", {"tasks": []})
    implicit = await client.update()
    assert (implicit["task_id"]["value"], implicit["state"]) == ("r1", "TASK_RUNNING")
    assert "uuid" not in implicit


async def test_agent_removal_sends_unreachable_and_failure(
    sim: SimulatedCluster, session: aiohttp.ClientSession
) -> None:
    pa, plain = SchedulerClient(session, sim.url), SchedulerClient(session, sim.url)
    await pa.subscribe()
    await plain.subscribe(framework_info(capabilities=[]))
    offer = _offers(await pa.next_event("OFFERS"))[0]
    await pa.launch(offer, "on-agent", labels={"sim.outcome": "RUNNING"})
    await pa.ack(await pa.update("TASK_STARTING"))
    assert sim.remove_agent(offer["agent_id"]["value"])
    status = await pa.update()
    assert status["state"] == "TASK_UNREACHABLE"
    assert status["reason"] == "REASON_AGENT_REMOVED"
    failure = await pa.next_event("FAILURE")
    assert failure["failure"]["agent_id"] == offer["agent_id"]
    assert (await plain.next_event("FAILURE"))["failure"]["agent_id"] == offer["agent_id"]
    await pa.call("RECONCILE", {"tasks": [{"task_id": {"value": "on-agent"}}]})
    assert (await pa.update())["state"] == "TASK_UNREACHABLE"
    await pa.close()
    await plain.close()


async def test_non_partition_aware_sees_lost_on_agent_removal(
    sim: SimulatedCluster, session: aiohttp.ClientSession
) -> None:
    c = SchedulerClient(session, sim.url)
    await c.subscribe(framework_info(capabilities=[]))
    offer = _offers(await c.next_event("OFFERS"))[0]
    await c.launch(offer, "t", labels={"sim.outcome": "RUNNING"})
    await c.ack(await c.update("TASK_STARTING"))
    sim.remove_agent(offer["hostname"])
    assert (await c.update())["state"] == "TASK_LOST"
    await c.close()


async def test_added_agent_is_offered(sim: SimulatedCluster, client: SchedulerClient) -> None:
    agent = sim.add_agent(cpus=16)
    while True:
        offers = _offers(await client.next_event("OFFERS"))
        mine = [o for o in offers if o["agent_id"]["value"] == agent.id]
        if mine:
            break
    assert _scalar(mine[0], "cpus") == 16


async def _launch_raw(client: SchedulerClient, offer: dict[str, Any], info: dict[str, Any]) -> None:
    body = {
        "offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [info]}}],
        "filters": {"refuse_seconds": 0},
    }
    assert (await client.call("ACCEPT", body))[0] == 202


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kill_policy", {"grace_period": {"nanoseconds": -1}}, "'kill_policy.grace_period'"),
        ("kill_policy", {"grace_period": {"nanoseconds": "soon"}}, "'kill_policy.grace_period'"),
        ("max_completion_time", {"nanoseconds": -5}, "`max_completion_time`"),
    ],
)
async def test_negative_durations_are_task_errors(
    client: SchedulerClient, field: str, value: dict[str, Any], message: str
) -> None:
    offer = _offers(await client.next_event("OFFERS"))[0]
    info = task_info(offer, "bad-duration")
    info[field] = value
    await _launch_raw(client, offer, info)
    status = await client.update()
    assert status["state"] == "TASK_ERROR"
    assert status["reason"] == "REASON_TASK_INVALID"
    assert message in status["message"]


async def test_kill_policy_of_the_task_and_of_the_kill_call(client: SchedulerClient) -> None:
    offer = _offers(await client.next_event("OFFERS"))[0]
    info = task_info(offer, "graceful", labels={"sim.outcome": "RUNNING"})
    info["kill_policy"] = {"grace_period": {"nanoseconds": 60 * 10**9}}
    await _launch_raw(client, offer, info)
    await client.ack(await client.update("TASK_STARTING"))
    await client.ack(await client.update("TASK_RUNNING"))
    assert (await client.call("KILL", {"task_id": {"value": "graceful"}}))[0] == 202
    await client.ack(await client.update("TASK_KILLING"))
    # Nothing may arrive within the task's 60 s grace period (kill_delay alone is 0.03 s).
    with pytest.raises(TimeoutError):
        await client.update(timeout=0.5)
    now = {"grace_period": {"nanoseconds": 0}}
    kill = {"task_id": {"value": "graceful"}, "kill_policy": now}
    assert (await client.call("KILL", kill))[0] == 202
    killed = await client.update()
    assert killed["state"] == "TASK_KILLED"
