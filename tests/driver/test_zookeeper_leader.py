"""Leader detection through a real ZooKeeper, and the driver following the leader there."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from driver_fakes import FakeMaster, MakeDriver, RecordingHandler, eventually
from kazoo.client import KazooClient

from scale_scheduler.daemon.mesos.master_detector import ZooKeeperMasterDetector


class Registry:
    """Registers masters the way Mesos does: ephemeral sequential ``json.info_`` nodes."""

    def __init__(self, hosts: str, path: str) -> None:
        self.path = path
        self.client = KazooClient(hosts=hosts, timeout=5.0)

    async def start(self) -> None:
        await asyncio.to_thread(self.client.start, 15.0)

    async def stop(self) -> None:
        await asyncio.to_thread(self.client.stop)
        self.client.close()

    async def register(self, master: FakeMaster, host: str = "127.0.0.1") -> str:
        info = {
            "id": master.name,
            "ip": 16777343,
            "port": master.port,
            "hostname": host,
            "address": {"hostname": host, "ip": "127.0.0.1", "port": master.port},
        }
        node: str = await asyncio.to_thread(
            self.client.create,
            f"{self.path}/json.info_",
            json.dumps(info).encode(),
            ephemeral=True,
            sequence=True,
            makepath=True,
        )
        return node

    async def unregister(self, node: str) -> None:
        await asyncio.to_thread(self.client.delete, node)

    async def put(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(
            self.client.create, f"{self.path}/{name}", data, ephemeral=True, makepath=True
        )


@pytest.fixture
async def registry(zookeeper: str) -> AsyncIterator[Registry]:
    reg = Registry(zookeeper, f"/mesos-{uuid.uuid4().hex[:8]}")
    await reg.start()
    yield reg
    await reg.stop()


@pytest.fixture
async def detector(zookeeper: str, registry: Registry) -> AsyncIterator[Any]:
    found = ZooKeeperMasterDetector(f"zk://{zookeeper}{registry.path}", retry_max_delay=1.0)
    changes: list[str | None] = []
    await found.start(lambda: changes.append(found.leader))
    found.changes = changes  # type: ignore[attr-defined]
    yield found
    await found.stop()


async def test_detector_follows_the_lowest_sequence(
    registry: Registry,
    detector: ZooKeeperMasterDetector,
    master: FakeMaster,
    second_master: FakeMaster,
) -> None:
    await asyncio.sleep(0.2)  # nothing may happen: the detector has started watching ZooKeeper
    assert detector.candidates() == []  # the path does not even exist yet
    first = await registry.register(master)
    await eventually(lambda: detector.leader == master.url)
    await registry.put("log_replicas", b"")
    second = await registry.register(second_master)
    await asyncio.sleep(0.3)  # nothing may happen: time for the watch to see the second master
    assert detector.leader == master.url  # a later master does not take over
    await registry.unregister(first)
    await eventually(lambda: detector.leader == second_master.url)
    assert detector.leader_info is not None
    assert detector.leader_info.id == "m2"
    await registry.unregister(second)
    await eventually(lambda: detector.leader is None)
    assert detector.changes == [master.url, second_master.url, None]  # type: ignore[attr-defined]


async def test_unreadable_leader_data_means_no_leader(
    registry: Registry, detector: ZooKeeperMasterDetector, master: FakeMaster
) -> None:
    with structlog.testing.capture_logs() as logs:
        await registry.put("json.info_0000000000", b"garbage")
        await registry.register(master)  # a higher sequence: not the leader
        await eventually(lambda: any(e["event"] == "zookeeper_leader_unreadable" for e in logs))
    assert detector.candidates() == []


async def test_driver_moves_to_the_new_leader_within_two_heartbeats(
    zookeeper: str,
    registry: Registry,
    master: FakeMaster,
    second_master: FakeMaster,
    make_driver: MakeDriver,
) -> None:
    heartbeat = 1.0
    master.heartbeat = second_master.heartbeat = heartbeat
    first = await registry.register(master)
    await registry.register(second_master)
    handler = RecordingHandler()
    detector = ZooKeeperMasterDetector(f"zk://{zookeeper}{registry.path}", retry_max_delay=1.0)
    driver = make_driver(detector=detector)
    await driver.start(handler)
    await eventually(lambda: handler.subscriptions)
    assert driver.status.master_hostname == "m1.example"
    await registry.unregister(first)  # the old leader's stream stays up and heartbeating
    await eventually(lambda: len(handler.subscriptions) == 2, timeout=2 * heartbeat)
    assert handler.disconnects == ["the leading master changed"]
    assert driver.status.master_hostname == "m2.example"
    assert second_master.subscribes[0]["framework_id"] == {"value": "m1-fw-1"}
