"""Test kit of the scheduling core: a recording driver, a settable clock, builders, a harness."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from scale_scheduler.daemon.mesos.driver import (
    ConnectionState,
    ConnectionStatus,
    DriverError,
    EventHandler,
    Launch,
    acknowledge_each,
)
from scale_scheduler.daemon.mesos.mesos_types import (
    AllocationInfo,
    Attribute,
    Offer,
    Range,
    Ranges,
    Resource,
    Scalar,
    TaskStatus,
    Value,
)
from scale_scheduler.daemon.scheduling.scheduler_core import SchedulerCore
from scale_scheduler.daemon.scheduling.task_values import NewTask
from scale_scheduler.daemon.service.config import Config
from scale_scheduler.state.changes import Change
from scale_scheduler.state.domain import TaskState, constraints_from
from scale_scheduler.state.interface import StateStore
from scale_scheduler.state.scheduler import SchedulerRepository
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.store import Store
from scale_scheduler.state.tasks import TaskSpec


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeDriver:
    """Implements ``SchedulerDriver``; records every call in ``calls`` (shared with the store
    spy when one is attached, so tests can assert the order of commits and calls)."""

    def __init__(self, log: list[tuple[Any, ...]] | None = None) -> None:
        self.status = ConnectionStatus(state=ConnectionState.SUBSCRIBED, master_online=True)
        self.calls: list[tuple[Any, ...]] = log if log is not None else []
        self.fail: set[str] = set()
        self.fail_agents: set[str] = set()

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] in self.fail:
            raise DriverError(f"{call[0]} refused by the fake")

    async def start(self, handler: EventHandler) -> None:
        self.handler = handler

    async def stop(self) -> None:
        pass

    async def accept(self, launch: Launch, refuse_seconds: float | None = None) -> None:
        agent = launch.tasks[0].agent_id.value if launch.tasks else None
        self.calls.append(("accept", launch, refuse_seconds))
        if "accept" in self.fail or agent in self.fail_agents:
            raise DriverError("accept refused by the fake")

    async def decline(self, offer_ids: Sequence[str], refuse_seconds: float | None = None) -> None:
        self._record("decline", tuple(offer_ids), refuse_seconds)

    async def suppress(self, roles: Sequence[str]) -> None:
        self._record("suppress", tuple(roles))

    async def revive(self, roles: Sequence[str]) -> None:
        self._record("revive", tuple(roles))

    async def kill(
        self, task_id: str, agent_id: str | None = None, grace_period: float | None = None
    ) -> None:
        if grace_period is None:
            self._record("kill", task_id, agent_id)
        else:
            self._record("kill", task_id, agent_id, grace_period)

    async def acknowledge(self, agent_id: str, task_id: str, uuid: str) -> None:
        self._record("ack", agent_id, task_id, uuid)

    async def acknowledge_many(
        self, acks: Sequence[tuple[str, str, str]]
    ) -> list[DriverError | None]:
        return await acknowledge_each(self.acknowledge, acks)

    async def reconcile(self, tasks: Sequence[tuple[str, str | None]]) -> None:
        self._record("reconcile", tuple(tasks))

    async def teardown(self) -> None:
        self._record("teardown")

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls]

    def launched_ids(self) -> list[str]:
        return [t.task_id.value for c in self.of("accept") for t in c[1].tasks]


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)  # poll interval of this wait on a condition


class RecordingState:
    """A ``StateStore`` over another one that records each write in ``log`` when it is applied,
    as ``("commit", names of its change types)``, so tests can assert the order of commits and
    driver calls. ``before_commit(changes)`` (may be async) runs before a write is handed on: a
    test's way to make one fail (raise) or to act while it is in flight."""

    def __init__(self, inner: StateStore, log: list[tuple[Any, ...]]) -> None:
        self.inner = inner
        self.log = log
        self.before_commit: Callable[[Sequence[Change]], Any] | None = None

    async def commit(
        self, changes: Sequence[Change], apply: Callable[[], Any] | None = None
    ) -> Any:
        hook = self.before_commit
        if hook is not None:
            waiting = hook(changes)
            if asyncio.iscoroutine(waiting):
                await waiting
        kinds = tuple(type(change).__name__ for change in changes)

        def recorded() -> Any:
            self.log.append(("commit", kinds))
            return apply() if apply is not None else None

        return await self.inner.commit(changes, recorded)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def scalar(name: str, value: float, role: str | None = None) -> Resource:
    return Resource(
        name=name,
        type="SCALAR",
        scalar=Scalar(value),
        role=role,
        allocation_info=AllocationInfo(role) if role else None,
    )


