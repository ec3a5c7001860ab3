"""The native driver against the in-process simulated Mesos cluster (scale_scheduler.simulator)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from daemonkit import on_new_leader
from driver_fakes import MakeDriver, RecordingHandler, driver_config, eventually

from scale_scheduler.daemon.mesos.driver import (
    CallOutcomeUnknownError,
    ConnectionState,
    DriverError,
    Launch,
)
from scale_scheduler.daemon.mesos.master_detector import ZooKeeperMasterDetector
from scale_scheduler.daemon.mesos.mesos_types import (
    CommandInfo,
    Offer,
    TaskInfo,
    TaskStatus,
    Value,
    scalar,
)
from scale_scheduler.daemon.mesos.native_driver import DriverSettings
from scale_scheduler.simulator import SimulatedCluster
from scale_scheduler.state.framework import FrameworkIdRepository
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.store import Store

SIM = {
    "heartbeat_interval": 0.2,
    "allocation_interval": 0.05,
    "task_duration": 0.2,
    "task_start_delay": 0.04,
    "status_update_retry": 0.3,
    "agent_reregister_delay": 0.05,
    "seed": 11,
}


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedCluster]:
    async with SimulatedCluster(agents=1, **SIM) as cluster:
        yield cluster


async def get_frameworks(url: str, authorization: str | None = None) -> list[dict[str, Any]]:
    headers = {"Authorization": authorization} if authorization else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/api/v1", json={"type": "GET_FRAMEWORKS"}, headers=headers) as response,
    ):
        assert response.status == 200
        body = await response.json()
    frameworks: list[dict[str, Any]] = body["get_frameworks"]["frameworks"]
    return frameworks


async def test_registration_survives_a_restart_through_sqlite(
    sim: SimulatedCluster, make_driver: MakeDriver, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = await Store.open(db)
    repo = FrameworkIdRepository(SqliteState(store))
    assert await repo.load_framework_id() is None
    handler = RecordingHandler()
    driver = make_driver(sim.url, store=repo)
    await driver.start(handler)
    await eventually(lambda: handler.subscriptions)
    framework_id = handler.subscriptions[0].framework_id
    await driver.stop()
    await store.close()

    store = await Store.open(db)  # a new process: the id comes back from disk
    repo = FrameworkIdRepository(SqliteState(store))
    stored = await repo.load_framework_id()
    assert stored == framework_id
    handler = RecordingHandler()
    driver = make_driver(sim.url, store=repo, framework_id=stored)
    await driver.start(handler)
    await eventually(lambda: handler.subscriptions)
    assert handler.subscriptions[0].framework_id == framework_id
    assert handler.subscriptions[0].resubscribed is True
    assert [f.id for f in sim.frameworks()] == [framework_id]
    await driver.stop()
    await store.close()


async def test_stop_sends_no_teardown_and_the_framework_stays(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(sim.url)
    await driver.start(handler)
    await eventually(lambda: handler.subscriptions)
    await driver.stop()
    assert sim.record.teardown_received is False
    assert sim.record.calls["TEARDOWN"] == 0
    frameworks = await get_frameworks(sim.url)
    ids = [f["framework_info"]["id"]["value"] for f in frameworks]
    assert ids == [handler.subscriptions[0].framework_id]


async def test_get_frameworks_shows_the_framework_info(
    make_driver: MakeDriver, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    config = driver_config(
        framework_name="scale-test",
        roles=["batch", "gpu"],
        principal="scale",
        secret_file=str(secret),
        gpu_resources=True,
        failover_timeout=3600.0,
    )
    async with SimulatedCluster(agents=0, credentials=(("scale", "s3cret"),), **SIM) as sim:
        handler = RecordingHandler()
        driver = make_driver(sim.url, config=config)
        await driver.start(handler)
        await eventually(lambda: handler.subscriptions)
        frameworks = await get_frameworks(
            sim.url, "Basic " + base64.b64encode(b"scale:s3cret").decode()
        )
        await driver.stop()
    info = frameworks[0]["framework_info"]
    assert info["id"] == {"value": handler.subscriptions[0].framework_id}
    assert info["name"] == "scale-test"
    assert info["user"] == "svc"
    assert info["roles"] == ["batch", "gpu"]
    assert info["principal"] == "scale"
    assert info["failover_timeout"] == 3600.0
    assert info["checkpoint"] is True
    assert info["hostname"] == "sched.test"
    assert info["webui_url"] == "http://sched.test:8000/"
    assert [c["type"] for c in info["capabilities"]] == [
        "MULTI_ROLE",
        "PARTITION_AWARE",
        "TASK_KILLING_STATE",
        "GPU_RESOURCES",
    ]


async def test_wrong_credentials_are_reported(make_driver: MakeDriver, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("wrong", encoding="utf-8")
    config = driver_config(principal="scale", secret_file=str(secret))
    async with SimulatedCluster(agents=0, credentials=(("scale", "s3cret"),), **SIM) as sim:
        driver = make_driver(sim.url, config=config)
        with structlog.testing.capture_logs() as logs:
            await driver.start(RecordingHandler())
            await eventually(lambda: "401" in (driver.status.last_error or ""))
        await driver.stop()
    assert any(e["event"] == "mesos_unauthorized" and e["log_level"] == "error" for e in logs)
    assert "wrong" not in repr(logs)


async def test_redirect_from_a_non_leader(make_driver: MakeDriver) -> None:
    async with SimulatedCluster(masters=2, agents=0, **SIM) as sim:
        follower = next(m for m in sim.masters if not m.leading)
        handler = RecordingHandler()
        driver = make_driver(follower.url)
        with structlog.testing.capture_logs() as logs:
            await driver.start(handler)
            await eventually(lambda: handler.subscriptions)
        assert any(e["event"] == "mesos_redirected" for e in logs)
        assert sim.leader is not None
        assert driver.status.master_port == sim.leader.port
        await driver.revive([])
        assert sim.record.calls["REVIVE"] == 1
        await driver.stop()


async def test_503_and_refused_connections_are_retried(
    sim: SimulatedCluster, make_driver: MakeDriver, unused_port: int
) -> None:
    sim.fail_calls(503, call_type="SUBSCRIBE", count=2, message="No leader elected")
    handler = RecordingHandler()
    driver = make_driver(f"http://127.0.0.1:{unused_port}", sim.url)
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await eventually(lambda: handler.subscriptions)
    failures = [e["error"] for e in logs if e["event"] == "mesos_subscribe_failed"]
    assert any("cannot reach" in f for f in failures)
    assert sum("503" in f for f in failures) == 2
    assert len([e for e in logs if e["event"] == "mesos_resubscribe_scheduled"]) >= 3


@pytest.mark.parametrize("fault", ["stop_heartbeats", "hang_stream"])
async def test_a_silent_stream_is_replaced(
    sim: SimulatedCluster, make_driver: MakeDriver, fault: str
) -> None:
    handler = RecordingHandler()
    driver = make_driver(sim.url)
    await driver.start(handler)
    await eventually(lambda: handler.subscriptions)
    getattr(sim, fault)()
    await eventually(lambda: len(handler.subscriptions) == 2)
    assert handler.disconnects == ["no event from the master for 1s"]  # 5 x 0.2 s
    assert driver.status.reconnects == 1
    assert driver.status.state is ConnectionState.SUBSCRIBED


async def test_a_closed_stream_is_resubscribed(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(sim.url)
    await driver.start(handler)
    await eventually(lambda: handler.subscriptions)
    sim.close_stream(abort=True)
    await eventually(lambda: len(handler.subscriptions) == 2)
    assert handler.subscriptions[1].framework_id == handler.subscriptions[0].framework_id
    assert len(sim.frameworks()) == 1


@pytest.mark.parametrize("kind", ["bad_length", "oversize"])
async def test_corrupt_records_close_the_stream(
    sim: SimulatedCluster, make_driver: MakeDriver, kind: str
) -> None:
    settings = DriverSettings(backoff_initial=0.05, backoff_max=0.2, max_record_bytes=1 << 20)
    handler = RecordingHandler()
    driver = make_driver(sim.url, settings=settings)
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await eventually(lambda: handler.subscriptions)
        sim.inject(kind, size=2 << 20)
        await eventually(lambda: len(handler.subscriptions) == 2)
    assert any(e["event"] == "mesos_stream_corrupt" for e in logs)


@pytest.mark.parametrize(
    ("kind", "event"),
    [("invalid_json", "mesos_event_undecodable"), ("unknown_event", "mesos_event_unknown")],
)
async def test_bad_events_are_skipped(
    sim: SimulatedCluster, make_driver: MakeDriver, kind: str, event: str
) -> None:
    handler = RecordingHandler()
    driver = make_driver(sim.url)
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await eventually(lambda: handler.subscriptions)
        sim.inject(kind)
        await eventually(lambda: any(e["event"] == event for e in logs))
        await eventually(lambda: handler.offers)
        rescinded = sim.rescind_offers()
        assert rescinded > 0
        # The rescinds come after the bad event on the same stream: it was skipped, not fatal.
        await eventually(lambda: len(handler.rescinds) >= rescinded)
    assert handler.disconnects == []
    assert len(handler.subscriptions) == 1


async def test_error_after_teardown_reaches_the_handler(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    first = RecordingHandler()
    driver = make_driver(sim.url)
    await driver.start(first)
    await eventually(lambda: first.subscriptions)
    framework_id = first.subscriptions[0].framework_id
    await driver.teardown()
    assert sim.record.teardown_received is True
    assert driver.status.state is ConnectionState.STOPPED

    handler = RecordingHandler()
    again = make_driver(sim.url, framework_id=framework_id)
    with structlog.testing.capture_logs() as logs:
        await again.start(handler)
        await eventually(lambda: handler.errors)
    assert handler.errors == ["Framework has been removed"]
    assert handler.subscriptions == []
    assert any(e["event"] == "mesos_error_event" and e["log_level"] == "info" for e in logs)
    assert "Framework has been removed" in (again.status.last_error or "")


class Launcher(RecordingHandler):
    """Launches one task on the first offer and acknowledges every update carrying a uuid."""

    def __init__(self) -> None:
        super().__init__()
        self.driver: Any = None
        self.jobs: set[asyncio.Task[None]] = set()
        self.launched = False

    def _spawn(self, coro: Any) -> None:
        job = asyncio.ensure_future(coro)
        self.jobs.add(job)
        job.add_done_callback(self.jobs.discard)

    def on_offers(self, offers: list[Offer]) -> None:
        super().on_offers(offers)
        for offer in offers:
            if self.launched:
                self._spawn(self.driver.decline([offer.id.value], refuse_seconds=60.0))
                continue
            self.launched = True
            cpus = next(r for r in offer.resources if r.name == "cpus")
            mem = next(r for r in offer.resources if r.name == "mem")
            task = TaskInfo(
                name="t1",
                task_id=Value("t1"),
                agent_id=offer.agent_id,
                resources=[scalar("cpus", 0.5, like=cpus), scalar("mem", 64.0, like=mem)],
                command=CommandInfo(value="true"),
            )
            self._spawn(self.driver.accept(Launch([offer.id.value], [task]), refuse_seconds=5.0))

    def on_update(self, status: TaskStatus) -> None:
        super().on_update(status)
        if status.uuid is not None and status.agent_id is not None:
            self._spawn(
                self.driver.acknowledge(status.agent_id.value, status.task_id.value, status.uuid)
            )


async def test_launch_and_acknowledge_round_trip(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    handler = Launcher()
    driver = make_driver(sim.url)
    handler.driver = driver
    await driver.start(handler)
    await eventually(lambda: any(u.state == "TASK_FINISHED" for u in handler.updates))
    await eventually(lambda: not handler.jobs)
    assert [u.state for u in handler.updates] == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert sim.record.calls["ACKNOWLEDGE"] == 3
    assert sim.record.launch_counts == {"t1": 1}
    agent_id = handler.updates[0].agent_id
    assert agent_id is not None
    await driver.reconcile([("t1", agent_id.value)])
    await eventually(lambda: len(handler.updates) == 4)
    assert handler.updates[3].task_id.value == "t1"
    assert handler.updates[3].uuid is None  # a reconciliation answer: nothing to acknowledge


async def test_leader_change_through_zookeeper(zookeeper: str, make_driver: MakeDriver) -> None:
    heartbeat = 1.0
    zk_url = f"zk://{zookeeper}/mesos-{uuid.uuid4().hex[:8]}"
    async with SimulatedCluster(
        masters=2, agents=1, zk=zk_url, **{**SIM, "heartbeat_interval": heartbeat}
    ) as sim:
        handler = RecordingHandler()
        driver = make_driver(detector=ZooKeeperMasterDetector(zk_url, retry_max_delay=1.0))
        await driver.start(handler)
        await eventually(lambda: handler.subscriptions)
        old_leader = sim.leader
        assert old_leader is not None
        assert driver.status.master_port == old_leader.port
        await sim.step_down()
        await eventually(on_new_leader(sim, old_leader, driver.status), timeout=2 * heartbeat)
        assert len(handler.subscriptions) >= 2
        assert {s.framework_id for s in handler.subscriptions} == {
            handler.subscriptions[0].framework_id
        }
        await driver.stop()


def one_task(offer: Offer, task_id: str) -> TaskInfo:
    cpus = next(r for r in offer.resources if r.name == "cpus")
    mem = next(r for r in offer.resources if r.name == "mem")
    return TaskInfo(
        name=task_id,
        task_id=Value(task_id),
        agent_id=offer.agent_id,
        resources=[scalar("cpus", 0.5, like=cpus), scalar("mem", 64.0, like=mem)],
        command=CommandInfo(value="true"),
    )


async def test_an_accept_timing_out_at_the_master_has_an_unknown_outcome(
    sim: SimulatedCluster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    settings = DriverSettings(request_timeout=0.3, backoff_initial=0.05, backoff_max=0.2)
    driver = make_driver(sim.url, settings=settings)
    await driver.start(handler)
    await eventually(lambda: handler.offers)
    offer = handler.offers[0][0]
    sim.delay_calls(0.8, "ACCEPT", count=1)
    with pytest.raises(CallOutcomeUnknownError, match="timed out"):
        await driver.accept(Launch([offer.id.value], [one_task(offer, "t1")]))
    assert sim.record.calls["ACCEPT"] == 1  # it reached the master


async def test_accept_refusals_by_status(sim: SimulatedCluster, make_driver: MakeDriver) -> None:
    handler = RecordingHandler()
    driver = make_driver(sim.url)
    await driver.start(handler)
    await eventually(lambda: handler.offers)
    offer = handler.offers[0][0]
    launch = Launch([offer.id.value], [one_task(offer, "t1")])
    sim.fail_calls(500, "ACCEPT", count=1)
    with pytest.raises(CallOutcomeUnknownError, match="HTTP 500"):
        await driver.accept(launch)
    sim.fail_calls(400, "ACCEPT", count=1)
    with pytest.raises(DriverError, match="HTTP 400") as raised:
        await driver.accept(launch)
    assert not isinstance(raised.value, CallOutcomeUnknownError)
    assert sim.record.launch_counts == {}
