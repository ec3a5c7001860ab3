"""Master detection: address parsing, ZooKeeper leader choice, and the driver following a leader."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from driver_fakes import FakeMaster, MakeDriver, RecordingHandler, eventually

from scale_scheduler.daemon.mesos.master_detector import (
    StaticMasterDetector,
    ZooKeeperMasterDetector,
    detector_from_config,
    leader_child,
    master_url_from_info,
    normalize_master_url,
    parse_zk_url,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://m1:5050", "http://m1:5050"),
        ("m1", "http://m1:5050"),
        ("m1:6000", "http://m1:6000"),
        ("//m2:5051/api/v1/scheduler", "http://m2:5051"),
        ("https://m3/", "https://m3:5050"),
        (" http://10.0.0.1:5050/ ", "http://10.0.0.1:5050"),
        ("http://[::1]:5050", "http://[::1]:5050"),
    ],
)
def test_normalize_master_url(text: str, expected: str) -> None:
    assert normalize_master_url(text) == expected


def test_normalize_rejects_other_schemes() -> None:
    with pytest.raises(ValueError, match="not a master address"):
        normalize_master_url("ftp://m1:21")


def test_static_detector_lists_every_master() -> None:
    detector = StaticMasterDetector(["m1:5050", " http://m2:5050", ""])
    assert detector.candidates() == ["http://m1:5050", "http://m2:5050"]


def test_detector_from_config() -> None:
    static = detector_from_config("http://m1:5050,m2:5051")
    assert static.candidates() == ["http://m1:5050", "http://m2:5051"]
    zk = detector_from_config("zk://z1:2181,z2:2181/mesos")
    assert isinstance(zk, ZooKeeperMasterDetector)
    assert zk.candidates() == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("zk://z1:2181,z2:2181/mesos", ("z1:2181,z2:2181", "/mesos", None)),
        ("zk://u:p@z1:2181/a/b/", ("z1:2181", "/a/b", "u:p")),
    ],
)
def test_parse_zk_url(url: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_zk_url(url) == expected


@pytest.mark.parametrize("url", ["zk://z1:2181", "zk:///mesos", "http://z1/mesos"])
def test_parse_zk_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match="zk://"):
        parse_zk_url(url)


def test_leader_is_the_lowest_json_info_sequence() -> None:
    children = ["json.info_0000000012", "log_replicas", "info_0000000001", "json.info_0000000009"]
    assert leader_child(children) == "json.info_0000000009"
    assert leader_child(["log_replicas", "info_0000000001"]) is None
    assert leader_child([]) is None


def test_master_url_from_info_prefers_the_address() -> None:
    data = (
        b'{"id":"x","ip":16777343,"port":5050,"hostname":"old",'
        b'"address":{"hostname":"m1.example","ip":"10.0.0.1","port":5051}}'
    )
    url, info = master_url_from_info(data)
    assert url == "http://m1.example:5051"
    assert info.id == "x"
    url, _ = master_url_from_info(b'{"address":{"ip":"10.0.0.2","port":5050}}')
    assert url == "http://10.0.0.2:5050"
    with pytest.raises(ValueError, match="MasterInfo"):
        master_url_from_info(b"not json")
    with pytest.raises(ValueError, match="no host"):
        master_url_from_info(b'{"port":5050}')


class ManualDetector:
    """A detector whose leader the test sets."""

    def __init__(self) -> None:
        self.leader: str | None = None
        self._on_change: Callable[[], None] | None = None

    def candidates(self) -> list[str]:
        return [self.leader] if self.leader else []

    async def start(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change

    async def stop(self) -> None:
        return None

    def set_leader(self, url: str | None) -> None:
        self.leader = url
        assert self._on_change is not None
        self._on_change()


async def test_driver_follows_a_leader_change_at_once(
    master: FakeMaster, second_master: FakeMaster, make_driver: MakeDriver
) -> None:
    detector = ManualDetector()
    handler = RecordingHandler()
    driver = make_driver(detector=detector)
    await driver.start(handler)
    await eventually(lambda: driver.status.last_error == "no leading Mesos master is known")
    detector.set_leader(master.url)
    await eventually(lambda: handler.subscriptions)
    # The old leader keeps heartbeating: only the detector can make the driver move.
    detector.set_leader(second_master.url)
    await eventually(lambda: len(handler.subscriptions) == 2)
    assert handler.disconnects == ["the leading master changed"]
    assert second_master.subscribes[0]["framework_id"] == {"value": "m1-fw-1"}
    assert driver.status.master_hostname == "m2.example"
    assert len(master.subscribes) == 1
    # The same leader announced again changes nothing.
    detector.set_leader(second_master.url)
    await asyncio.sleep(0.1)  # nothing may happen: a resubscribe would start at once
    assert len(second_master.subscribes) == 1
