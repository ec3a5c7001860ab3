"""No Mesos call without a live term: the driver guard refuses and reports, never sends."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from scale_scheduler.daemon.mesos.driver import (
    ConnectionStatus,
    DriverError,
    EventHandler,
    Launch,
    NotConnectedError,
)
from scale_scheduler.daemon.service.leader_guard import LeaderGuardedDriver


class RecordingDriver:
    def __init__(self) -> None:
        self.status = ConnectionStatus()
        self.calls: list[str] = []

    async def start(self, handler: EventHandler) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")

    async def accept(self, launch: Launch, refuse_seconds: float | None = None) -> None:
        self.calls.append("accept")

    async def decline(self, offer_ids: Sequence[str], refuse_seconds: float | None = None) -> None:
        self.calls.append("decline")

    async def suppress(self, roles: Sequence[str]) -> None:
        self.calls.append("suppress")

    async def revive(self, roles: Sequence[str]) -> None:
        self.calls.append("revive")

    async def kill(self, task_id: str, agent_id: str | None = None) -> None:
        self.calls.append("kill")

    async def acknowledge(self, agent_id: str, task_id: str, uuid: str) -> None:
        self.calls.append("acknowledge")

    async def acknowledge_many(
        self, acks: Sequence[tuple[str, str, str]]
    ) -> list[DriverError | None]:
        self.calls.append("acknowledge_many")
        return [None for _ in acks]

    async def reconcile(self, tasks: Sequence[tuple[str, str | None]]) -> None:
        self.calls.append("reconcile")

    async def teardown(self) -> None:
        self.calls.append("teardown")


async def test_calls_pass_while_the_term_is_live_and_none_after() -> None:
    inner = RecordingDriver()
    live = [True]
    deposed: list[str] = []
    driver = LeaderGuardedDriver(inner, lambda: live[0], deposed.append)
    assert driver.status is inner.status
    await driver.decline(["o1"])
    await driver.acknowledge("a", "t", "u")
    assert inner.calls == ["decline", "acknowledge"]
    live[0] = False
    calls = [
        driver.accept(Launch(["o2"], [])),
        driver.decline(["o2"]),
        driver.suppress(["*"]),
        driver.revive(["*"]),
        driver.kill("t"),
        driver.acknowledge("a", "t", "u"),
        driver.reconcile([]),
        driver.teardown(),
    ]
    for call in calls:
        with pytest.raises(NotConnectedError, match="not sent: this instance is not the leader"):
            await call
    errors = await driver.acknowledge_many([("a", "t1", "u"), ("a", "t2", "u")])
    assert [type(e) for e in errors] == [NotConnectedError, NotConnectedError]  # never raises
    assert inner.calls == ["decline", "acknowledge"]  # nothing reached the master
    assert driver.refused == len(calls) + 2
    assert deposed[0] == "ACCEPT not sent: this instance is not the leader (no live term)"
    await driver.stop()  # closing the stream is always allowed
    assert inner.calls[-1] == "stop"
