"""The task tracker: the single writer of task state (queue, launch intent, status, cancel, kill).

Every change follows one path: decide from memory (synchronously, on the event loop), commit
through ``Store.write``, and change memory only in that write's ``apply``. Reads (``/status/``,
the matcher, the views) come from memory, which therefore never runs ahead of the database.

Status updates are queued by the driver callback and handled in bursts: each burst is resolved
against memory by the pure ``resolve`` below, persisted in one group commit, then acknowledged
(only updates that carry a uuid) in the background by ``status_acks.AckSender`` while the next
burst is handled. A burst holds at most ``MAX_BURST`` updates; when ``MAX_UPDATE_BACKLOG``
updates wait unacknowledged, the driver stops reading the event stream (``backlog_room``), so
TCP holds the rest at the master and memory stays bounded. Launches are bounded too: the next
offer pass may launch ``launch_budget()`` tasks (``flow_control.LaunchFlow``).

Repeated updates change nothing. A terminal state releases the task's scheduled resources; LOST,
DROPPED, GONE and FAILED requeue the task until ``max_attempts`` (a launch that never reached an
agent is retried a few times for free), and each launch uses a fresh Mesos task id
``<id>-<attempt>``. An update for an unknown task or a past attempt that is not terminal gets a
KILL, except a stale one (a resend, a reordered update, a late reconciliation answer) about an
attempt that already ended for good and is still its task's latest: ``EndedAttempts`` remembers
the most recent such ends. A terminal update never gets a KILL.

Logging: a task's routine progress (launched, then STAGING, STARTING, RUNNING, FINISHED) is one
``task_state_changed`` event per task at debug, and one ``task_states_changed`` event per burst
of updates at info counts its changes by new state; every other change (a failure, kill, loss,
retry, revert, cancel, an unreachable agent) stays one ``task_state_changed`` event per task at
info. Each offer pass logs how many tasks it launched (``offer_pass``, the pipeline's).

Reconciliation: explicit for every launched task after each SUBSCRIBED (re-sent with back-off
for tasks that stay silent), then implicit; periodically too. A launch that gets no status
within ``launch_timeout`` is reconciled, and marked lost if it stays silent as long again. A
launch whose ACCEPT may or may not have reached the master is reconciled at once
(``reconcile_launches``): the master's answer decides whether it is launched again.

It owns the live task records, the queue index and the queue depth; it does not decide
placements (matcher) or talk to offers (offer pipeline).
"""

from __future__ import annotations

import asyncio
import enum
import sys
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from scale_scheduler.daemon.config import SchedulerConfig
from scale_scheduler.daemon.driver import DriverError, SchedulerDriver
from scale_scheduler.daemon.flow_control import LaunchFlow
from scale_scheduler.daemon.matcher import AgentLaunch, GroupWaiting, TaskPlacement, WaitReason
from scale_scheduler.daemon.mesos_types import TERMINAL_STATES, TaskStatus, Value
from scale_scheduler.daemon.queue_index import QueueIndex
from scale_scheduler.daemon.status_acks import AckSender
from scale_scheduler.state.nodes import NodeRepository
from scale_scheduler.state.store import Statement, Store
from scale_scheduler.state.tasks import (
    CANCEL_SQL,
    INSERT_SQL,
    INTENT_SQL,
    KILL_SQL,
    LAUNCHED,
    REQUEUE_AFTER_STATUS_SQL,
    REVERT_SQL,
    STATUS_SQL,
    Constraints,
    ShapeInterner,
    Task,
    TaskSpec,
    TaskState,
    TaskView,
    count_ended,
    insert_row,
    load_live_tasks,
    max_task_id,
    mesos_task_id,
    new_task_view,
    parse_mesos_task_id,
    spec_encoder,
)

log = structlog.get_logger(__name__)

RECONCILE_CHUNK = 1000
FREE_RELAUNCHES = 3
"""Launches lost before any agent reported on them that do not count as attempts."""

