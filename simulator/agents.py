"""The simulated agents: their resources, the tasks running on them, and each task's life.

Owns `Agent`, `SimTask`, `TaskScript` and `AgentPool`. The pool plays every agent at once: it
moves tasks through STAGING -> STARTING -> RUNNING -> terminal on the shared `Timers` heap, and
plays the agent's status update manager (one stream per task: the oldest unacknowledged update
is resent with exponential backoff, the next is sent only once it is acknowledged). The pool
outlives master failovers; the master an agent is registered with is `Agent.master`.

It does not decide what to offer or validate calls: that is the master's job.
"""

from __future__ import annotations

import functools
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from scale_scheduler.simulator import protocol
from scale_scheduler.simulator.config import AgentSpec, SimConfig, attribute_json, expand
from scale_scheduler.simulator.protocol import TERMINAL_STATES
from scale_scheduler.simulator.resources import Resources
from scale_scheduler.simulator.timers import Timers
from scale_scheduler.simulator.usage import TaskUsage

log = structlog.get_logger(__name__)

# Outcomes a task may script; the last three mean "stay in this state until killed".
OUTCOMES = frozenset(
    {
        "FINISHED",
        "FAILED",
        "KILLED",
        "LOST",
        "ERROR",
        "DROPPED",
        "GONE",
        "STAGING",
        "STARTING",
        "RUNNING",
    }
)
_SOURCE = {
    "TASK_STARTING": "SOURCE_EXECUTOR",
    "TASK_RUNNING": "SOURCE_EXECUTOR",
    "TASK_FINISHED": "SOURCE_EXECUTOR",
    "TASK_FAILED": "SOURCE_EXECUTOR",
    "TASK_KILLING": "SOURCE_EXECUTOR",
    "TASK_KILLED": "SOURCE_EXECUTOR",
}
_REASON = {
    "TASK_FAILED": "REASON_COMMAND_EXECUTOR_FAILED",
    "TASK_LOST": "REASON_EXECUTOR_TERMINATED",
    "TASK_GONE": "REASON_EXECUTOR_TERMINATED",
    "TASK_DROPPED": "REASON_CONTAINER_LAUNCH_FAILED",
    "TASK_ERROR": "REASON_TASK_INVALID",
}


class ScriptError(ValueError):
    """A task's `sim.*` label or `SIM_*` variable is not understood."""


@dataclass(frozen=True, slots=True)
class TaskScript:
    """How a simulated task behaves: start delay, run time and final state."""

    duration: float
    outcome: str
    start_delay: float

    @classmethod
    def from_task_info(cls, info: dict[str, Any], config: SimConfig) -> TaskScript:
        """Read `sim.duration|outcome|start_delay` labels, else `SIM_*` environment variables."""
        env = ((info.get("command") or {}).get("environment") or {}).get("variables") or []
        if not env and not info.get("labels"):
            return _default_script(float(config.task_duration), float(config.task_start_delay))
        values: dict[str, str] = {}
        for var in env:
            if isinstance(var, dict) and isinstance(var.get("name"), str):
                name = var["name"]
                if name in ("SIM_DURATION", "SIM_OUTCOME", "SIM_START_DELAY"):
                    values[name[4:].lower()] = str(var.get("value", ""))
        for label in (info.get("labels") or {}).get("labels") or []:
            if isinstance(label, dict) and str(label.get("key", "")).startswith("sim."):
                values[label["key"][4:]] = str(label.get("value", ""))
        try:
            duration = float(values.get("duration", config.task_duration))
            start_delay = float(values.get("start_delay", config.task_start_delay))
        except ValueError as exc:
            raise ScriptError(f"simulator script: {exc}") from None
        outcome = values.get("outcome", "FINISHED").upper().removeprefix("TASK_")
        if outcome not in OUTCOMES:
            raise ScriptError(f"simulator script: unknown outcome {outcome!r}")
        if duration < 0 or start_delay < 0:
            raise ScriptError("simulator script: negative duration")
        return cls(duration, outcome, start_delay)


@functools.lru_cache(maxsize=8)
def _default_script(duration: float, start_delay: float) -> TaskScript:
    """The script of a task that scripts nothing (shared: one per configuration)."""
    if duration < 0 or start_delay < 0:
        raise ScriptError("simulator script: negative duration")
    return TaskScript(duration, "FINISHED", start_delay)


