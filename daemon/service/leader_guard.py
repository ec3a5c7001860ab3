"""The leader's guard at the driver seam: no Mesos call without a live term.

``LeaderGuardedDriver`` wraps the daemon's ``SchedulerDriver``: before every call it asks the
leadership whether this instance may act (it leads, and its term has not passed on the monotonic
clock). When it may not, the call is not sent: it raises ``NotConnectedError`` (a ``DriverError``:
surely not applied, which every caller already handles) and ``on_deposed`` is told, once, so the
daemon stops. A paused or partitioned leader that wakes up after its term therefore calls nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scale_scheduler.daemon.mesos.driver import (
    ConnectionStatus,
    DriverError,
    EventHandler,
    Launch,
    NotConnectedError,
    SchedulerDriver,
)


class LeaderGuardedDriver:
    def __init__(
        self,
        driver: SchedulerDriver,
        may_act: Callable[[], bool],
        on_deposed: Callable[[str], None],
    ) -> None:
        self._driver = driver
        self.wrapped = driver
        """The driver every call goes to once the term allows it."""
        self._may_act = may_act
        self._on_deposed = on_deposed
        self.status: ConnectionStatus = driver.status
        self.refused = 0
        """Calls not sent because this instance did not hold a live term."""

    def _refusal(self, call: str, count: int = 1) -> NotConnectedError | None:
        """None when this instance may act; else the error of ``count`` calls not sent."""
        if self._may_act():
            return None
        self.refused += count
        message = f"{call} not sent: this instance is not the leader (no live term)"
        self._on_deposed(message)
        return NotConnectedError(message)

    def _check(self, call: str) -> None:
        error = self._refusal(call)
        if error is not None:
            raise error

    async def start(self, handler: EventHandler) -> None:
        self._check("SUBSCRIBE")
        await self._driver.start(handler)

    async def stop(self) -> None:
        await self._driver.stop()

    async def accept(self, launch: Launch, refuse_seconds: float | None = None) -> None:
        self._check("ACCEPT")
        await self._driver.accept(launch, refuse_seconds)

    async def decline(self, offer_ids: Sequence[str], refuse_seconds: float | None = None) -> None:
        self._check("DECLINE")
        await self._driver.decline(offer_ids, refuse_seconds)

    async def suppress(self, roles: Sequence[str]) -> None:
        self._check("SUPPRESS")
        await self._driver.suppress(roles)

    async def revive(self, roles: Sequence[str]) -> None:
        self._check("REVIVE")
        await self._driver.revive(roles)

    async def kill(
        self, task_id: str, agent_id: str | None = None, grace_period: float | None = None
    ) -> None:
        self._check("KILL")
        await self._driver.kill(task_id, agent_id, grace_period)

    async def acknowledge(self, agent_id: str, task_id: str, uuid: str) -> None:
        self._check("ACKNOWLEDGE")
        await self._driver.acknowledge(agent_id, task_id, uuid)

    async def acknowledge_many(
        self, acks: Sequence[tuple[str, str, str]]
    ) -> list[DriverError | None]:
        error = self._refusal("ACKNOWLEDGE", len(acks))
        if error is not None:
            return [error for _ in acks]
        return await self._driver.acknowledge_many(acks)

    async def reconcile(self, tasks: Sequence[tuple[str, str | None]]) -> None:
        self._check("RECONCILE")
        await self._driver.reconcile(tasks)

    async def teardown(self) -> None:
        self._check("TEARDOWN")
        await self._driver.teardown()
