"""The pymesos driver (``mesos.driver: pymesos``) against the simulated cluster and fake masters.

Each test states one behaviour the native driver has, seen from the master's side where it can
be (the simulator's record) and from the handler's side otherwise.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from pymesos_kit import require_pymesos

require_pymesos()

from daemonkit import gave_up, on_new_leader  # noqa: E402
from pymesos_kit import (  # noqa: E402
    API_URL,
    SIM,
    MakeDriver,
    MemoryIdStore,
    RecordingHandler,
    ScriptedMaster,
    driver_config,
    eventually,
    subscribed_event,
)

from scale_scheduler.daemon.mesos.driver import (  # noqa: E402
    CallOutcomeUnknownError,
    ConnectionState,
    DriverError,
    Launch,
    NotConnectedError,
)
from scale_scheduler.daemon.mesos.framework_info import CredentialsError  # noqa: E402
from scale_scheduler.daemon.mesos.mesos_types import (  # noqa: E402
    CommandInfo,
    Label,
    Labels,
    Offer,
    TaskInfo,
    Value,
    scalar,
)
from scale_scheduler.daemon.mesos.pymesos_client import PymesosClient  # noqa: E402
from scale_scheduler.daemon.mesos.pymesos_driver import (  # noqa: E402
    PymesosSettings,
    create_pymesos_driver,
)
from scale_scheduler.daemon.service.config import ConfigError  # noqa: E402
from scale_scheduler.simulator import SimulatedCluster  # noqa: E402
from scale_scheduler.state.framework import FrameworkIdRepository  # noqa: E402
from scale_scheduler.state.sqlite import SqliteState  # noqa: E402
from scale_scheduler.state.store import Store  # noqa: E402


def task_on(offer: Offer, task_id: str, **labels: str) -> TaskInfo:
    return TaskInfo(
        name=task_id,
        task_id=Value(task_id),
        agent_id=offer.agent_id,
        resources=[scalar("cpus", 0.1), scalar("mem", 32)],
        command=CommandInfo(value="true"),
        labels=Labels([Label(k, v) for k, v in labels.items()]) if labels else None,
    )


async def subscribed(driver: object, handler: RecordingHandler) -> None:
    await driver.start(handler)  # type: ignore[attr-defined]
    await eventually(lambda: handler.subscriptions)


async def first_offer(handler: RecordingHandler) -> Offer:
    await eventually(lambda: handler.offers)
    return handler.offers[0][0]


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedMaster]:
    master = ScriptedMaster()
    await master.start()
    yield master
    await master.close()


@pytest.mark.parametrize("gpu", [False, True])
async def test_subscribes_with_the_framework_info_the_native_driver_sends(
    make_driver: MakeDriver, tmp_path: Path, gpu: bool
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    async with SimulatedCluster(agents=0, credentials=(("scale", "s3cret"),), **SIM) as sim:
        handler = RecordingHandler()
        driver = make_driver(
            sim.url,
            framework_name="scale-test",
            roles=["batch", "gpu"],
            principal="scale",
            secret_file=str(secret),
            gpu_resources=gpu,
            failover_timeout=3600.0,
        )
        await subscribed(driver, handler)
        (info,) = sim.record.framework_infos
    # pymesos would add GPU_RESOURCES (or strip it) from the master's version: it must not.
    expected = [{"type": "MULTI_ROLE"}, {"type": "PARTITION_AWARE"}, {"type": "TASK_KILLING_STATE"}]
    if gpu:
        expected.append({"type": "GPU_RESOURCES"})
    assert info["capabilities"] == expected
    assert info["roles"] == ["batch", "gpu"]
    assert info["failover_timeout"] == 3600.0
    assert info["checkpoint"] is True
    assert info["principal"] == "scale"
    assert (info["user"], info["name"], info["hostname"]) == ("svc", "scale-test", "sched.test")
    assert info["webui_url"] == API_URL
    assert "id" not in info


async def test_framework_id_is_committed_before_subscribed_reaches_the_handler(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    order: list[str] = []
    store = MemoryIdStore(order)
    store.gate = asyncio.Event()
    handler = RecordingHandler(order=order)
    driver = make_driver(sim.url, store=store)
    await driver.start(handler)
    await eventually(lambda: sim.frameworks() and sim.offers())
    await asyncio.sleep(0.2)  # nothing may happen while the commit is pending; offers arrive
    assert order == []
    assert driver.status.state is not ConnectionState.SUBSCRIBED
    store.gate.set()
    await eventually(lambda: "offers" in order)
    assert order[:3] == ["saved", "subscribed", "offers"]
    (framework,) = sim.frameworks()
    assert store.saved == [framework.id] == [driver.status.framework_id]


async def test_a_failed_save_resubscribes_with_the_same_id(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    store = MemoryIdStore()
    store.fail = True
    handler = RecordingHandler()
    driver = make_driver(sim.url, store=store)
    await driver.start(handler)
    await eventually(
        lambda: driver.status.last_error and "framework id" in driver.status.last_error
    )
    assert handler.subscriptions == []
    store.fail = False
    await eventually(lambda: handler.subscriptions)
    (framework,) = sim.frameworks()
    assert store.saved == [framework.id]
    assert sim.record.framework_infos[-1]["id"] == {"value": framework.id}


async def test_updates_are_acknowledged_only_when_the_handler_says_so(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(sim.url)
    await subscribed(driver, handler)
    offer = await first_offer(handler)
    await driver.accept(Launch([offer.id.value], [task_on(offer, "t1", **{"sim.duration": "0"})]))
    await eventually(lambda: len(handler.states("t1")) >= 2)
    # Unacknowledged, the agent resends TASK_STARTING and holds back the next update.
    assert set(handler.states("t1")) == {"TASK_STARTING"}
    assert sim.record.calls["ACKNOWLEDGE"] == 0
    acked = 0
    while "TASK_FINISHED" not in handler.states("t1"):
        await eventually(lambda n=acked: len(handler.updates) > n)
        for update in handler.updates[acked:]:
            assert update.uuid is not None
            assert update.agent_id is not None
            await driver.acknowledge(update.agent_id.value, update.task_id.value, update.uuid)
        acked = len(handler.updates)
    # Every acknowledgement came from here (the master counts those it accepted).
    distinct = len({u.uuid for u in handler.updates})
    assert distinct == 3
    assert distinct <= sim.record.calls["ACKNOWLEDGE"] <= acked
    assert sim.record.launch_counts == {"t1": 1}


async def test_one_decline_call_carries_every_offer(make_driver: MakeDriver) -> None:
    async with SimulatedCluster(agents=3, **SIM) as sim:
        handler = RecordingHandler()
        driver = make_driver(sim.url)
        await subscribed(driver, handler)
        await eventually(lambda: sum(len(batch) for batch in handler.offers) >= 3)
        ids = [offer.id.value for batch in handler.offers for offer in batch]
        await driver.decline(ids, refuse_seconds=60)
        assert sim.record.calls["DECLINE"] == 1
        assert sim.offers() == []


async def test_kill_and_reconcile_carry_agent_ids(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(sim.url)
    await subscribed(driver, handler)
    offer = await first_offer(handler)
    agent = offer.agent_id.value
    await driver.accept(
        Launch([offer.id.value], [task_on(offer, "t1", **{"sim.outcome": "RUNNING"})])
    )
    await eventually(lambda: handler.states("t1"))
    # An unknown task on a known agent is GONE; without the agent id it would be UNKNOWN.
    await driver.reconcile([("ghost", agent)])
    await eventually(lambda: handler.states("ghost"))
    assert handler.states("ghost") == ["TASK_GONE"]
    await driver.reconcile([("t1", agent)])
    await eventually(
        lambda: any(
            u.reason == "REASON_RECONCILIATION" for u in handler.updates if u.task_id.value == "t1"
        )
    )
    await driver.kill("t1", agent)
    await eventually(lambda: sim.task("t1") is None or sim.task("t1").state != "TASK_RUNNING")
    assert sim.record.calls["KILL"] == 1
    assert sim.record.calls["RECONCILE"] == 2


@pytest.mark.parametrize(
    "master", ["https://m1:5050", "http://[::1]:5050", "http://m1:5050,https://m2:5050"]
)
def test_masters_pymesos_cannot_reach_are_a_config_error(master: str) -> None:
    with pytest.raises(ConfigError, match=r"mesos\.master: .*mesos\.driver: pymesos"):
        create_pymesos_driver(driver_config(master=master), None, MemoryIdStore(), api_url="")


async def test_a_non_ascii_secret_fails_at_start(make_driver: MakeDriver, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("sécret", encoding="utf-8")
    driver = make_driver("http://127.0.0.1:9", principal="scale", secret_file=str(secret))
    with pytest.raises(CredentialsError, match="ASCII"):
        await driver.start(RecordingHandler())


async def test_calls_without_a_subscription_raise_not_connected(make_driver: MakeDriver) -> None:
    driver = make_driver("http://127.0.0.1:9")
    with pytest.raises(NotConnectedError):
        await driver.decline(["o1"])
    with pytest.raises(NotConnectedError):
        await driver.revive(["*"])


async def test_accept_failures_are_told_apart_by_status(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(sim.url)
    await subscribed(driver, handler)
    offer = await first_offer(handler)
    launch = Launch([offer.id.value], [task_on(offer, "t1")])
    sim.fail_calls(500, "ACCEPT", count=1)
    with pytest.raises(CallOutcomeUnknownError, match="HTTP 500"):
        await driver.accept(launch)
    sim.fail_calls(400, "ACCEPT", count=1)
    with pytest.raises(DriverError, match="HTTP 400") as raised:
        await driver.accept(launch)
    assert not isinstance(raised.value, CallOutcomeUnknownError)
    assert sim.record.launch_counts == {}


async def test_an_accept_timing_out_at_the_master_has_an_unknown_outcome(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    settings = PymesosSettings(
        request_timeout=0.5, backoff_initial=0.05, backoff_max=0.2, thread_exit_timeout=3.0
    )
    handler = RecordingHandler()
    driver = make_driver(sim.url, settings=settings)
    await subscribed(driver, handler)
    offer = await first_offer(handler)
    sim.delay_calls(1.5, "ACCEPT", count=1)
    with pytest.raises(CallOutcomeUnknownError):
        await driver.accept(Launch([offer.id.value], [task_on(offer, "t1")]))
    assert sim.record.calls["ACCEPT"] == 1  # it reached the master


@pytest.mark.parametrize(
    ("error", "unknown"),
    [
        (ConnectionRefusedError(111, "Connection refused"), False),
        (socket.gaierror(-2, "Name or service not known"), False),
        (TimeoutError("timed out"), True),
        (http.client.RemoteDisconnected("closed without response"), True),
        (BrokenPipeError(32, "Broken pipe"), True),
        (http.client.BadStatusLine("garbage"), True),
    ],
)
async def test_transport_errors_are_sure_only_when_nothing_was_sent(
    sim: SimulatedCluster, make_driver: MakeDriver, error: Exception, unknown: bool
) -> None:
    class FailingLaunches(PymesosClient):
        def launchTasks(self, *args: Any, **kwargs: Any) -> None:
            raise error

    handler = RecordingHandler()
    driver = make_driver(sim.url, client_factory=FailingLaunches)
    await subscribed(driver, handler)
    with pytest.raises(DriverError) as raised:
        await driver.accept(Launch(["o1"], []))
    assert isinstance(raised.value, CallOutcomeUnknownError) is unknown
    assert not isinstance(raised.value, NotConnectedError)


async def test_stop_sends_no_teardown_and_a_restart_resubscribes_through_sqlite(
    sim: SimulatedCluster, make_driver: MakeDriver, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = await Store.open(db)
    repo = FrameworkIdRepository(SqliteState(store))
    assert await repo.load_framework_id() is None
    handler = RecordingHandler()
    driver = make_driver(sim.url, store=repo)
    await subscribed(driver, handler)
    framework_id = handler.subscriptions[0].framework_id
    await driver.stop()
    await store.close()
    assert driver.status.state is ConnectionState.STOPPED
    assert sim.record.teardown_received is False
    assert [f.id for f in sim.frameworks()] == [framework_id]

    store = await Store.open(db)  # a new process: the id comes back from disk
    repo = FrameworkIdRepository(SqliteState(store))
    stored = await repo.load_framework_id()
    assert stored == framework_id
    handler = RecordingHandler()
    driver = make_driver(sim.url, store=repo, framework_id=stored)
    await subscribed(driver, handler)
    assert handler.subscriptions[0].framework_id == framework_id
    assert handler.subscriptions[0].resubscribed is True
    await driver.stop()
    await store.close()
    assert [f.id for f in sim.frameworks()] == [framework_id]
    assert sim.record.calls["TEARDOWN"] == 0


async def test_missed_heartbeats_resubscribe_with_the_same_id(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(sim.url)
    await subscribed(driver, handler)
    sim.stop_heartbeats()
    await eventually(lambda: len(handler.subscriptions) == 2, timeout=10)
    assert len(handler.disconnects) == 1
    assert "no event" in handler.disconnects[0]
    assert driver.status.reconnects == 1
    first, second = handler.subscriptions
    assert second.framework_id == first.framework_id
    assert second.resubscribed is True
    assert len(sim.frameworks()) == 1


async def test_a_closed_stream_resubscribes(sim: SimulatedCluster, make_driver: MakeDriver) -> None:
    handler = RecordingHandler()
    driver = make_driver(sim.url)
    await subscribed(driver, handler)
    sim.close_stream(abort=True)
    await eventually(lambda: len(handler.subscriptions) == 2)
    lifecycle = [kind for kind in handler.order if kind in ("subscribed", "disconnected")]
    assert lifecycle == ["subscribed", "disconnected", "subscribed"]
    assert driver.status.state is ConnectionState.SUBSCRIBED
    assert driver.status.subscriptions == 2
    assert len(sim.frameworks()) == 1


async def test_an_error_event_is_fatal_and_nothing_resubscribes(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(sim.url)
    await subscribed(driver, handler)
    framework_id = handler.subscriptions[0].framework_id
    # A second scheduler takes the framework over: the first stream gets ERROR.
    usurper = make_driver(sim.url, framework_id=framework_id)
    with structlog.testing.capture_logs() as logs:
        await subscribed(usurper, RecordingHandler())
        await eventually(lambda: handler.errors)
        subscribes = sim.record.calls["SUBSCRIBE"]
        await eventually(lambda: gave_up(logs))  # the first driver's resubscribe loop is over
    assert handler.errors == ["Framework failed over"]
    assert sim.record.calls["SUBSCRIBE"] == subscribes
    assert driver.status.state is ConnectionState.DISCONNECTED
    assert "Framework failed over" in (driver.status.last_error or "")
    assert usurper.status.state is ConnectionState.SUBSCRIBED
    assert sim.record.teardown_received is False


async def test_bad_credentials_are_retried_with_a_clear_error(
    make_driver: MakeDriver, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("wrong", encoding="utf-8")
    async with SimulatedCluster(agents=0, credentials=(("scale", "right"),), **SIM) as sim:
        driver = make_driver(sim.url, principal="scale", secret_file=str(secret))
        with structlog.testing.capture_logs() as logs:
            await driver.start(RecordingHandler())
            # pymesos's I/O thread dies of each 401; the adapter subscribes again, and the
            # thread's death does not interrupt the main thread (it would stop this test).
            await eventually(
                lambda: sum(e["event"] == "mesos_unauthorized" for e in logs) >= 3, timeout=10
            )
        assert "401" in (driver.status.last_error or "")
        assert "mesos.secret_file" in (driver.status.last_error or "")
        assert driver.status.state is not ConnectionState.STOPPED
        assert sim.frameworks() == []


async def test_a_follower_redirects_to_the_leader(make_driver: MakeDriver) -> None:
    async with SimulatedCluster(agents=1, masters=2, **SIM) as sim:
        handler = RecordingHandler()
        driver = make_driver(sim.urls[1])
        await subscribed(driver, handler)
        leader_port = int(sim.addresses[0].rsplit(":", 1)[1])
        assert driver.status.master_port == leader_port
        assert sim.leader_url == sim.urls[0]


async def test_a_leader_failover_resubscribes_to_the_new_leader(make_driver: MakeDriver) -> None:
    async with SimulatedCluster(agents=1, masters=2, **SIM) as sim:
        handler = RecordingHandler()
        driver = make_driver(",".join(sim.urls))
        await subscribed(driver, handler)
        old_leader = sim.leader_url
        await sim.step_down()
        assert sim.leader_url != old_leader
        await eventually(lambda: len(handler.subscriptions) == 2, timeout=10)
        assert handler.subscriptions[1].framework_id == handler.subscriptions[0].framework_id
        assert sim.leader_url is not None
        assert driver.status.master_port == int(sim.leader_url.rsplit(":", 1)[1])


async def test_an_unreachable_master_is_skipped(
    sim: SimulatedCluster, make_driver: MakeDriver, unused_port: int
) -> None:
    handler = RecordingHandler()
    driver = make_driver(f"http://127.0.0.1:{unused_port},{sim.url}")
    await subscribed(driver, handler)
    assert driver.status.master_port == int(sim.url.rsplit(":", 1)[1])


async def test_a_silent_master_is_left_after_the_request_timeout(
    scripted: ScriptedMaster, sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    scripted.hang = True
    handler = RecordingHandler()
    driver = make_driver(f"{scripted.url},{sim.url}")
    await subscribed(driver, handler)
    assert len(scripted.subscribes) == 1
    assert driver.status.master_port == int(sim.url.rsplit(":", 1)[1])


async def test_a_different_framework_id_is_refused(
    scripted: ScriptedMaster, make_driver: MakeDriver
) -> None:
    scripted.script = [subscribed_event("someone-else")]
    handler = RecordingHandler()
    store = MemoryIdStore()
    driver = make_driver(scripted.url, framework_id="ours", store=store)
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await eventually(lambda: handler.errors)
        await eventually(lambda: gave_up(logs))  # the resubscribe loop is over: no new SUBSCRIBE
    assert "refusing to adopt it" in handler.errors[0]
    assert handler.subscriptions == []
    assert store.saved == []
    assert len(scripted.subscribes) == 1
    assert scripted.subscribes[0]["framework_id"] == {"value": "ours"}


async def test_a_failure_without_agent_keeps_the_stream(
    scripted: ScriptedMaster, make_driver: MakeDriver
) -> None:
    # pymesos itself would die of a KeyError on this FAILURE.
    scripted.script = [
        subscribed_event("fw-1"),
        {"type": "FAILURE", "failure": {}},
        {
            "type": "FAILURE",
            "failure": {"agent_id": {"value": "a1"}, "executor_id": {"value": "e1"}, "status": 1},
        },
        {"type": "RESCIND", "rescind": {"offer_id": {"value": "o1"}}},
    ]
    handler = RecordingHandler()
    driver = make_driver(scripted.url)
    await subscribed(driver, handler)
    await eventually(lambda: handler.rescinds)
    assert handler.failures == [(None, None), ("a1", "e1")]
    assert handler.rescinds == ["o1"]
    assert len(scripted.subscribes) == 1


async def test_a_leader_change_through_zookeeper_resubscribes_to_the_new_leader(
    zookeeper: str, make_driver: MakeDriver
) -> None:
    heartbeat = 1.0
    zk_url = f"zk://{zookeeper}/mesos-{uuid.uuid4().hex[:8]}"
    async with SimulatedCluster(
        masters=2, agents=1, zk=zk_url, **{**SIM, "heartbeat_interval": heartbeat}
    ) as sim:
        handler = RecordingHandler()
        driver = make_driver(zk_url)
        await subscribed(driver, handler)
        old_leader = sim.leader
        assert old_leader is not None
        assert driver.status.master_port == old_leader.port
        await sim.step_down()
        await eventually(on_new_leader(sim, old_leader, driver.status), timeout=2 * heartbeat)
        assert len(handler.subscriptions) >= 2
        assert {s.framework_id for s in handler.subscriptions} == {
            handler.subscriptions[0].framework_id
        }


async def test_a_redirect_loop_is_given_up_after_five_redirects(
    scripted: ScriptedMaster, make_driver: MakeDriver
) -> None:
    other = ScriptedMaster()
    await other.start()
    try:
        scripted.redirect_to = other.url.removeprefix("http://")
        other.redirect_to = scripted.url.removeprefix("http://")
        driver = make_driver(scripted.url)
        await driver.start(RecordingHandler())
        await eventually(lambda: "more than 5 redirects" in (driver.status.last_error or ""))
        # One SUBSCRIBE and five redirects in the first attempt, then a back-off.
        assert len(scripted.subscribes) + len(other.subscribes) >= 6
    finally:
        await other.close()


async def test_an_idle_call_connection_is_replaced(
    scripted: ScriptedMaster, make_driver: MakeDriver
) -> None:
    scripted.script = [subscribed_event("fw-1")]
    settings = PymesosSettings(request_timeout=2.0, call_idle_close=0.3)
    driver = make_driver(scripted.url, settings=settings)
    await subscribed(driver, RecordingHandler())
    await driver.decline(["o1"])
    await driver.decline(["o2"])
    await asyncio.sleep(0.5)  # time must pass: the connection idles past call_idle_close (0.3 s)
    await driver.decline(["o3"])
    first, second, third = scripted.call_peers
    assert first == second
    assert third != second


async def test_a_call_on_a_connection_the_master_dropped_is_resent_unless_accept(
    make_driver: MakeDriver,
) -> None:
    master = ScriptedMaster(keepalive_timeout=0.1)
    await master.start()
    try:
        master.script = [subscribed_event("fw-1")]
        settings = PymesosSettings(request_timeout=2.0, call_idle_close=60.0)
        driver = make_driver(master.url, settings=settings)
        handler = RecordingHandler()
        await subscribed(driver, handler)
        await driver.decline(["o1"])
        # The master closes the kept-alive call connection; the event stream's stays.
        await eventually(lambda: master.open_connections == 1)
        with structlog.testing.capture_logs() as logs:
            await driver.decline(["o2"])
        assert [e["call"] for e in logs if e["event"] == "pymesos_call_resent"] == ["DECLINE"]
        assert [call["decline"]["offer_ids"] for call in master.calls] == [
            [{"value": "o1"}],
            [{"value": "o2"}],
        ]
        await eventually(lambda: master.open_connections == 1)  # closed again
        offer_less = Launch(["o3"], [])
        with pytest.raises(CallOutcomeUnknownError):  # the client cannot tell it was not read
            await driver.accept(offer_less)
        assert [call["type"] for call in master.calls] == ["DECLINE", "DECLINE"]
    finally:
        await master.close()


async def test_the_stream_is_not_read_while_the_handler_has_no_room(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(sim.url)
    await subscribed(driver, handler)
    offer = await first_offer(handler)
    room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    handler.room = room
    tasks = [task_on(offer, f"t{i}", **{"sim.duration": "60"}) for i in range(4)]
    await driver.accept(Launch([offer.id.value], tasks))
    await eventually(lambda: handler.updates)
    # Unacknowledged, each agent stream resends its TASK_STARTING every 0.3 s and more (doubling):
    # about 4 x 4 updates in the next 2.5 s if pymesos kept reading, and heartbeats every 0.2 s.
    await asyncio.sleep(2.5)  # time must pass: held over several resends and the watchdog limit
    held = len(handler.updates)
    # What pymesos had read and posted before the loop closed the gate, no resend after it.
    assert held < 2 * len(tasks)
    assert handler.disconnects == []  # the watchdog counts the hold as ours
    handler.room = None
    room.set_result(None)
    await eventually(lambda: len(handler.updates) > held)
    assert handler.disconnects == []
    assert len(handler.subscriptions) == 1
