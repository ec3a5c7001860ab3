"""The seam between the scheduling core and a Mesos connection.

``SchedulerDriver`` is what the core calls (the native asyncio driver and the pymesos adapter both
implement it); ``EventHandler`` is what a driver calls back with decoded events. Handlers are plain
synchronous methods that must not block: the core queues the work on the event loop itself, so a
driver never waits on the core to read its stream. ``ConnectionStatus`` is the live, read-only view
of the connection that ``/status/`` and the health checks serve.

This module holds interfaces and small value types only.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from scale_scheduler.daemon.mesos.mesos_types import MasterInfo, Offer, TaskInfo, TaskStatus


class DriverError(Exception):
    """A call failed. Raised as such, it surely did not reach the master or was refused by it
    (not connected, connection refused, answered 3xx or 4xx): nothing was applied."""


class NotConnectedError(DriverError):
    """A call was made while no subscription is live; nothing was sent."""


class CallOutcomeUnknownError(DriverError):
    """A call failed after it may have reached the master (timed out once sent, connection lost
    before the answer, answered 5xx): the master may have applied it or not. A caller to whom a
    repeat matters (ACCEPT) must ask the master (reconcile) instead of assuming either."""


class ConnectionState(str, enum.Enum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"
    SUBSCRIBED = "SUBSCRIBED"
    STOPPED = "STOPPED"


@dataclass
class ConnectionStatus:
    """Mutable view of the Mesos connection, written only by the driver."""

    master_hostname: str = ""
    master_port: int = 5050
    master_online: bool = False
    state: ConnectionState = ConnectionState.DISCONNECTED
    framework_id: str | None = None
    subscriptions: int = 0
    reconnects: int = 0
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def subscribed(self) -> bool:
        return self.state is ConnectionState.SUBSCRIBED


@dataclass(frozen=True)
class Subscription:
    """What SUBSCRIBED told us."""

    framework_id: str
    heartbeat_interval_seconds: float
    master_info: MasterInfo | None
    resubscribed: bool


@dataclass(frozen=True)
class Launch:
    """One ACCEPT: offers of a single agent and the tasks launched on them."""

    offer_ids: Sequence[str]
    tasks: Sequence[TaskInfo]


class EventHandler(Protocol):
    """Callbacks a driver makes, on the event loop, in stream order. None may block."""

    def on_subscribed(self, subscription: Subscription) -> None: ...

    def on_offers(self, offers: list[Offer]) -> None: ...

    def on_rescind(self, offer_id: str) -> None: ...

    def on_update(self, status: TaskStatus) -> None: ...

    def on_failure(self, agent_id: str | None, executor_id: str | None) -> None: ...

    def on_error(self, message: str) -> None:
        """The master refused the framework (it sent ERROR, or another framework id): the
        driver stopped subscribing; the daemon exits 4."""
        ...

    def on_subscription_lost(self, reason: str) -> None:
        """No subscription for ``mesos.give_up_after`` seconds: the driver stopped trying;
        the daemon exits 6."""
        ...

    def on_disconnected(self, reason: str) -> None: ...

    def backlog_room(self) -> Awaitable[None] | None:
        """None while the handler takes more events; else an awaitable done when it does again.
        A driver that reads the stream itself stops reading meanwhile (back-pressure)."""
        ...


class FrameworkIdStore(Protocol):
    """Durable home of the framework id; ``save`` returns only after the commit."""

    async def save_framework_id(self, framework_id: str) -> None: ...

    async def load_framework_id(self) -> str | None:
        """The id stored now. A driver reads it when it starts: a standby built its driver
        before the first leader subscribed, and must not subscribe as a new framework."""
        ...


class SchedulerDriver(Protocol):
    """Calls into Mesos. Every call raises ``DriverError`` when it surely took no effect, and
    ``CallOutcomeUnknownError`` (a ``DriverError`` too) when it failed but may have."""

    status: ConnectionStatus

    async def start(self, handler: EventHandler) -> None:
        """Begin subscribing (returns at once; the connection runs in the background)."""
        ...

    async def stop(self) -> None:
        """Close the stream. Never sends TEARDOWN: tasks keep running within failover_timeout."""
        ...

    async def accept(self, launch: Launch, refuse_seconds: float | None = None) -> None: ...

    async def decline(self, offer_ids: Sequence[str], refuse_seconds: float | None = None) -> None:
        """One DECLINE call carrying every id."""
        ...

    async def suppress(self, roles: Sequence[str]) -> None: ...

    async def revive(self, roles: Sequence[str]) -> None: ...

    async def kill(
        self, task_id: str, agent_id: str | None = None, grace_period: float | None = None
    ) -> None:
        """KILL a task; ``grace_period`` (seconds) goes as the call's ``kill_policy``."""
        ...

    async def acknowledge(self, agent_id: str, task_id: str, uuid: str) -> None: ...

    async def acknowledge_many(
        self, acks: Sequence[tuple[str, str, str]]
    ) -> list[DriverError | None]:
        """Acknowledge each ``(agent_id, task_id, uuid)`` (one call each, as Mesos wants);
        returns each one's error (None: acknowledged). Never raises for one failed call."""
        ...

    async def reconcile(self, tasks: Sequence[tuple[str, str | None]]) -> None:
        """Explicit for ``(task_id, agent_id)`` pairs; an empty sequence is implicit."""
        ...

    async def teardown(self) -> None:
        """Remove the framework and kill every task. Only on an operator's explicit request."""
        ...


async def acknowledge_each(
    acknowledge: Callable[[str, str, str], Awaitable[None]],
    acks: Sequence[tuple[str, str, str]],
) -> list[DriverError | None]:
    """``acknowledge_many`` for a driver that sends one call at a time: each in turn, each
    one's error kept (None: acknowledged), none raised."""
    out: list[DriverError | None] = []
    for agent_id, task_id, uuid in acks:
        try:
            await acknowledge(agent_id, task_id, uuid)
        except DriverError as exc:
            out.append(exc)
        else:
            out.append(None)
    return out