AGENT_HTTP_MODES = frozenset({"v1", "v0", "silent"})


class AgentsMaster(Protocol):
    """What an agent needs from the master it is registered with (`master.Master` is one)."""

    def agent_registered(self, agent: Agent) -> None: ...

    def task_completed(self, task: SimTask) -> None: ...

    def forward_update(self, task: SimTask, status: dict[str, Any]) -> None: ...


@dataclass(slots=True, eq=False)
class Agent:
    id: str
    index: int
    hostname: str
    total: Resources
    attributes: list[dict[str, Any]]
    port: int = 5051
    allocated: Resources = field(default_factory=Resources)
    tasks: dict[tuple[str, str], SimTask] = field(default_factory=dict)
    master: AgentsMaster | None = None
    registered_time: float = 0.0
    removed: bool = False
    http_mode: str = "v1"
    """How its HTTP endpoint answers: ``v1`` (the v1 operator API and /monitor/statistics),
    ``v0`` (an old agent: /monitor/statistics only, 404 on /api/v1), ``silent`` (never)."""
    statistics_next: float = 0.0
    """When /monitor/statistics may next be served (the agent's limiter: 2 per second)."""
    http_requests: Counter[str] = field(default_factory=Counter)
    """Requests its endpoints received, by endpoint (``api/v1``, ``monitor/statistics``)."""

    @property
    def pid_id(self) -> str:
        """The agent process's libprocess id, the path of its endpoints (``slave(1)``)."""
        return f"slave({self.index + 1})"

    def agent_info(self) -> dict[str, Any]:
        return {
            "id": {"value": self.id},
            "hostname": self.hostname,
            "port": self.port,
            "resources": self.total.to_json(),
            "attributes": self.attributes,
        }


class ResendTicket:
    """A scheduled resend of a task's update in flight. Timer entries cannot be cancelled, and
    an agent sends every update with one due ``status_update_retry`` (10 s) later; holding the
    task itself, each kept a task whose updates were all acknowledged alive, with its TaskInfo
    and statuses, until then: under B6's stream of 0.2 s tasks, ten seconds of finished tasks
    (about 50,000) that every garbage collection of the simulator walked, each collection
    standing its loop still for up to a second. The entry holds the task through this ticket,
    which a cancel empties."""

    __slots__ = ("task",)

    def __init__(self, task: SimTask) -> None:
        self.task: SimTask | None = task

    def cancel(self) -> None:
        self.task = None


@dataclass(slots=True, eq=False)
class SimTask:
    task_id: str
    framework_id: str
    agent: Agent
    info: dict[str, Any]
    resources: Resources
    script: TaskScript
    partition_aware: bool
    state: str = "TASK_STAGING"
    statuses: list[dict[str, Any]] = field(default_factory=list)
    pending: deque[dict[str, Any]] = field(default_factory=deque)
    gen: int = 0  # bumped to cancel scheduled transitions
    resend: ResendTicket | None = None
    """The scheduled resend of the update in flight (emptied to cancel it)."""
    retry_delay: float = 0.0
    killing: bool = False
    container_id: str = ""
    usage: TaskUsage | None = None
    started: float | None = None
    """Wall time the executor launched the task (its STARTING): usage accrues from then."""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_json(self) -> dict[str, Any]:
        """Mesos `Task` (master.proto GET_TASKS)."""
        out: dict[str, Any] = {
            "name": self.info.get("name", ""),
            "task_id": {"value": self.task_id},
            "framework_id": {"value": self.framework_id},
            "executor_id": {"value": self.task_id},
            "agent_id": {"value": self.agent.id},
            "state": self.state,
            "resources": self.info.get("resources", []),
            "statuses": self.statuses,
        }
        if self.pending:
            out["status_update_state"] = self.pending[0]["state"]
            out["status_update_uuid"] = self.pending[0]["uuid"]
        elif self.statuses:
            out["status_update_state"] = self.statuses[-1]["state"]
            out["status_update_uuid"] = self.statuses[-1]["uuid"]
        for key in ("labels", "container", "discovery", "kill_policy"):
            if key in self.info:
                out[key] = self.info[key]
        return out