def make_offer(
    offer_id: str,
    agent: str,
    *,
    cpus: float = 4.0,
    mem: float = 4096.0,
    disk: float = 10000.0,
    gpus: float = 0.0,
    ports: tuple[tuple[int, int], ...] = (),
    hostname: str | None = None,
    role: str = "*",
    attributes: dict[str, str] | None = None,
    extra: tuple[Resource, ...] = (),
) -> Offer:
    """An offer as the master sends it; ``extra`` resources are appended after the usual ones."""
    resources = [scalar("cpus", cpus, role), scalar("mem", mem, role)]
    if disk:
        resources.append(scalar("disk", disk, role))
    if gpus:
        resources.append(scalar("gpus", gpus, role))
    if ports:
        resources.append(
            Resource(
                name="ports",
                type="RANGES",
                ranges=Ranges([Range(b, e) for b, e in ports]),
                role=role,
                allocation_info=AllocationInfo(role),
            )
        )
    resources.extend(extra)
    return Offer.build(
        id=Value(offer_id),
        framework_id=Value("fw"),
        agent_id=Value(agent),
        hostname=hostname or f"host-{agent}",
        resources=resources,
        attributes=[
            Attribute(name=k, type="TEXT", text=Value(v)) for k, v in (attributes or {}).items()
        ],
        allocation_info=AllocationInfo(role),
    )


def new_task(
    name: str = "t",
    *,
    cpus: float = 1.0,
    mem: float = 128.0,
    disk: float = 0.0,
    gpus: int = 0,
    ports: int = 0,
    priority: int = 100,
    max_attempts: int = 1,
    constraints: dict[str, str] | list[list[str]] | None = None,
    group: str | None = None,
    command: str = "true",
    env: dict[str, str] | None = None,
    **lifecycle: Any,
) -> NewTask:
    """``lifecycle``: the spec's ``kill_grace_period``, ``max_runtime``, ``retry_backoff``."""
    return NewTask(
        spec=TaskSpec(name=name, command=command, env=env, **lifecycle),
        priority=priority,
        cpus=cpus,
        mem=mem,
        disk=disk,
        gpus=gpus,
        ports=ports,
        constraints=constraints_from(constraints, group),
        max_attempts=max_attempts,
        group=group,
    )


def status(
    mesos_task_id: str,
    state: str,
    *,
    agent: str | None = "a1",
    uuid: str | None = "dXVpZA==",
    reason: str | None = None,
    message: str | None = None,
) -> TaskStatus:
    return TaskStatus(
        task_id=Value(mesos_task_id),
        state=state,
        agent_id=Value(agent) if agent else None,
        uuid=uuid,
        reason=reason,
        message=message,
    )


class CoreHarness:
    """A ``SchedulerCore`` on a state (SQLite in a temporary directory, or in memory) with the
    fake driver; ``log`` holds commits and calls in order."""

    def __init__(self, config: Config, state: StateStore, clock: Clock) -> None:
        self.config = config
        self.log: list[tuple[Any, ...]] = []
        self.state = RecordingState(state, self.log)
        self.clock = clock
        self.driver = FakeDriver(self.log)
        self.scheduler = SchedulerRepository(self.state, clock)
        self.core: SchedulerCore | None = None

    async def start(self, **kwargs: Any) -> SchedulerCore:
        await self.scheduler.ensure_and_load()
        self.core = SchedulerCore(
            self.config, self.state, self.scheduler, self.driver, self.clock, **kwargs
        )
        await self.core.start()
        return self.core

    @property
    def store(self) -> Store:
        """The SQLite store under the state (for tests that read the database file itself)."""
        inner = self.state.inner
        assert isinstance(inner, SqliteState), "this test needs the SQLite state"
        return inner.store

    @property
    def c(self) -> SchedulerCore:
        assert self.core is not None
        return self.core

    async def offer_pass(self, *offers: Offer) -> None:
        """Deliver offers as the driver would and wait until their pass has finished."""
        before = self.c.pipeline.passes
        self.c.on_offers(list(offers))
        await wait_for(lambda: self.c.pipeline.passes > before)

    async def updates(self, *statuses: TaskStatus) -> None:
        """Deliver status updates as the driver would and wait until they are handled."""
        before = self.c.intake.updates_handled
        for item in statuses:
            self.c.on_update(item)
        await wait_for(lambda: self.c.intake.updates_handled >= before + len(statuses))

    async def submit(self, count: int = 1, **kwargs: Any) -> list[int]:
        views = await self.c.tracker.submit([new_task(f"t{i}", **kwargs) for i in range(count)])
        return [v.id for v in views]

    async def db_state(self, task_id: int) -> tuple[Any, ...]:
        """(state, attempts, failures, agent_id, kill_requested) as stored."""
        view = await self.state.task(task_id)
        assert view is not None
        return view.state, view.attempts, view.failures, view.agent_id, int(view.kill_requested)

    async def db_count(self, state: str) -> int:
        return await self.state.count_tasks(TaskState(state))
