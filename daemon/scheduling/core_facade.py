"""The scheduling core as the API sees it: one narrow door, ``CoreFacade``.

The REST views, the metrics and the dashboard read and write through this Protocol alone, never
through the task board, the pipeline's counters or the store. ``SchedulerFacade`` implements it
over the ``SchedulerCore`` (attached while the core runs) and the state loaded at start-up;
without a core (the API served alone) the queue is empty, no node is known, and a submit or a
cancel answers ``CoreUnavailableError``.

- **Writes** commit, apply, then answer: ``set_paused`` and ``set_node_flags`` go to the core,
  which commits, applies and then makes the offer pipeline react (``SchedulerCore``);
  ``submit`` and ``cancel`` go to the task tracker. Each returns what its own write produced.
- **With no leader**, on a standby (``leaderless``): the writes are committed to the shared
  database directly, and the reads of durable state (the pause flag, the queue, the nodes, the
  status's pause and queue depth) come from it, when the API answers them itself
  (``api.leader_forwarding``); a term that began meanwhile fails the write with
  ``LeaderLiveError``, nothing changed, and the API forwards it to that leader.
- **Reads** are views: ``TaskView`` and ``NodeView`` as the API answers them, a counters
  snapshot (``CoreCounters``), the head of the queue (``QueuedTask``), and the status snapshot
  (``StatusView``: exactly ``GET /status/``'s body). ``status()`` builds it only when something
  it shows changed, and returns the same object otherwise, so ``/status/``, ``/metrics`` and the
  dashboard read one snapshot and a view can keep the encoded body of the last one.

The types the API needs to name (views, errors, inputs) are importable from here, so the API
imports this module, ``state.domain`` and its own modules, and nothing else of the core.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Protocol

import msgspec

from scale_scheduler.daemon.mesos.driver import ConnectionState, ConnectionStatus
from scale_scheduler.daemon.scheduling.leaderless import Leaderless
from scale_scheduler.daemon.scheduling.queue_waiting import RETRY_WAIT
from scale_scheduler.daemon.scheduling.retry_backoff import MAX_BACKOFF_SECONDS, RetryBackoff
from scale_scheduler.daemon.scheduling.scheduler_core import SchedulerCore
from scale_scheduler.daemon.scheduling.task_values import DeleteOutcome, NewTask, TaskNotFoundError
from scale_scheduler.daemon.scheduling.usage_views import (
    TaskUsageView,
    UsageSampleView,
    UsageView,
    node_used,
    task_usage_view,
    usage_view,
)
from scale_scheduler.daemon.service.leadership import Leadership
from scale_scheduler.daemon.service.leadership_terms import Role
from scale_scheduler.state.domain import Shape, TaskState
from scale_scheduler.state.interface import (
    LeaderLiveError,
    MissingRowError,
    StateFencedError,
    StateStore,
    StateUnavailableError,
)
from scale_scheduler.state.nodes import (
    ClusterResources,
    FlagChange,
    NodeNotFoundError,
    NodeState,
    NodeView,
    Resources,
    node_view,
)
from scale_scheduler.state.scheduler import SchedulerRepository
from scale_scheduler.state.tasks import (
    BackoffSpec,
    ContainerView,
    Count,
    TaskSpec,
    TaskView,
    spec_decoder,
)

__all__ = [
    "MAX_BACKOFF_SECONDS",
    "BackoffSpec",
    "ClusterResources",
    "ConnectionState",
    "ConnectionStatus",
    "ContainerView",
    "CoreCounters",
    "CoreFacade",
    "CoreUnavailableError",
    "DeleteOutcome",
    "FlagChange",
    "LeaderInstance",
    "LeaderLiveError",
    "LeaderView",
    "MasterStatus",
    "MissingRowError",
    "NewTask",
    "NodeNotFoundError",
    "NodeState",
    "NodeView",
    "QueuedTask",
    "Resources",
    "RetryBackoff",
    "SchedulerFacade",
    "SchedulerStatus",
    "StateFencedError",
    "StateUnavailableError",
    "StatusView",
    "TaskNotFoundError",
    "TaskSpec",
    "TaskUsageView",
    "TaskView",
    "ThisInstance",
    "UsageSampleView",
    "UsageView",
]


class CoreUnavailableError(RuntimeError):
    """The scheduling core is not running (the API is served alone, or the daemon is starting
    or stopping)."""


# --- the status snapshot: GET /status/'s body ---------------------------------------------------

_Port = msgspec.Meta(ge=0, le=65535)


class MasterStatus(msgspec.Struct, forbid_unknown_fields=True):
    """The Mesos master the scheduler talks to."""

    hostname: str
    port: Annotated[int, _Port]
    is_online: bool


class SchedulerStatus(msgspec.Struct, forbid_unknown_fields=True):
    """This scheduler: its host, whether it is subscribed, whether it is paused."""

    hostname: str
    is_online: bool
    is_paused: bool


class StatusView(msgspec.Struct, forbid_unknown_fields=True):
    """Master, scheduler, queue depth and cluster resources. 'resources' is absent while no
    agent's totals are known."""

    master: MasterStatus
    scheduler: SchedulerStatus
    queue_depth: Count
    resources: ClusterResources | msgspec.UnsetType = msgspec.UNSET


