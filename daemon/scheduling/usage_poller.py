"""The usage poller: every ``usage.interval`` seconds, every online agent says what its
containers really use; the latest complete round is what the API, metrics and dashboard show.

A round asks each online node's agent (``Node.agent_endpoint``, noted from offers and
GET_AGENTS) through ``AgentUsageFetcher``, at most ``usage.concurrency`` at a time, each within
``usage.timeout``. An agent that does not answer, answers an error or garbage, or whose address
is not known yet, is *unknown* for that round: it adds nothing to the sums and is named in
``UsageSnapshot.agents_unknown`` (never counted as zero use). ``usage_math`` does the
arithmetic; this module does the I/O, the join of containers to this framework's tasks (the
executor id of the command executor is the task's Mesos id; a container id from the task's
status updates also names it) and keeps each task's last ``TASK_SAMPLES`` samples.

It runs in its own task, never on the offer path; the event loop serves everything else between
two agents' answers. The HTTP work is the usage worker process's (``usage_worker_client``): the
loop only sends each request and reads each reply. The requests of a round are spread over
``ROUND_SPREAD`` of the interval rather than sent as fast as the agents answer, so even that
share is steady rather than a burst (``bench``, B7).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from scale_scheduler.daemon.mesos.agent_usage_api import (
    AgentGarbageError,
    AgentUsageError,
    AgentUsageFetcher,
)
from scale_scheduler.daemon.mesos.mesos_types import TaskStatus
from scale_scheduler.daemon.mesos.usage_math import (
    AgentUsage,
    ContainerReading,
    Sample,
    Usage,
    close_round,
    work_out_agent,
)
from scale_scheduler.daemon.service.config import UsageConfig
from scale_scheduler.state.nodes import NodeRepository
from scale_scheduler.state.tasks import Task, parse_mesos_task_id

log = structlog.get_logger(__name__)

TASK_SAMPLES = 15
"""Samples kept per task (Singularity keeps as many)."""
ENDED_TASKS_KEPT = 1_000
"""Tasks that ended keep their samples while they are among this many most recent."""
ROUND_SPREAD = 0.8
"""The share of ``usage.interval`` over which a round's requests are spread."""


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    """One complete round."""

    sampled_at: float
    """Wall-clock time the round ended."""
    round_seconds: float
    agents_total: int
    """Online agents when the round began."""
    agents_answered: int
    agents_unknown: tuple[str, ...]
    """Hostnames of the online agents whose usage is unknown (sorted)."""
    used: Usage
    """The sum over the agents that answered (every framework's containers)."""
    nodes: Mapping[str, Usage]
    """By hostname, the agents that answered."""


@dataclass(frozen=True, slots=True)
class TaskSample:
    """A task's usage in one round; ``cpus`` is None in its container's first round."""

    sampled_at: float
    cpus: float | None
    mem: float | None
    disk: float | None


@dataclass(slots=True)
class _TaskHistory:
    attempt: int
    samples: deque[TaskSample] = field(default_factory=lambda: deque(maxlen=TASK_SAMPLES))