MESOS_STATES: dict[str, TaskState] = {
    "TASK_STAGING": TaskState.STAGING,
    "TASK_STARTING": TaskState.STARTING,
    "TASK_RUNNING": TaskState.RUNNING,
    "TASK_KILLING": TaskState.KILLING,
    "TASK_UNREACHABLE": TaskState.UNREACHABLE,
    "TASK_FINISHED": TaskState.FINISHED,
    "TASK_FAILED": TaskState.FAILED,
    "TASK_KILLED": TaskState.KILLED,
    "TASK_ERROR": TaskState.ERROR,
    "TASK_LOST": TaskState.LOST,
    "TASK_DROPPED": TaskState.DROPPED,
    "TASK_GONE": TaskState.GONE,
    "TASK_GONE_BY_OPERATOR": TaskState.GONE,
    # The master has no record of the task: for us it is lost.
    "TASK_UNKNOWN": TaskState.LOST,
}
RETRYABLE = frozenset({TaskState.FAILED, TaskState.LOST, TaskState.DROPPED, TaskState.GONE})
FINAL_MESOS_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)
"""Ends an attempt cannot come back from. LOST and UNKNOWN are not among them: the agent may
return with the task running, or the ACCEPT may still be on its way to the master."""
ENDED_MEMORY = 100_000
"""How many attempts that ended for good are remembered (about 13 MB, whatever the task count)."""
MAX_BURST = 4096
"""Most updates resolved and committed together: a burst's commit and acknowledgements stay
short, so an update waits for at most one such burst before its own is handled."""
MAX_UPDATE_BACKLOG = 20_000
"""Updates received but not yet acknowledged at which the driver stops reading the event
stream (``backlog_room``); it reads again once the backlog is down to half."""
SHRINK_SLACK_BYTES = 256 * 1024
"""A per-task dict's table is rebuilt once it is this much larger than its entries need."""
IN_FLIGHT = frozenset({TaskState.LAUNCHING, TaskState.STAGING, TaskState.STARTING})
"""Launched tasks not yet confirmed: what ``scheduler.max_in_flight`` bounds."""
ROUTINE = frozenset({TaskState.STAGING, TaskState.STARTING, TaskState.RUNNING, TaskState.FINISHED})
"""New states of a task's normal progress: logged per task at debug, counted per burst at info."""
_EARLY = frozenset({TaskState.LAUNCHING, TaskState.STAGING, TaskState.STARTING})
_LATE = frozenset({TaskState.RUNNING, TaskState.KILLING})


class TaskNotFoundError(LookupError):
    """No task has that id."""


class EndedAttempts:
    """The last ``capacity`` attempts that ended for good, oldest forgotten first.

    Keys are ints built from ``(task id, attempt)`` rather than Mesos id strings: smaller, and
    bounded however many tasks the daemon has run.
    """

    __slots__ = ("_capacity", "_keys", "_order")

    def __init__(self, capacity: int = ENDED_MEMORY) -> None:
        self._capacity = capacity
        self._order: deque[int] = deque()
        self._keys: set[int] = set()

    @staticmethod
    def _key(task_id: int, attempt: int) -> int | None:
        if not 0 <= attempt < 1 << 32:
            return None  # no attempt of ours; such an id is never remembered
        return task_id << 32 | attempt

    def add(self, task_id: int, attempt: int) -> None:
        key = self._key(task_id, attempt)
        if key is None or key in self._keys:
            return
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self._capacity:
            self._keys.discard(self._order.popleft())

    def has(self, task_id: int, attempt: int) -> bool:
        key = self._key(task_id, attempt)
        return key is not None and key in self._keys

    def __len__(self) -> int:
        return len(self._order)


# --- the pure state machine --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    state: TaskState
    failures: int
    lost_launches: int
    requeue: bool = False
    ignored: bool = False


def resolve(
    current: TaskState,
    mesos_state: str,
    *,
    failures: int,
    lost_launches: int,
    max_attempts: int,
    kill_requested: bool,
) -> Outcome:
    """The effect of one Mesos status on a launched task of the current attempt."""
    target = MESOS_STATES.get(mesos_state)
    if target is None or (target in _EARLY and current in _LATE):
        return Outcome(current, failures, lost_launches, ignored=True)
    if not target.terminal:
        return Outcome(target, failures, lost_launches, ignored=target is current)
    if kill_requested and target is not TaskState.FINISHED:
        return Outcome(TaskState.KILLED, failures, lost_launches)
    if target in RETRYABLE:
        if (
            current is TaskState.LAUNCHING
            and target is not TaskState.FAILED
            and lost_launches < FREE_RELAUNCHES
        ):
            return Outcome(TaskState.QUEUED, failures, lost_launches + 1, requeue=True)
        if failures + 1 < max_attempts:
            return Outcome(TaskState.QUEUED, failures + 1, lost_launches, requeue=True)
        return Outcome(target, failures + 1, lost_launches)
    return Outcome(target, failures, lost_launches)


# --- values exchanged with the pipeline and the API -------------------------------------------


@dataclass(frozen=True, slots=True)
class NewTask:
    spec: TaskSpec
    priority: int
    cpus: float
    mem: float
    disk: float
    gpus: int
    ports: int
    constraints: Constraints
    max_attempts: int


@dataclass(slots=True)
class PlannedTask:
    task: Task
    attempt: int
    placement: TaskPlacement

    @property
    def mesos_task_id(self) -> str:
        return mesos_task_id(self.task.id, self.attempt)


@dataclass(slots=True)
class LaunchPlan:
    """Launch intents of one offer pass: per agent, the tasks and their new attempt numbers."""

    agents: list[tuple[AgentLaunch, list[PlannedTask]]]
    statements: list[Statement]
    apply: Callable[[], None]

    @property
    def tasks(self) -> Iterable[PlannedTask]:
        for _launch, planned in self.agents:
            yield from planned