# --- who leads: GET /leader/'s body ------------------------------------------------------------


class LeaderInstance(msgspec.Struct, forbid_unknown_fields=True):
    """An instance as the others reach it; hostname is its name as it tells Mesos."""

    instance: str
    api_url: str
    hostname: str


class ThisInstance(msgspec.Struct, forbid_unknown_fields=True):
    """The instance that answered, and its role ("leader" or "standby")."""

    instance: str
    api_url: str
    role: str


class LeaderView(msgspec.Struct, forbid_unknown_fields=True):
    """The current leader (null while none is known), its term's epoch and start, and the
    instance that answered."""

    leader: LeaderInstance | None
    epoch: int
    since: datetime | None
    this: ThisInstance


# --- other read models --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoreCounters:
    """The core's counters and gauges at one moment (zeros while no core runs)."""

    offers_received: int = 0
    offers_accepted: int = 0
    offers_declined: int = 0
    offers_rescinded: int = 0
    offer_passes: int = 0
    offers_suppressed: bool = False
    launches: int = 0
    launches_reverted: int = 0
    launches_unconfirmed: int = 0
    status_updates: int = 0
    status_updates_stale: int = 0
    acknowledgements: int = 0
    reconcile_rounds: int = 0
    in_flight: int = 0
    in_flight_bound: int = 0
    update_backlog: int = 0
    ack_latency_buckets: tuple[tuple[float, int], ...] = ()
    """Cumulative (upper bound, count) pairs of the acknowledgement latency, seconds."""
    ack_latency_sum: float = 0.0
    queue_depth: int = 0
    launched: Mapping[TaskState, int] = field(default_factory=dict)
    """Live launched tasks by state."""
    ended: Mapping[TaskState, int] = field(default_factory=dict)
    """Tasks that reached a terminal state since start, by state."""
    nodes: Mapping[NodeState, int] = field(default_factory=dict)
    """Known nodes by state."""
    cluster_total: Resources | None = None
    """The online agents' totals; None while unknown."""
    failures_by_class: Mapping[str, int] = field(default_factory=dict)
    """Attempts that ended other than by a success since start, by failure class."""
    retries_delayed: int = 0
    kills_past_grace: int = 0
    runtime_limits_enforced: int = 0
    scheduled: Resources = field(default_factory=Resources)
    """What this framework's live tasks hold."""


@dataclass(frozen=True, slots=True)
class QueuedTask:
    """A queued task as the head of the queue shows it (from memory, no database read)."""

    id: int
    name: str
    priority: int
    shape: Shape
    attempts: int
    waiting_reason: str | None


