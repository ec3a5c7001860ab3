"""``mesos.give_up_after``: the resubscribe loop ends after that long without a subscription,
counted from the start and again from the end of every subscription; 0 never gives up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest
import structlog
from driver_fakes import FAST, FakeMaster, MakeDriver, RecordingHandler, eventually, gave_up
from ports import free_port

from scale_scheduler.daemon.mesos.driver import NotConnectedError
from scale_scheduler.daemon.mesos.give_up import GiveUpDeadline


class Now:
    """A time source the test moves by hand."""

    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


def test_the_deadline_counts_from_the_start_and_again_from_each_restart() -> None:
    now = Now()
    deadline = GiveUpDeadline(10.0, now)
    now.value += 9.0
    assert (deadline.remaining(), deadline.expired) == (1.0, False)
    assert deadline.bound(5.0) == 1.0
    assert deadline.bound(None) == 1.0
    deadline.restart()
    now.value += 9.5
    assert (deadline.remaining(), deadline.expired) == (0.5, False)
    now.value += 0.5
    assert (deadline.remaining(), deadline.expired) == (0.0, True)
    assert deadline.bound(5.0) == 0.0


def test_a_limit_of_0_never_gives_up() -> None:
    now = Now()
    deadline = GiveUpDeadline(0.0, now)
    now.value += 1e9
    assert (deadline.remaining(), deadline.expired) == (None, False)
    assert deadline.bound(5.0) == 5.0
    assert deadline.bound(None) is None


def error_lines(logs: list[dict[str, object]]) -> list[object]:
    return [e["event"] for e in logs if e["log_level"] == "error"]


async def test_no_master_listening_gives_up_after_the_limit(make_driver: MakeDriver) -> None:
    handler = RecordingHandler()
    driver = make_driver(
        f"http://127.0.0.1:{free_port()}", settings=replace(FAST, give_up_after=0.5)
    )
    loop = asyncio.get_running_loop()
    with structlog.testing.capture_logs() as logs:
        started = loop.time()
        await driver.start(handler)
        await eventually(lambda: gave_up(logs))
    assert loop.time() - started >= 0.5
    assert handler.order == ["subscription_lost"]
    [reason] = handler.losses
    assert reason.startswith(
        "no subscription to a Mesos master for 0.5s (mesos.give_up_after); last error: "
    )
    assert driver.status.last_error == reason
    assert len([e for e in logs if e["event"] == "mesos_subscribe_failed"]) >= 2  # it retried
    assert error_lines(logs) == []  # the daemon logs the one error line (daemon_fatal)
    with pytest.raises(NotConnectedError):
        await driver.revive([])


async def test_the_count_starts_again_when_a_subscription_ends(
    master: FakeMaster, make_driver: MakeDriver
) -> None:
    handler = RecordingHandler()
    driver = make_driver(master.url, settings=replace(FAST, give_up_after=1.0))
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await eventually(lambda: handler.subscriptions)
        await asyncio.sleep(1.2)  # time must pass: subscribed for longer than give_up_after
        assert handler.losses == []
        master.statuses = [503] * 1000  # every SUBSCRIBE from now on fails
        await master.close_streams()
        await eventually(lambda: gave_up(logs))
    assert handler.order == ["subscribed", "disconnected", "subscription_lost"]
    names = [e["event"] for e in logs]
    lost = names.index("mesos_driver_gave_up")
    # Counted from the loss: the driver tried again after it before giving up (counted from
    # the start, the deadline had passed already and it would have given up at once).
    assert "mesos_subscribe_failed" in names[:lost]
    assert len(master.subscribes) >= 2


class NoLeader:
    """A ``MasterDetector`` that never knows a leader (a ZooKeeper with no master registered)."""

    def candidates(self) -> list[str]:
        return []

    async def start(self, on_change: Callable[[], None]) -> None:
        return None

    async def stop(self) -> None:
        return None


async def test_no_leader_known_gives_up_after_the_limit(make_driver: MakeDriver) -> None:
    handler = RecordingHandler()
    driver = make_driver(detector=NoLeader(), settings=replace(FAST, give_up_after=0.3))
    with structlog.testing.capture_logs() as logs:
        await driver.start(handler)
        await eventually(lambda: gave_up(logs))
    [reason] = handler.losses
    assert reason.endswith("last error: no leading Mesos master is known")
    assert error_lines(logs) == []