class UsagePoller:
    def __init__(
        self,
        settings: UsageConfig,
        nodes: NodeRepository,
        tasks: Mapping[int, Task],
        client: AgentUsageFetcher,
        framework_id: Callable[[], str | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._nodes = nodes
        self._tasks = tasks
        self.client = client
        self._framework_id = framework_id
        self._clock = clock
        self.latest: UsageSnapshot | None = None
        self.rounds = 0
        self._samples: dict[str, dict[str, Sample]] = {}
        self._containers: dict[str, str] = {}
        """Container id -> Mesos task id, from this framework's status updates."""
        self._history: dict[int, _TaskHistory] = {}
        self._ended: OrderedDict[int, _TaskHistory] = OrderedDict()
        self._unknown_logged: set[str] = set()
        """Agents whose failure was logged (once, until they answer again)."""

    # -- what the API reads ---------------------------------------------------------------------

    def now(self) -> float:
        """The poller's clock (wall time), to tell a snapshot's age."""
        return self._clock()

    def used(self) -> Usage | None:
        """The cluster's usage from the latest round; None while nothing is known (no round
        yet, or no agent answered the latest one)."""
        latest = self.latest
        if latest is None or latest.agents_answered == 0:
            return None
        return latest.used

    def node_usage(self, hostname: str) -> Usage | None:
        """A node's usage in the latest round; None when its agent did not answer it."""
        latest = self.latest
        return None if latest is None else latest.nodes.get(hostname)

    def task_samples(self, task_id: int) -> list[TaskSample]:
        """A task's last samples of its latest attempt, oldest first (empty if none)."""
        history = self._history.get(task_id) or self._ended.get(task_id)
        return list(history.samples) if history is not None else []

    # -- input ----------------------------------------------------------------------------------

    def note_status(self, status: TaskStatus) -> None:
        """A status update of this framework: remember which container runs the task."""
        container = status.container_status
        if container is not None and container.container_id is not None:
            self._containers[container.container_id.value] = status.task_id.value

    # -- rounds ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll forever, one round every ``usage.interval`` seconds from one round's start to
        the next (a round that takes longer is followed by the next at once). The first round
        is one interval after the start, when offers and GET_AGENTS have named the agents."""
        interval = self._settings.interval
        loop = asyncio.get_running_loop()
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = loop.time() + interval
            try:
                await self.poll_once(spread=interval * ROUND_SPREAD)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("usage_round_failed")

    async def poll_once(self, spread: float = 0.0) -> UsageSnapshot:
        """One round over the online agents; returns (and publishes) its snapshot.

        Each answer is worked out as it arrives, so no step of the round holds the event loop
        for more than one agent's containers. With ``spread`` (seconds), the n-th of N requests
        is sent no earlier than n/N of it after the round's start."""
        started = time.perf_counter()
        targets = [(n.hostname, n.agent_endpoint) for n in self._nodes.by_id.values() if n.online]
        asked = [(h, e) for h, e in targets if e is not None]
        pending = iter(enumerate(asked))
        answered: dict[str, AgentUsage] = {}
        previous = self._samples
        loop = asyncio.get_running_loop()
        begun = loop.time()
        step = spread / len(asked) if asked else 0.0

        async def worker() -> None:
            for number, (hostname, endpoint) in pending:  # one shared iterator: each asked once
                assert endpoint is not None
                if step:
                    await asyncio.sleep(max(0.0, begun + number * step - loop.time()))
                readings = await self._ask(hostname, endpoint)
                if readings is not None:
                    agent = work_out_agent(readings, previous.get(hostname, {}))
                    answered[hostname] = agent
                    self._join_tasks(agent, self._clock())

        workers = min(self._settings.concurrency, len(targets))
        await asyncio.gather(*(worker() for _ in range(workers)))
        worked = close_round(answered, (hostname for hostname, _ in targets), previous)
        self._samples = worked.samples
        self._forget_ended()
        snapshot = UsageSnapshot(
            sampled_at=self._clock(),
            round_seconds=time.perf_counter() - started,
            agents_total=len(targets),
            agents_answered=len(worked.agents),
            agents_unknown=tuple(worked.unknown),
            used=worked.cluster,
            nodes={hostname: agent.node for hostname, agent in worked.agents.items()},
        )
        self.latest = snapshot
        self.rounds += 1
        log.debug(
            "usage_round",
            agents=snapshot.agents_total,
            answered=snapshot.agents_answered,
            unknown=len(snapshot.agents_unknown),
            seconds=round(snapshot.round_seconds, 3),
        )
        return snapshot

    async def _ask(self, hostname: str, endpoint: str) -> list[ContainerReading] | None:
        try:
            readings = await self.client.fetch(endpoint)
        except AgentUsageError as exc:
            if hostname not in self._unknown_logged:
                self._unknown_logged.add(hostname)
                emit = log.warning if isinstance(exc, AgentGarbageError) else log.info
                emit("agent_usage_unknown", hostname=hostname, endpoint=endpoint, error=str(exc))
            return None
        if hostname in self._unknown_logged:
            self._unknown_logged.discard(hostname)
            log.info("agent_usage_known", hostname=hostname)
        return readings

    def _join_tasks(self, agent: AgentUsage, now: float) -> None:
        """Add this round's sample to each of this framework's tasks on the agent."""
        framework_id = self._framework_id()
        tasks = self._tasks
        for reading, usage in agent.containers:
            if reading.framework_id != framework_id:
                continue
            mesos_id = None
            if reading.container_id is not None:
                mesos_id = self._containers.get(reading.container_id)
            parsed = parse_mesos_task_id(mesos_id or reading.executor_id)
            if parsed is None:
                continue
            task = tasks.get(parsed[0])
            if task is None or task.attempts != parsed[1]:
                continue
            history = self._history.get(task.id)
            if history is None or history.attempt != parsed[1]:
                history = self._history[task.id] = _TaskHistory(parsed[1])
            history.samples.append(TaskSample(now, usage.cpus, usage.mem, usage.disk))

    def _forget_ended(self) -> None:
        """Move the samples of tasks that ended aside (the latest ``ENDED_TASKS_KEPT`` stay
        readable) and forget their containers."""
        tasks = self._tasks
        for task_id in [t for t in self._history if t not in tasks]:
            self._ended[task_id] = self._history.pop(task_id)
            while len(self._ended) > ENDED_TASKS_KEPT:
                self._ended.popitem(last=False)
        for container_id, mesos_id in list(self._containers.items()):
            parsed = parse_mesos_task_id(mesos_id)
            if parsed is None or parsed[0] not in tasks:
                del self._containers[container_id]