@dataclass(slots=True)
class _Working:
    """A task's state while one burst of updates is resolved."""

    task: Task
    state: TaskState
    failures: int
    lost_launches: int
    requeue: bool = False
    started: bool = False
    status: TaskStatus | None = None
    transitions: list[tuple[TaskState, TaskState, TaskStatus]] = field(default_factory=list)


class DeleteOutcome(str, enum.Enum):
    CANCELED = "CANCELED"
    KILL_REQUESTED = "KILL_REQUESTED"
    ALREADY_TERMINAL = "ALREADY_TERMINAL"


def _is_terminal(mesos_state: str) -> bool:
    return mesos_state in TERMINAL_STATES or mesos_state == "TASK_UNKNOWN"


def _ports_json(ports: Sequence[int]) -> str | None:
    return msgspec.json.encode(list(ports)).decode() if ports else None


# --- the tracker -------------------------------------------------------------------------------


class TaskTracker:
    def __init__(
        self,
        config: SchedulerConfig,
        store: Store,
        driver: SchedulerDriver,
        nodes: NodeRepository,
        clock: Callable[[], float],
    ) -> None:
        self._config = config
        self._store = store
        self._driver = driver
        self._nodes = nodes
        self._clock = clock
        self.tasks: dict[int, Task] = {}
        self.index = QueueIndex(self.tasks)
        self.interner = ShapeInterner()
        self.queue_depth = 0
        self._launching: dict[int, Task] = {}
        self._next_id = 1
        self._updates: list[TaskStatus] = []
        self._arrivals: list[float] = []
        """When each of ``_updates`` arrived (for the acknowledgement latency)."""
        self._updates_ready = asyncio.Event()
        self._room: asyncio.Future[None] | None = None
        """Set while the driver waits for the update backlog to shrink."""
        self.acks = AckSender(self._acknowledge_many, clock)
        self.flow = LaunchFlow(config.max_in_flight, clock())
        # Bursts are resolved against memory and applied after their commit: one at a time.
        self._burst_lock = asyncio.Lock()
        self._heard: set[int] | None = None
        """Tasks that got any status since the running reconciliation round began (None
        between rounds, so nothing is kept about tasks that come and go meanwhile)."""
        self.ended = EndedAttempts()
        self.updates_handled = 0
        self.stale_updates = 0
        """Non-terminal updates about attempts that had ended for good (not answered by KILL)."""
        # Read by the metrics at scrape time: launched tasks in memory by state (queued ones are
        # ``queue_depth``), terminal states reached since start, acks sent, reconcile rounds.
        self.launched_counts: dict[TaskState, int] = dict.fromkeys(LAUNCHED, 0)
        self.ended_counts: dict[TaskState, int] = {}
        self.reconcile_rounds = 0
        self.work_listeners: list[Callable[[], None]] = []
        """Called after tasks were queued or requeued (the core revives offers)."""
        self.room_listeners: list[Callable[[], None]] = []
        """Called after a burst of updates was handled (launch budget may have come back)."""

    # -- start-up -------------------------------------------------------------------------------

    async def load(self) -> None:
        """Load every non-terminal task in batches, yielding to the loop between them."""
        self._next_id = await max_task_id(self._store) + 1
        loaded = 0
        async for batch in load_live_tasks(self._store, self.interner):
            for task in batch:
                self.tasks[task.id] = task
                if task.state is TaskState.QUEUED:
                    self.index.add(task)
                    self.queue_depth += 1
                else:
                    self._hold_resources(task)
                    self.launched_counts[task.state] += 1
                    if task.state is TaskState.LAUNCHING:
                        self._launching[task.id] = task
            loaded += len(batch)
            await asyncio.sleep(0)
        log.info(
            "tasks_loaded",
            live=loaded,
            queued=self.queue_depth,
            shapes=len(self.interner),
            next_id=self._next_id,
        )

    # -- queueing -------------------------------------------------------------------------------

    async def submit(self, items: Sequence[NewTask]) -> list[TaskView]:
        """Queue tasks in one commit; returns their views once they are durable."""
        now = self._clock()
        first = self._next_id
        self._next_id += len(items)
        rows: list[tuple[Any, ...]] = []
        records: list[Task] = []
        views: list[TaskView] = []
        interner = self.interner
        encode = spec_encoder.encode
        for offset, item in enumerate(items):
            task_id = first + offset
            shape = interner.get(
                item.cpus, item.mem, item.disk, item.gpus, item.ports, item.constraints
            )
            spec_bytes = encode(item.spec)
            rows.append(
                insert_row(
                    task_id, item.spec, spec_bytes, item.priority, shape, item.max_attempts, now
                )
            )
            records.append(
                Task(
                    id=task_id,
                    priority=item.priority,
                    shape=shape,
                    spec=spec_bytes,
                    state=TaskState.QUEUED,
                    max_attempts=item.max_attempts,
                    last_update=now,
                )
            )
            views.append(
                new_task_view(task_id, item.spec, item.priority, shape, item.max_attempts, now)
            )

        def apply() -> None:
            tasks, index = self.tasks, self.index
            for task in records:
                tasks[task.id] = task
                index.add(task)
            self.queue_depth += len(records)
            log.info(
                "tasks_queued",
                count=len(records),
                first_id=first,
                last_id=first + len(records) - 1,
                state=TaskState.QUEUED.value,
            )
            self._notify_work()

        await self._store.write([Statement(INSERT_SQL, rows)], apply)
        return views

    def _notify_work(self) -> None:
        for listener in list(self.work_listeners):
            listener()

    # -- flow control ---------------------------------------------------------------------------

    def footprint(self) -> dict[str, int]:
        """Sizes of what the tracker holds per task or per update. All follow live work
        (nothing stays for a finished task) except ``ended``, capped at ``ENDED_MEMORY``."""
        return {
            "tasks": len(self.tasks),
            "launching": len(self._launching),
            "heard": len(self._heard) if self._heard is not None else 0,
            "updates": len(self._updates),
            "arrivals": len(self._arrivals),
            "acks_pending": self.acks.pending,
            "index_groups": len(self.index),
            "index_entries": sum(len(group) for group in self.index.groups()),
            "ended": len(self.ended),
        }

    @property
    def in_flight(self) -> int:
        """Tasks launched and not yet confirmed (LAUNCHING, STAGING, STARTING)."""
        counts = self.launched_counts
        return counts[TaskState.LAUNCHING] + counts[TaskState.STAGING] + counts[TaskState.STARTING]

    @property
    def in_flight_bound(self) -> int:
        """The current bound on ``in_flight`` (``scheduler.max_in_flight``, adapted)."""
        return self.flow.bound(self._clock())

    def launch_budget(self) -> int | None:
        """How many tasks the next offer pass may launch (``scheduler.max_in_flight``; None:
        no limit)."""
        return self.flow.budget(self.in_flight, self._clock(), self.update_backlog)

    @property
    def update_backlog(self) -> int:
        """Updates received and not yet acknowledged (queued, being stored, acks pending)."""
        return len(self._updates) + self.acks.pending

    def backlog_room(self) -> asyncio.Future[None] | None:
        """None while the driver may read more events; else a future done once the backlog
        is down to half of ``MAX_UPDATE_BACKLOG`` (the driver stops reading until then)."""
        if self.update_backlog < MAX_UPDATE_BACKLOG:
            return None
        if self._room is None or self._room.done():
            self._room = asyncio.get_running_loop().create_future()
        return self._room

    def _check_room(self) -> None:
        room = self._room
        if room is not None and self.update_backlog <= MAX_UPDATE_BACKLOG // 2:
            self._room = None
            if not room.done():
                room.set_result(None)

    def waiting_reason(self, task: Task, scheduler_paused: bool) -> str | None:
        if task.state is not TaskState.QUEUED:
            return None
        if scheduler_paused:
            return "the scheduler is paused"
        if task.busy:
            return "being launched"
        group = self.index.group_of(task)
        waiting = group.waiting if group is not None else None
        if isinstance(waiting, GroupWaiting):
            if waiting.reason is WaitReason.FLOW_CONTROL:
                return f"launch flow control: {self.in_flight} tasks in flight"
            return waiting.message
        return "waiting for an offer"

    def record_waiting(self, waiting: Iterable[GroupWaiting]) -> None:
        """Keep the last pass's verdict per group (groups placed in full lose theirs)."""
        for group in self.index.groups():
            group.waiting = None
        groups = {group.key: group for group in self.index.groups()}
        for item in waiting:
            target = groups.get((item.priority, item.shape))
            if target is not None:
                target.waiting = item

    # -- launching ------------------------------------------------------------------------------

    def plan_launch(self, launches: Sequence[AgentLaunch], now: float) -> LaunchPlan:
        """Reserve the placed tasks (busy) and build their intent rows; memory changes in apply."""
        agents: list[tuple[AgentLaunch, list[PlannedTask]]] = []
        rows: list[tuple[Any, ...]] = []
        tasks = self.tasks
        for launch in launches:
            planned: list[PlannedTask] = []
            for placement in launch.placements:
                task = tasks[placement.task_id]
                task.busy = True
                attempt = task.attempts + 1
                planned.append(PlannedTask(task, attempt, placement))
                ports = _ports_json(placement.ports)
                rows.append((attempt, launch.agent_id, launch.hostname, ports, now, now, task.id))
            agents.append((launch, planned))

        def apply() -> None:
            debug = log.debug
            for launch, planned in agents:
                node = self._nodes.by_hostname.get(launch.hostname)
                for item in planned:
                    task = item.task
                    task.state = TaskState.LAUNCHING
                    task.attempts = item.attempt
                    task.agent_id = launch.agent_id
                    task.hostname = launch.hostname
                    task.launched = now
                    task.last_update = now
                    task.reconcile_sent = 0.0
                    self._launching[task.id] = task
                    if node is not None:
                        node.scheduled.add_shape(task.shape)
                        node.running_tasks += 1
                    debug(
                        "task_state_changed",
                        task_id=task.id,
                        old=TaskState.QUEUED.value,
                        new=TaskState.LAUNCHING.value,
                        attempt=item.attempt,
                        hostname=launch.hostname,
                    )
                self.queue_depth -= len(planned)
                self.launched_counts[TaskState.LAUNCHING] += len(planned)

        return LaunchPlan(agents, [Statement(INTENT_SQL, rows)] if rows else [], apply)

    def release(self, plan: LaunchPlan) -> list[int]:
        """The intent was not committed: the tasks stay queued and may be placed again.
        Returns the ids of those asked to die meanwhile (``cancel_all`` them)."""
        for item in plan.tasks:
            item.task.busy = False
        return self._doomed(item.task for item in plan.tasks)

    async def revert(self, planned: Sequence[PlannedTask], why: str) -> None:
        """The ACCEPT could not be sent: put the tasks back in the queue (their attempt is spent,
        so a late launch of it is recognised as stale and killed)."""
        if not planned:
            return
        now = self._clock()
        rows = [
            (item.task.failures, item.task.lost_launches, now, now, item.task.id, item.attempt)
            for item in planned
        ]

        def apply() -> None:
            count = 0
            for item in planned:
                task = item.task
                if task.state is not TaskState.LAUNCHING or task.attempts != item.attempt:
                    continue  # a status arrived meanwhile: the launch happened after all
                self._release_resources(task)
                self._launching.pop(task.id, None)
                task.state = TaskState.QUEUED
                task.agent_id = task.hostname = None
                self.index.add(task)
                self.queue_depth += 1
                self.launched_counts[TaskState.LAUNCHING] -= 1
                count += 1
                log.info(
                    "task_state_changed",
                    task_id=task.id,
                    old=TaskState.LAUNCHING.value,
                    new=TaskState.QUEUED.value,
                    attempt=item.attempt,
                    reason=why,
                )
            if count:
                self.flow.confirmed(count, now)
                self._notify_work()

        await self._store.write(
            [Statement(REVERT_SQL, rows)],
            apply,
        )

    async def reconcile_launches(self, planned: Sequence[PlannedTask]) -> None:
        """The ACCEPT of these launches may or may not have reached the master: ask it now.
        Its answer decides (lost or unknown: the retry policy, under a fresh attempt id; a real
        state: followed). If it stays silent, the launch timeout still reconciles and then
        marks them lost."""
        tasks = [
            item.task
            for item in planned
            if item.task.state is TaskState.LAUNCHING
            and item.task.attempts == item.attempt
            and self.tasks.get(item.task.id) is item.task
        ]
        if not tasks:
            return
        log.info("launch_outcome_reconcile", tasks=len(tasks))
        await self._reconcile_explicit(tasks)

    def finish_launch(self, plan: LaunchPlan) -> tuple[list[tuple[str, str]], list[int]]:
        """The pass is over for these tasks. Returns (mesos id, agent) pairs to kill now, and the
        ids of tasks asked to die whose launch was reverted (``cancel_all`` them)."""
        kills: list[tuple[str, str]] = []
        for item in plan.tasks:
            task = item.task
            task.busy = False
            if (
                task.kill_requested
                and task.state.launched
                and task.attempts == item.attempt
                and task.agent_id
            ):
                kills.append((item.mesos_task_id, task.agent_id))
        return kills, self._doomed(item.task for item in plan.tasks)

    @staticmethod
    def _doomed(tasks: Iterable[Task]) -> list[int]:
        return [t.id for t in tasks if t.kill_requested and t.state is TaskState.QUEUED]

    async def cancel_all(self, task_ids: Iterable[int]) -> None:
        """Cancel queued tasks (those a DELETE reached while their launch was in flight)."""
        for task_id in task_ids:
            try:
                await self.delete(task_id)
            except Exception as exc:
                log.warning("task_cancel_failed", task_id=task_id, error=repr(exc))

    # -- cancel and kill ------------------------------------------------------------------------

    async def delete(self, task_id: int) -> DeleteOutcome:
        """Cancel a queued task, or ask Mesos to kill a launched one."""
        task = self.tasks.get(task_id)
        if task is None:
            row = await self._store.fetchone("SELECT state FROM tasks WHERE id = ?", (task_id,))
            if row is None:
                raise TaskNotFoundError(f"No task with id {task_id}.")
            return DeleteOutcome.ALREADY_TERMINAL
        now = self._clock()
        if task.state is TaskState.QUEUED and not task.busy:
            task.busy = True

            def cancel() -> None:
                task.busy = False
                if task.state is not TaskState.QUEUED:
                    return
                task.state = TaskState.CANCELED
                self.tasks.pop(task.id, None)
                self.queue_depth -= 1
                self._count_ended(TaskState.CANCELED)
                log.info(
                    "task_state_changed",
                    task_id=task.id,
                    old=TaskState.QUEUED.value,
                    new=TaskState.CANCELED.value,
                    attempt=task.attempts,
                )

            try:
                await self._store.write(
                    [
                        Statement(CANCEL_SQL, [(now, now, task.id)]),
                        *count_ended([TaskState.CANCELED]),
                    ],
                    cancel,
                )
            except BaseException:
                task.busy = False
                raise
            return DeleteOutcome.CANCELED

        def mark() -> None:
            task.kill_requested = True

        await self._store.write([Statement(KILL_SQL, [(now, task.id)])], mark)
        if task.state.launched and not task.busy and task.agent_id:
            await self._send_kills([(task.mesos_task_id, task.agent_id)])
        log.info("task_kill_requested", task_id=task.id, state=task.state.value)
        return DeleteOutcome.KILL_REQUESTED

    async def kill_now(self, kills: Sequence[tuple[str, str | None]]) -> None:
        """Send KILL for (mesos task id, agent id) pairs, concurrently."""
        await self._send_kills(kills)

    async def _send_kills(self, kills: Sequence[tuple[str, str | None]]) -> None:
        if not kills:
            return
        results = await asyncio.gather(
            *(self._driver.kill(task_id, agent_id) for task_id, agent_id in kills),
            return_exceptions=True,
        )
        failed = [kills[i][0] for i, r in enumerate(results) if isinstance(r, BaseException)]
        if failed:
            log.warning("task_kill_failed", count=len(failed), first=failed[0])

    # -- status updates -------------------------------------------------------------------------

    def on_update(self, status: TaskStatus) -> None:
        """Driver callback: queue the update; the update loop handles bursts."""
        self._updates.append(status)
        self._arrivals.append(self._clock())
        self._updates_ready.set()

    async def run_updates(self) -> None:
        """Handle queued updates forever, one burst (one commit) at a time."""
        while True:
            await self._updates_ready.wait()
            self._updates_ready.clear()
            await self.process_pending_updates()

    async def process_pending_updates(self) -> None:
        async with self._burst_lock:
            await self._drain_updates()

    async def _drain_updates(self) -> None:
        while self._updates:
            if len(self._updates) <= MAX_BURST:
                burst, self._updates = self._updates, []
                arrivals, self._arrivals = self._arrivals, []
            else:
                burst, arrivals = self._updates[:MAX_BURST], self._arrivals[:MAX_BURST]
                del self._updates[:MAX_BURST], self._arrivals[:MAX_BURST]
            try:
                await self.process_updates(burst, arrivals, counted=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("status_burst_failed", size=len(burst))
                self._handled(len(burst))

    def _handled(self, count: int) -> None:
        """A burst is stored and acknowledged (or failed): counted, and room for more."""
        self.updates_handled += count
        self.flow.handled(self._clock(), self.acks.take_worst())
        self._check_room()
        for listener in list(self.room_listeners):
            listener()

    async def process_updates(
        self,
        burst: Sequence[TaskStatus],
        arrivals: Sequence[float] | None = None,
        *,
        counted: bool = False,
    ) -> None:
        """Resolve one burst, store it in one commit, then hand its acknowledgements to the
        sender (the next burst does not wait for them). ``counted``: updates from Mesos (not
        the daemon's own verdicts), counted as handled once their acknowledgements are
        answered."""
        now = self._clock()
        working: dict[int, _Working] = {}
        acks: list[tuple[str, str, str, float]] = []
        kills: list[tuple[str, str | None]] = []
        if arrivals is None:
            arrivals = [now] * len(burst)
        for status, arrived in zip(burst, arrivals, strict=True):
            agent_id = status.agent_id.value if status.agent_id is not None else None
            if status.uuid and agent_id:
                acks.append((agent_id, status.task_id.value, status.uuid, arrived))
            self._resolve_one(status, agent_id, working, kills)

        status_rows: list[tuple[Any, ...]] = []
        requeue_rows: list[tuple[Any, ...]] = []
        changed = [w for w in working.values() if w.transitions]
        for w in changed:
            last = w.status
            assert last is not None
            fields = (
                last.state,
                last.message,
                last.reason,
                last.source,
                last.timestamp or now,
            )
            if w.requeue:
                requeue_rows.append((w.failures, w.lost_launches, now, now, *fields, w.task.id))
            else:
                status_rows.append(
                    (
                        w.state.value,
                        w.failures,
                        w.lost_launches,
                        now if w.started else None,
                        now if w.state.terminal else None,
                        now,
                        *fields,
                        w.task.id,
                    )
                )

        def apply() -> None:
            requeued = False
            by_state: dict[str, int] = {}
            before = self.in_flight
            for w in changed:
                requeued |= self._apply_working(w, now, by_state)
            if before > self.in_flight:
                self.flow.confirmed(before - self.in_flight, now)
            self._shrink_tables()
            if changed:
                log.info("task_states_changed", tasks=len(changed), by_state=by_state)
            if requeued:
                self._notify_work()

        statements = []
        if status_rows:
            statements.append(Statement(STATUS_SQL, status_rows))
            statements += count_ended(w.state for w in changed if not w.requeue)
        if requeue_rows:
            statements.append(Statement(REQUEUE_AFTER_STATUS_SQL, requeue_rows))
        if statements:
            await self._store.write(statements, apply)
        if kills:
            # Whatever this burst also says has ended needs no KILL.
            ended = {s.task_id.value for s in burst if _is_terminal(s.state)}
            kills = [kill for kill in kills if kill[0] not in ended]
            await self._send_kills(kills)
        if counted:
            size = len(burst)
            self.acks.submit(acks, lambda _failed: self._handled(size))
        else:
            self.acks.submit(acks, lambda _failed: None)

    def _resolve_one(
        self,
        status: TaskStatus,
        agent_id: str | None,
        working: dict[int, _Working],
        kills: list[tuple[str, str | None]],
    ) -> None:
        mesos_id = status.task_id.value
        terminal = _is_terminal(status.state)
        parsed = parse_mesos_task_id(mesos_id)
        task = self.tasks.get(parsed[0]) if parsed is not None else None
        w = working.get(task.id) if task is not None else None
        current = (
            task is not None
            and parsed is not None
            and parsed[1] == task.attempts
            and task.state.launched
            and (w is None or not (w.requeue or w.state.terminal))
        )
        if task is None or not current:
            if terminal:
                return
            if self._trails_a_final_end(parsed, task, w):
                # A resend, reordered update or late reconciliation answer: the uuid (if any)
                # is acknowledged and nothing is killed.
                self.stale_updates += 1
                log.debug("stale_update_ignored", mesos_task_id=mesos_id, state=status.state)
            else:
                log.warning(
                    "unknown_task_killed",
                    mesos_task_id=mesos_id,
                    state=status.state,
                    agent_id=agent_id,
                )
                kills.append((mesos_id, agent_id))
            return
        if self._heard is not None:
            self._heard.add(task.id)
        if w is None:
            w = working[task.id] = _Working(task, task.state, task.failures, task.lost_launches)
        outcome = resolve(
            w.state,
            status.state,
            failures=w.failures,
            lost_launches=w.lost_launches,
            max_attempts=task.max_attempts,
            kill_requested=task.kill_requested,
        )
        if (
            task.kill_requested
            and not outcome.state.terminal
            and not outcome.requeue
            and outcome.state is not TaskState.KILLING
            and task.agent_id
        ):
            kills.append((mesos_id, task.agent_id))
        if outcome.ignored:
            return
        w.transitions.append((w.state, outcome.state, status))
        w.state = outcome.state
        w.failures, w.lost_launches = outcome.failures, outcome.lost_launches
        w.requeue = outcome.requeue
        w.status = status
        if outcome.state is TaskState.RUNNING:
            w.started = True

    def _trails_a_final_end(
        self, parsed: tuple[int, int] | None, task: Task | None, w: _Working | None
    ) -> bool:
        """Whether an update names an attempt that ended for good and is still its task's latest
        (an earlier attempt of a task that has moved on is a stray, whatever it says)."""
        if parsed is None:
            return False
        task_id, attempt = parsed
        if task is not None:
            if attempt != task.attempts:
                return False
            if w is not None and w.status is not None and (w.requeue or w.state.terminal):
                # Ended earlier in this very burst (not yet in ``ended``).
                return w.status.state in FINAL_MESOS_STATES
        return self.ended.has(task_id, attempt)

    def _apply_working(self, w: _Working, now: float, by_state: dict[str, int]) -> bool:
        """Apply a task's resolved burst to memory; count its changes by new state."""
        task = w.task
        if (
            (w.requeue or w.state.terminal)
            and w.status is not None
            and w.status.state in FINAL_MESOS_STATES
        ):
            self.ended.add(task.id, task.attempts)
        for old, new, status in w.transitions:
            by_state[new.value] = by_state.get(new.value, 0) + 1
            emit = log.debug if new in ROUTINE else log.info
            emit(
                "task_state_changed",
                task_id=task.id,
                old=old.value,
                new=new.value,
                attempt=task.attempts,
                mesos_state=status.state,
                reason=status.reason,
                message=status.message,
                hostname=task.hostname,
            )
        task.failures, task.lost_launches = w.failures, w.lost_launches
        task.last_update = now
        self._launching.pop(task.id, None)
        if task.state in self.launched_counts:
            self.launched_counts[task.state] -= 1
        if w.requeue:
            self._release_resources(task)
            task.state = TaskState.QUEUED
            task.agent_id = task.hostname = None
            self.index.add(task)
            self.queue_depth += 1
            return True
        task.state = w.state
        if w.state.terminal:
            self._release_resources(task)
            self.tasks.pop(task.id, None)
            self._count_ended(w.state)
        else:
            self.launched_counts[w.state] += 1
        return False

    def _shrink_tables(self) -> None:
        """Give back the hash tables of the per-task dicts once a peak has passed: a dict never
        shrinks by itself, so 100,000 tasks once in flight would keep their table for good."""
        for table in (self.tasks, self._launching):
            if sys.getsizeof(table) > SHRINK_SLACK_BYTES + 400 * len(table):
                kept = dict(table)
                table.clear()  # frees the table; the dict object (shared with the index) stays
                table.update(kept)

    def _count_ended(self, state: TaskState) -> None:
        self.ended_counts[state] = self.ended_counts.get(state, 0) + 1

    async def _acknowledge_many(
        self, acks: Sequence[tuple[str, str, str]]
    ) -> Sequence[Exception | None]:
        return await self._driver.acknowledge_many(acks)

    @property
    def acks_sent(self) -> int:
        return self.acks.sent

    # -- resources ------------------------------------------------------------------------------

    def _hold_resources(self, task: Task) -> None:
        node = self._nodes.by_hostname.get(task.hostname or "")
        if node is not None:
            node.scheduled.add_shape(task.shape)
            node.running_tasks += 1

    def _release_resources(self, task: Task) -> None:
        node = self._nodes.by_hostname.get(task.hostname or "")
        if node is not None:
            node.scheduled.add_shape(task.shape, -1.0)
            node.running_tasks = max(0, node.running_tasks - 1)

    # -- reconciliation -------------------------------------------------------------------------

    def launched_tasks(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.state.launched and not t.busy]

    async def reconcile(self, retries: int = 3) -> None:
        """Explicit reconciliation of every launched task, re-sent with back-off to the silent
        ones, then implicit reconciliation."""
        self.reconcile_rounds += 1
        heard: set[int] = set()
        self._heard = heard
        delay = self._config.reconcile_retry
        pending = self.launched_tasks()
        try:
            for attempt in range(retries + 1):
                if not pending:
                    break
                await self._reconcile_explicit(pending)
                log.info("reconcile_explicit_sent", tasks=len(pending), round=attempt + 1)
                await asyncio.sleep(delay)
                delay *= 2
                pending = [
                    t
                    for t in pending
                    if t.id not in heard and t.state.launched and self.tasks.get(t.id) is t
                ]
        finally:
            if self._heard is heard:
                self._heard = None
        try:
            await self._driver.reconcile([])
            log.info("reconcile_implicit_sent", unanswered=len(pending))
        except DriverError as exc:
            log.warning("reconcile_failed", error=str(exc))

    async def _reconcile_explicit(self, tasks: Sequence[Task]) -> None:
        for start in range(0, len(tasks), RECONCILE_CHUNK):
            chunk = [(t.mesos_task_id, t.agent_id) for t in tasks[start : start + RECONCILE_CHUNK]]
            try:
                await self._driver.reconcile(chunk)
            except DriverError as exc:
                log.warning("reconcile_failed", error=str(exc), tasks=len(chunk))
                return

    async def check_launch_timeouts(self) -> None:
        """Reconcile launches silent for ``launch_timeout``; mark lost if silent as long again."""
        timeout = self._config.launch_timeout
        now = self._clock()
        to_reconcile: list[Task] = []
        to_lose: list[Task] = []
        for task in self._launching.values():
            if task.busy or task.state is not TaskState.LAUNCHING:
                continue
            if task.reconcile_sent:
                if now - task.reconcile_sent >= timeout:
                    to_lose.append(task)
            elif now - task.launched >= timeout:
                to_reconcile.append(task)
        if to_reconcile:
            for task in to_reconcile:
                task.reconcile_sent = now
            log.info("launch_timeout_reconcile", tasks=len(to_reconcile))
            await self._reconcile_explicit(to_reconcile)
        if to_lose:
            decided = [(task, task.attempts) for task in to_lose]
            async with self._burst_lock:
                # Updates received before this decision go first: they may answer for these
                # tasks, which are then not lost (nor launched a second time).
                await self._drain_updates()
                lost = [
                    task
                    for task, attempt in decided
                    if self.tasks.get(task.id) is task
                    and task.state is TaskState.LAUNCHING
                    and task.attempts == attempt
                    and not task.busy
                ]
                if not lost:
                    return
                log.warning("launch_timeout_lost", tasks=len(lost))
                await self.process_updates(
                    [
                        TaskStatus(
                            task_id=Value(task.mesos_task_id),
                            state="TASK_LOST",
                            message="no status update within scheduler.launch_timeout",
                            source="SOURCE_SCHEDULER",
                            reason="REASON_LAUNCH_TIMEOUT",
                            agent_id=Value(task.agent_id) if task.agent_id else None,
                            timestamp=now,
                        )
                        for task in lost
                    ]
                )