class CoreFacade(Protocol):
    """Everything the API reads from and changes in the scheduling core and its state."""

    @property
    def connection(self) -> ConnectionStatus:
        """The Mesos connection's live status (read-only to the API)."""
        ...

    @property
    def is_paused(self) -> bool: ...

    @property
    def database_open(self) -> bool: ...

    async def ping_database(self) -> None:
        """One trivial read: raises if the database does not answer."""
        ...

    def leader(self) -> LeaderView:
        """Who leads, and this instance's role; ``CoreUnavailableError`` before start-up."""
        ...

    @property
    def is_standby(self) -> bool:
        """This instance stands by: another leads (or none yet), it forwards the API."""
        ...

    @property
    def reports_scheduler_state(self) -> bool:
        """The scheduler's state in memory (pause flag, tasks, nodes) is this instance's to
        report: it leads and has loaded it (or serves its API alone, with no core). A standby's
        copy is stale or empty; so is a new leader's until its load is done."""
        ...

    @property
    def answers_without_leader(self) -> bool:
        """Standing by, this instance can write and read durable state itself while no instance
        leads (the PostgreSQL backend)."""
        ...

    @property
    def leadership_changes(self) -> int:
        """Times this instance's role changed."""
        ...

    def status(self) -> StatusView:
        """The status snapshot; the same object until something it shows changes."""
        ...

    async def stored_status(self) -> StatusView:
        """A standby's own status with no leader: not subscribed, the pause flag and the queue
        depth as stored (as in memory while the database cannot answer)."""
        ...

    def counters(self) -> CoreCounters: ...

    async def check_scheduler_row(self) -> None:
        """``MissingRowError`` if the scheduler row was deleted while the daemon runs."""
        ...

    async def scheduler_paused(self) -> bool:
        """The global pause flag as ``GET /scheduler/`` shows it (``MissingRowError`` without
        the row)."""
        ...

    async def queue_page(self, offset: int, size: int) -> tuple[int, list[TaskView]]:
        """Queued tasks in launch order: (how many are queued, the page)."""
        ...

    def queue_head(self, limit: int) -> list[QueuedTask]: ...

    async def task(self, task_id: int) -> TaskView | None: ...

    async def tasks(
        self, state: TaskState | None, offset: int, size: int, after: int | None
    ) -> tuple[int, list[TaskView]]:
        """A page of tasks in id order (optionally of one state) and their count."""
        ...

    async def recent_tasks(self, limit: int) -> list[TaskView]:
        """The newest tasks, newest first."""
        ...

    async def node(self, node_id: int) -> NodeView:
        """``NodeNotFoundError`` for an unknown id."""
        ...

    async def node_page(
        self, offset: int, size: int, *, hostname: str | None = None, by_hostname: bool = False
    ) -> tuple[int, list[NodeView]]:
        """Nodes in id order (or hostname order), optionally of one hostname: (count, page)."""
        ...

    async def set_paused(self, is_paused: bool) -> bool:
        """Commit the global pause flag, apply it, react; returns the flag this write left."""
        ...

    async def set_node_flags(self, node_id: int, change: FlagChange) -> NodeView:
        """Commit a node's flags, apply, react; the view shows what this write produced."""
        ...

    async def submit(self, tasks: Sequence[NewTask]) -> list[TaskView]:
        """Queue tasks, all or nothing; answered after the commit."""
        ...

    def usage(self) -> UsageView:
        """The latest usage round: its age, the agents it covers, the sums."""
        ...

    def task_usage(self, task_id: int) -> TaskUsageView:
        """A task's latest usage sample and its last samples (none known: empty)."""
        ...

    async def cancel(self, task_id: int) -> DeleteOutcome:
        """Cancel a queued task or ask Mesos to kill a launched one; ``TaskNotFoundError``."""
        ...


BEING_KILLED = frozenset(
    state.value for state in (TaskState.STAGING, TaskState.STARTING, TaskState.RUNNING)
)
"""States a task asked to die is shown as KILLING in (its KILL is sent or follows its launch),
until Mesos reports its end (with a ``kill_grace_period``, that is after the grace)."""


def with_reason(view: TaskView, reason: str | None) -> TaskView:
    """The view with the waiting reason only memory knows (None: none to add), KILLING for a
    task asked to die that Mesos has not yet reported as being killed, and ``next_attempt_at``
    only while the task still waits out its back-off."""
    if view.kill_requested and view.state in BEING_KILLED:
        view = msgspec.structs.replace(view, state=TaskState.KILLING.value)
    if view.next_attempt_at is not None and not (reason or "").startswith(RETRY_WAIT):
        # Stored until the next launch; the wait is over once memory says so.
        view = msgspec.structs.replace(view, next_attempt_at=None)
    return view if reason is None else msgspec.structs.replace(view, waiting_reason=reason)