class AgentPool:
    """Every simulated agent, and the lifecycle of every task on them."""

    def __init__(self, config: SimConfig, timers: Timers, rng: random.Random, prefix: str) -> None:
        self.config = config
        self.timers = timers
        self.rng = rng
        self.prefix = prefix
        self.agents: dict[str, Agent] = {}
        self.by_index: dict[int, Agent] = {}
        self.agent_port = 5051
        """Where the agents' HTTP endpoint listens (set once the cluster has bound it)."""
        self._next_index = 0

    # agents ---------------------------------------------------------------------------------

    def create_agent(self, spec: AgentSpec) -> Agent:
        index = self._next_index
        self._next_index += 1
        total = Resources.of(
            {"cpus": spec.cpus, "mem": spec.mem, "disk": spec.disk, "gpus": spec.gpus},
            ports=spec.ports,
        )
        attributes = [attribute_json(n, expand(v, index)) for n, v in spec.attributes]
        agent = Agent(
            id=f"{self.prefix}-S{index}",
            index=index,
            hostname=expand(spec.hostname, index),
            total=total,
            attributes=attributes,
            port=self.agent_port,
            registered_time=self.timers.wall(),
        )
        self.agents[agent.id] = agent
        self.by_index[index] = agent
        return agent

    def find(self, key: str) -> Agent | None:
        """An agent by id or hostname."""
        agent = self.agents.get(key)
        if agent is not None:
            return agent
        return next((a for a in self.agents.values() if a.hostname == key), None)

    def remove_agent(self, agent: Agent) -> list[SimTask]:
        """Take the agent away with everything on it; returns the tasks it still ran."""
        agent.removed = True
        self.agents.pop(agent.id, None)
        self.by_index.pop(agent.index, None)
        tasks = list(agent.tasks.values())
        for task in tasks:
            task.gen += 1
            _cancel_resend(task)
            task.pending.clear()
        agent.tasks.clear()
        agent.allocated = Resources()
        agent.master = None
        return tasks

    def detach_all(self) -> None:
        """A new leader was elected: every agent drops its registration until it re-registers."""
        for agent in self.agents.values():
            agent.master = None

    def register(self, agent: Agent, master: AgentsMaster) -> None:
        """(Re-)register an agent with `master` and flush its unacknowledged updates."""
        agent.master = master
        agent.registered_time = self.timers.wall()
        master.agent_registered(agent)
        for task in list(agent.tasks.values()):
            if task.pending:
                task.retry_delay = self.config.status_update_retry
                self._send_head(task)

    # tasks ----------------------------------------------------------------------------------

    def launch(self, task: SimTask) -> None:
        agent = task.agent
        agent.tasks[(task.framework_id, task.task_id)] = task
        agent.allocated.add_in_place(task.resources)
        task.retry_delay = self.config.status_update_retry
        task.container_id = protocol.new_uuid(self.rng.randbytes(16))
        script = task.script
        if script.outcome == "STAGING":
            return
        # Delays (not absolute times): tasks with the same script share the timers' lanes.
        after = self.timers.after
        after(script.start_delay / 2, self._transition, task, task.gen, "STARTING")
        if script.outcome == "STARTING":
            return
        limit = protocol.duration_seconds(task.info.get("max_completion_time"))
        if limit is not None and limit >= 0:
            # The executor starts the clock when it launches the task (at STARTING).
            after(script.start_delay / 2 + limit, self._transition, task, task.gen, "TIME_LIMIT")
        after(script.start_delay, self._transition, task, task.gen, "RUNNING")
        if script.outcome == "RUNNING":
            return
        after(script.start_delay + script.duration, self._transition, task, task.gen, "END")

    def kill(self, task: SimTask, killing_state: bool, grace: float | None = None) -> None:
        """SIGTERM, then SIGKILL. Without a grace period the task exits ``kill_delay`` after
        SIGTERM. With one it is modelled as a task that ignores SIGTERM: it goes on with its
        script and is KILLED when the script ends or, at the latest, when the grace period is
        over (a second KILL with a shorter grace period brings that forward)."""
        if task.terminal or task.agent.removed:
            return
        if task.killing:
            if grace is not None:
                self.timers.after(grace, self._killed, task, task.gen)
            return
        if task.state == "TASK_STAGING" or grace is None:
            task.gen += 1
        if task.state == "TASK_STAGING":
            self.emit(
                task,
                "TASK_KILLED",
                source="SOURCE_AGENT",
                reason="REASON_TASK_KILLED_DURING_LAUNCH",
                message="Killed before the task was launched",
            )
            return
        task.killing = True
        if killing_state:
            self.emit(task, "TASK_KILLING")
        delay = self.config.kill_delay if grace is None else grace
        self.timers.after(delay, self._killed, task, task.gen)

    def forget(self, task: SimTask) -> None:
        """Drop a terminal task whose id is being reused, with its unacknowledged updates."""
        _cancel_resend(task)
        task.pending.clear()
        if task.agent.tasks.get((task.framework_id, task.task_id)) is task:
            del task.agent.tasks[(task.framework_id, task.task_id)]

    def shutdown_framework(self, framework_id: str) -> int:
        """The framework was removed: agents kill its tasks and forget them (no updates)."""
        removed = 0
        for agent in self.agents.values():
            for key in [k for k in agent.tasks if k[0] == framework_id]:
                task = agent.tasks.pop(key)
                task.gen += 1
                _cancel_resend(task)
                task.pending.clear()
                if not task.terminal:
                    agent.allocated.subtract_in_place(task.resources)
                    task.state = "TASK_KILLED"
                removed += 1
        return removed

    def acknowledge(self, task: SimTask, uuid: str) -> bool:
        """Apply an ACKNOWLEDGE; True when it matched the update in flight."""
        if not task.pending or task.pending[0].get("uuid") != uuid:
            return False
        task.pending.popleft()
        _cancel_resend(task)
        task.retry_delay = self.config.status_update_retry
        if task.pending:
            self._send_head(task)
        elif task.terminal:
            task.agent.tasks.pop((task.framework_id, task.task_id), None)
            if task.agent.master is not None:
                task.agent.master.task_completed(task)
        return True

    def emit(
        self,
        task: SimTask,
        state: str,
        *,
        source: str | None = None,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        """The agent produces a status update (with a uuid) and queues it on the task's stream."""
        state = protocol.state_for(state, task.partition_aware)
        status = protocol.task_status(
            task.task_id,
            state,
            agent_id=task.agent.id,
            source=source or _SOURCE.get(state, "SOURCE_AGENT"),
            timestamp=self.timers.wall(),
            reason=reason or _REASON.get(state),
            message=message,
            uuid=protocol.new_uuid(self.rng.randbytes(16)),
            executor_id=task.task_id,
            container_id=task.container_id or None,
        )
        was_terminal = task.terminal
        task.state = state
        task.statuses.append(status)
        if task.terminal and not was_terminal:
            task.agent.allocated.subtract_in_place(task.resources)
        task.pending.append(status)
        if len(task.pending) == 1:
            self._send_head(task)

    def _transition(self, task: SimTask, gen: int, step: str) -> None:
        if gen != task.gen or task.terminal or task.agent.removed:
            return
        if task.killing:
            if step == "END":  # it exited within its grace period: killed, as Mesos says
                self._killed(task, gen)
            return
        if step == "TIME_LIMIT":
            self.emit(
                task,
                "TASK_FAILED",
                reason="REASON_MAX_COMPLETION_TIME_REACHED",
                message="Task exceeded its maximum completion time",
            )
            return
        if step != "END":
            if step == "STARTING":
                task.started = self.timers.wall()
            self.emit(task, "TASK_" + step)
            return
        outcome = "TASK_" + task.script.outcome
        message = None
        if outcome == "TASK_FAILED":
            message = "Command exited with status 1"
        self.emit(task, outcome, message=message)

    def _killed(self, task: SimTask, gen: int) -> None:
        if gen != task.gen or task.terminal or task.agent.removed:
            return
        self.emit(task, "TASK_KILLED", message="Command terminated with signal Terminated")

    def _send_head(self, task: SimTask) -> None:
        master = task.agent.master
        if master is not None:
            master.forward_update(task, task.pending[0])
        _cancel_resend(task)
        task.resend = ResendTicket(task)
        self.timers.after(task.retry_delay, self._resend, task.resend)

    def _resend(self, ticket: ResendTicket) -> None:
        task = ticket.task
        if task is None or not task.pending or task.agent.removed:
            return
        log.debug("sim_update_resent", task_id=task.task_id, after_s=task.retry_delay)
        task.retry_delay = min(task.retry_delay * 2, self.config.status_update_retry_max)
        self._send_head(task)


def _cancel_resend(task: SimTask) -> None:
    if task.resend is not None:
        task.resend.cancel()
        task.resend = None