class SchedulerFacade:
    """``CoreFacade`` over the store, the scheduler row and, while it runs, the core.

    The application attaches each part as its start-up reaches it (``attach_state``,
    ``attach_core``) and detaches the core on shutdown; ``connection`` and ``hostname`` are
    set by the application too (the driver owns the live connection status)."""

    def __init__(self, connection: ConnectionStatus, hostname: str = "") -> None:
        self.connection = connection
        self.hostname = hostname
        self._store: StateStore | None = None
        self._scheduler: SchedulerRepository | None = None
        self._core: SchedulerCore | None = None
        self._leadership: Leadership | None = None
        self._leaderless: Leaderless | None = None
        self._status_key: tuple[Any, ...] | None = None
        self._status: StatusView | None = None

    # -- wiring ---------------------------------------------------------------------------------

    def attach_state(self, store: StateStore, scheduler: SchedulerRepository) -> None:
        self._store, self._scheduler = store, scheduler

    def attach_core(self, core: SchedulerCore) -> None:
        self._core = core

    def detach_core(self) -> None:
        self._core = None

    def attach_leadership(self, leadership: Leadership) -> None:
        self._leadership = leadership

    def attach_leaderless(self, leaderless: Leaderless) -> None:
        self._leaderless = leaderless

    # -- leadership -----------------------------------------------------------------------------

    def leader(self) -> LeaderView:
        leadership = self._leadership
        if leadership is None:
            raise CoreUnavailableError("The daemon is starting or stopping; retry shortly.")
        view, this = leadership.leader(), leadership.this
        leader = view.leader
        return LeaderView(
            leader=None
            if leader is None
            else LeaderInstance(leader.instance, leader.api_url, leader.hostname),
            epoch=view.epoch,
            since=view.since,
            this=ThisInstance(this.instance, this.api_url, leadership.role.value),
        )

    @property
    def is_standby(self) -> bool:
        leadership = self._leadership
        return leadership is not None and leadership.role is Role.STANDBY

    @property
    def reports_scheduler_state(self) -> bool:
        core = self._core
        return not self.is_standby and (core is None or core.started)

    @property
    def answers_without_leader(self) -> bool:
        return self._leaderless is not None

    def _without_leader(self) -> Leaderless | None:
        """Where this instance's own answers go while it stands by (None: it leads)."""
        return self._leaderless if self.is_standby else None

    @property
    def leadership_changes(self) -> int:
        leadership = self._leadership
        return leadership.changes if leadership is not None else 0

    def _state(self) -> tuple[StateStore, SchedulerRepository]:
        if self._store is None or self._scheduler is None:
            raise CoreUnavailableError("The daemon is starting or stopping; retry shortly.")
        return self._store, self._scheduler

    def _running_core(self) -> SchedulerCore:
        if self._core is None or not self._core.started:
            raise CoreUnavailableError(
                "The scheduling core is not running (the daemon is starting or stopping, is "
                "loading its state as a new leader, or serves its API without a Mesos "
                "connection); retry shortly."
            )
        return self._core

    def _check_loaded(self, core: SchedulerCore) -> None:
        """A new leader's memory is not read before its state is loaded."""
        if not core.started:
            self._running_core()

    # -- plain reads ----------------------------------------------------------------------------

    @property
    def is_paused(self) -> bool:
        scheduler = self._scheduler
        return scheduler.state.is_paused if scheduler is not None else False

    @property
    def database_open(self) -> bool:
        return self._store is not None and self._store.is_open

    async def ping_database(self) -> None:
        store, _ = self._state()
        await store.ping()

    async def check_scheduler_row(self) -> None:
        _, scheduler = self._state()
        await scheduler.check_row()

    async def scheduler_paused(self) -> bool:
        leaderless = self._without_leader()
        if leaderless is not None:
            return await leaderless.is_paused()
        await self.check_scheduler_row()
        return self.is_paused

    async def stored_status(self) -> StatusView:
        leaderless = self._leaderless
        if leaderless is None:
            return self.status()
        connection = self.connection
        try:
            is_paused, depth = await leaderless.is_paused(), await leaderless.queue_depth()
        except (StateUnavailableError, MissingRowError):  # /status/ answers all the same
            return self.status()
        return StatusView(
            master=MasterStatus(
                connection.master_hostname, connection.master_port, connection.master_online
            ),
            scheduler=SchedulerStatus(self.hostname, False, is_paused),
            queue_depth=depth,
        )

    def status(self) -> StatusView:
        connection, core, paused = self.connection, self._core, self.is_paused
        depth = core.queue_depth if core is not None else 0
        totals = core.nodes.totals() if core is not None else None
        usage = core.usage if core is not None else None
        # ``totals`` is the same tuple until the nodes' sums change: compared by identity first.
        key = (
            connection.master_hostname,
            connection.master_port,
            connection.master_online,
            connection.state,
            self.hostname,
            paused,
            depth,
            totals,
            usage.rounds if usage is not None else 0,
        )
        if key == self._status_key and self._status is not None:
            return self._status
        resources = core.resource_summary() if core is not None else None
        self._status = StatusView(
            master=MasterStatus(
                connection.master_hostname, connection.master_port, connection.master_online
            ),
            scheduler=SchedulerStatus(self.hostname, connection.subscribed, paused),
            queue_depth=depth,
            resources=msgspec.UNSET if resources is None else resources,
        )
        self._status_key = key
        return self._status

    def counters(self) -> CoreCounters:
        core = self._core
        if core is None:
            return CoreCounters()
        board, intake, timers = core.board, core.intake, core.timers
        pipeline, totals = core.pipeline, core.pipeline.totals
        paused = self.is_paused
        by_state = dict.fromkeys(NodeState, 0)
        for node in core.nodes.by_id.values():
            by_state[node.state(paused)] += 1
        cluster_total, scheduled = core.nodes.totals()
        latency = intake.acks.latency
        return CoreCounters(
            offers_received=pipeline.offers_received,
            offers_accepted=totals.accepted,
            offers_declined=totals.declined,
            offers_rescinded=pipeline.rescinds_received,
            offer_passes=pipeline.passes,
            offers_suppressed=pipeline.suppressed,
            launches=totals.launched,
            launches_reverted=totals.reverted,
            launches_unconfirmed=totals.unconfirmed,
            status_updates=intake.updates_handled,
            status_updates_stale=intake.stale_updates,
            acknowledgements=intake.acks.sent,
            reconcile_rounds=core.reconciler.rounds,
            in_flight=board.in_flight,
            in_flight_bound=core.task_path.in_flight_bound(),
            update_backlog=intake.backlog,
            ack_latency_buckets=tuple(latency.cumulative()),
            ack_latency_sum=latency.sum,
            queue_depth=board.queue_depth,
            launched=dict(board.launched_counts),
            ended=dict(board.ended_counts),
            nodes=by_state,
            cluster_total=cluster_total,
            scheduled=scheduled,
            failures_by_class=dict(board.failures_by_class),
            retries_delayed=timers.retries_delayed,
            kills_past_grace=timers.kills_past_grace,
            runtime_limits_enforced=timers.runtime_limits_enforced,
        )

    # -- tasks ----------------------------------------------------------------------------------

    def _waiting_reason(self, task_id: int) -> str | None:
        core = self._core
        task = core.board.tasks.get(task_id) if core is not None else None
        if core is None or task is None:
            return None
        return core.board.waiting_reason(task, self.is_paused)

    async def queue_page(self, offset: int, size: int) -> tuple[int, list[TaskView]]:
        leaderless = self._without_leader()
        if leaderless is not None:
            return await leaderless.queue_page(offset, size)
        store, _ = self._state()
        core = self._core
        if core is None:
            return 0, []
        self._check_loaded(core)
        board, paused = core.board, self.is_paused
        # The order from memory in one synchronous step, then the details from the database.
        queued = list(itertools.islice(board.queued_in_order(), offset, offset + size))
        reasons = {task.id: board.waiting_reason(task, paused) for task in queued}
        count = board.queue_depth
        views = await store.tasks_by_ids([task.id for task in queued])
        return count, [
            with_reason(views[task.id], reasons[task.id]) for task in queued if task.id in views
        ]

    def queue_head(self, limit: int) -> list[QueuedTask]:
        core = self._core
        if core is None:
            return []
        board, paused = core.board, self.is_paused
        return [
            QueuedTask(
                id=task.id,
                name=spec_decoder.decode(task.spec).name,
                priority=task.priority,
                shape=task.shape,
                attempts=task.attempts,
                waiting_reason=board.waiting_reason(task, paused),
            )
            for task in itertools.islice(board.queued_in_order(), limit)
        ]

    async def task(self, task_id: int) -> TaskView | None:
        store, _ = self._state()
        view = await store.task(task_id)
        return None if view is None else with_reason(view, self._waiting_reason(task_id))

    async def tasks(
        self, state: TaskState | None, offset: int, size: int, after: int | None
    ) -> tuple[int, list[TaskView]]:
        store, _ = self._state()
        count, views = await store.task_page(state, offset, size, after)
        return count, [with_reason(view, self._waiting_reason(view.id)) for view in views]

    async def recent_tasks(self, limit: int) -> list[TaskView]:
        store, _ = self._state()
        views = await store.recent_tasks(limit)
        return [with_reason(view, self._waiting_reason(view.id)) for view in views]

    async def submit(self, tasks: Sequence[NewTask]) -> list[TaskView]:
        leaderless = self._without_leader()
        if leaderless is not None:
            return await leaderless.submit(tasks)
        return await self._running_core().tracker.submit(tasks)

    async def cancel(self, task_id: int) -> DeleteOutcome:
        leaderless = self._without_leader()
        if leaderless is not None:
            return await leaderless.cancel(task_id)
        return await self._running_core().tracker.delete(task_id)

    # -- nodes and flags ------------------------------------------------------------------------

    async def node(self, node_id: int) -> NodeView:
        leaderless = self._without_leader()
        if leaderless is not None:
            return await leaderless.node(node_id)
        core = self._core
        if core is None:
            raise NodeNotFoundError(f"No node with id {node_id}.")
        self._check_loaded(core)
        node = core.nodes.get(node_id)
        return node_view(node, self.is_paused, used=node_used(core.usage, node.hostname))

    async def node_page(
        self, offset: int, size: int, *, hostname: str | None = None, by_hostname: bool = False
    ) -> tuple[int, list[NodeView]]:
        leaderless = self._without_leader()
        if leaderless is not None:
            return await leaderless.node_page(
                offset, size, hostname=hostname, by_hostname=by_hostname
            )
        core = self._core
        if core is None:
            return 0, []
        self._check_loaded(core)
        nodes = list(core.nodes.by_id.values())
        if hostname is not None:
            nodes = [node for node in nodes if node.hostname == hostname]
        if by_hostname:
            nodes.sort(key=lambda node: node.hostname)
        else:
            nodes.sort(key=lambda node: node.id)
        paused, usage = self.is_paused, core.usage
        return len(nodes), [
            node_view(node, paused, used=node_used(usage, node.hostname))
            for node in nodes[offset : offset + size]
        ]

    async def set_paused(self, is_paused: bool) -> bool:
        leaderless = self._without_leader()
        if leaderless is not None:
            return await leaderless.set_paused(is_paused)
        core = self._core
        if core is not None:
            return (await core.set_paused(is_paused)).is_paused
        _, scheduler = self._state()  # no core to react: the next start reads the flag
        return (await scheduler.set_paused(is_paused)).is_paused

    async def set_node_flags(self, node_id: int, change: FlagChange) -> NodeView:
        leaderless = self._without_leader()
        if leaderless is not None:
            return await leaderless.set_node_flags(node_id, change)
        core = self._running_core()
        node = core.nodes.get(node_id)
        produced = await core.set_node_flags(node_id, change)
        return node_view(node, self.is_paused, produced, node_used(core.usage, node.hostname))

    # -- usage ----------------------------------------------------------------------------------

    def usage(self) -> UsageView:
        core = self._core
        interval = core.config.usage.interval if core is not None else 0.0
        return usage_view(core.usage if core is not None else None, interval)

    def task_usage(self, task_id: int) -> TaskUsageView:
        core = self._core
        return task_usage_view(core.usage if core is not None else None, task_id)
