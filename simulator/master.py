"""One simulated Mesos master: frameworks, offers, allocation and scheduler-call semantics.

Owns `Master`, `Framework`, `Offer` and `CallError`. A master holds state only while it leads;
losing leadership wipes it (a real master exits), and a newly elected master learns tasks only
as agents re-register, exactly like Mesos after a failover. Call handlers are synchronous: the
HTTP layer (`http.py`) validates transport concerns (auth, content type, stream id) and calls in.
The agent side (task lifecycle, update resends) lives in `agents.AgentPool`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from scale_scheduler.simulator import protocol
from scale_scheduler.simulator.agents import Agent, AgentPool, ScriptError, SimTask, TaskScript
from scale_scheduler.simulator.config import SimConfig
from scale_scheduler.simulator.faults import CallFaults, FaultTarget
from scale_scheduler.simulator.record import ClusterRecord
from scale_scheduler.simulator.resources import ResourceError, Resources
from scale_scheduler.simulator.stream import Subscription
from scale_scheduler.simulator.timers import Timers
from scale_scheduler.simulator.usage import TaskUsage, UsageError

log = structlog.get_logger(__name__)

_MIN_CPUS = 0.01
_MIN_MEM = 32.0
_MAX_REFUSE_SECONDS = 365 * 24 * 3600.0


class CallError(Exception):
    """A call the master refuses: HTTP status plus Mesos's text/plain message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _roles_of(info: dict[str, Any]) -> tuple[str, ...]:
    caps = {c.get("type") for c in info.get("capabilities") or [] if isinstance(c, dict)}
    if "MULTI_ROLE" in caps:
        roles = [r for r in info.get("roles") or [] if isinstance(r, str)]
        return tuple(roles)
    role = info.get("role")
    return (role if isinstance(role, str) and role else "*",)


@dataclass(slots=True, eq=False)
class Offer:
    id: str
    framework: Framework
    agent: Agent
    role: str
    resources: Resources


@dataclass(slots=True, eq=False)
class Framework:
    id: str
    info: dict[str, Any]
    roles: tuple[str, ...] = ("*",)
    capabilities: frozenset[str] = frozenset()
    suppressed: set[str] = field(default_factory=set)
    subscription: Subscription | None = None
    active: bool = False
    recovered: bool = False
    registered_time: float | None = None
    reregistered_time: float | None = None
    unregistered_time: float | None = None
    offers: dict[str, Offer] = field(default_factory=dict)
    tasks: dict[str, SimTask] = field(default_factory=dict)
    completed_tasks: deque[SimTask] = field(default_factory=deque)
    filters: dict[tuple[str, str], tuple[Resources, float]] = field(default_factory=dict)
    failover_gen: int = 0

    def set_info(self, info: dict[str, Any]) -> None:
        self.info = info
        self.roles = _roles_of(info)
        self.capabilities = frozenset(
            c["type"] for c in info.get("capabilities") or [] if isinstance(c, dict) and "type" in c
        )

    @property
    def partition_aware(self) -> bool:
        return "PARTITION_AWARE" in self.capabilities

    @property
    def connected(self) -> bool:
        return self.subscription is not None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "framework_info": self.info,
            "active": self.active,
            "connected": self.connected,
            "recovered": self.recovered,
            "offers": [],
            "inverse_offers": [],
            "allocated_resources": [],
            "offered_resources": [],
        }
        for key in ("registered_time", "reregistered_time", "unregistered_time"):
            value = getattr(self, key)
            if value is not None:
                out[key] = protocol.time_info(value)
        allocated = Resources()
        for task in self.tasks.values():
            if not task.terminal:
                allocated.add_in_place(task.resources)
        offered = Resources()
        for offer in self.offers.values():
            offered.add_in_place(offer.resources)
        out["allocated_resources"] = allocated.to_json()
        out["offered_resources"] = offered.to_json()
        return out


class MasterHost(FaultTarget, Protocol):
    """What a master needs from the cluster it runs in (`cluster.SimulatedCluster` is one).

    Shared across masters, as a real cluster's agents and ZooKeeper outlive any one master:
    the agent pool, the clock, the framework infos a failover must recover, the test record.
    """

    config: SimConfig
    timers: Timers
    pool: AgentPool
    prefix: str
    rng: random.Random
    record: ClusterRecord
    faults: CallFaults
    framework_infos: dict[str, dict[str, Any]]

    def master_elected(self, master: Master, epoch: int) -> None: ...

    def state(self) -> dict[str, Any]:
        """The whole cluster as JSON (the simulator's `/sim/state`)."""
        ...


class Master:
    """A master process of the simulated cluster (one HTTP server; leader or not)."""

    def __init__(self, cluster: MasterHost, index: int, host: str) -> None:
        self.cluster = cluster
        self.config = cluster.config
        self.timers = cluster.timers
        self.pool = cluster.pool
        self.index = index
        self.host = host
        self.port = 0
        self.master_id = ""
        self.leading = False
        self.leader_info: dict[str, Any] | None = None
        self.start_time = self.timers.wall()
        self.elected_time: float | None = None
        self._epoch = 0
        self._fw_seq = itertools.count()
        self._offer_seq = itertools.count()
        self._stream_seq = itertools.count()
        self._allocation_scheduled = False
        self._reset_state()

    def _reset_state(self) -> None:
        self.frameworks: dict[str, Framework] = {}
        self.completed_frameworks: deque[Framework] = deque(maxlen=50)
        self.removed_framework_ids: set[str] = set()
        self.offers: dict[str, Offer] = {}
        self.offered: dict[str, Resources] = {}
        self.agents: dict[str, Agent] = {}
        self.unreachable: dict[tuple[str, str], SimTask] = {}
        self.unreachable_agents: set[str] = set()

    # identity and leadership ----------------------------------------------------------------

    def new_identity(self) -> dict[str, Any]:
        """A fresh master id, as a restarted master process has; returns its MasterInfo."""
        self.master_id = (
            f"{self.cluster.prefix}-M{self.index}-{self.cluster.rng.getrandbits(32):08x}"
        )
        return self.info()

    def info(self) -> dict[str, Any]:
        return protocol.master_info(self.master_id, self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def observe_leader(self, leader: dict[str, Any] | None) -> None:
        """The election says `leader` (MasterInfo) leads now; None means nobody does."""
        self.leader_info = leader
        is_me = leader is not None and leader.get("id") == self.master_id
        if is_me and not self.leading:
            self._elected()
        elif not is_me and self.leading:
            self._demote()

    def _elected(self) -> None:
        self.leading = True
        self._epoch += 1
        self.elected_time = self.timers.wall()
        log.info("sim_master_elected", master=self.index, master_id=self.master_id, port=self.port)
        self.cluster.master_elected(self, self._epoch)

    def _demote(self) -> None:
        log.info("sim_master_lost_leadership", master=self.index, master_id=self.master_id)
        self.leading = False
        self._epoch += 1
        subs = [fw.subscription for fw in self.frameworks.values() if fw.subscription]
        self._reset_state()
        for sub in subs:
            sub.close(abort=True)
        for agent in self.pool.agents.values():
            if agent.master is self:
                agent.master = None

    def register_agents_after_failover(self, epoch: int) -> None:
        if epoch != self._epoch or not self.leading:
            return
        for agent in list(self.pool.agents.values()):
            if agent.master is None:
                self.pool.register(agent, self)

    def agent_recovering(self, agent_id: str) -> bool:
        agent = self.pool.agents.get(agent_id)
        return agent is not None and agent.master is not self

    # agents ---------------------------------------------------------------------------------

    def agent_registered(self, agent: Agent) -> None:
        self.agents[agent.id] = agent
        self.unreachable_agents.discard(agent.id)
        for task in agent.tasks.values():
            fw = self.frameworks.get(task.framework_id)
            if fw is None:
                fw = self._recovered_framework(task.framework_id)
            fw.tasks[task.task_id] = task
        self.allocate_soon()

    def _recovered_framework(self, framework_id: str) -> Framework:
        known = self.cluster.framework_infos.get(framework_id)
        info = dict(known) if known else {"id": {"value": framework_id}, "user": "", "name": ""}
        fw = Framework(id=framework_id, info=info, recovered=True)
        fw.set_info(info)
        self.frameworks[framework_id] = fw
        return fw

    def agent_removed(self, agent: Agent, tasks: list[SimTask]) -> None:
        """The agent became unreachable: rescind its offers, report its tasks, send FAILURE."""
        for offer in [o for o in self.offers.values() if o.agent is agent]:
            self._remove_offer(offer, rescind=True)
        self.agents.pop(agent.id, None)
        self.offered.pop(agent.id, None)
        self.unreachable_agents.add(agent.id)
        now = self.timers.wall()
        for task in tasks:
            fw = self.frameworks.get(task.framework_id)
            if fw is not None and fw.tasks.get(task.task_id) is task:
                del fw.tasks[task.task_id]
            if task.terminal:
                continue
            task.state = "TASK_UNREACHABLE"
            self.unreachable[(task.framework_id, task.task_id)] = task
            if fw is not None and fw.subscription is not None:
                status = protocol.task_status(
                    task.task_id,
                    protocol.state_for("TASK_UNREACHABLE", fw.partition_aware),
                    agent_id=agent.id,
                    source="SOURCE_MASTER",
                    timestamp=now,
                    reason="REASON_AGENT_REMOVED",
                    message=f"Agent {agent.hostname} is unreachable",
                )
                fw.subscription.send(protocol.update_event(status))
        failure = protocol.failure_event(agent.id)
        for fw in self.frameworks.values():
            if fw.subscription is not None:
                fw.subscription.send(failure)

    def agent_gone(self, agent: str) -> int:
        """An operator marked an unreachable agent (id or hostname) gone (Mesos's
        MARK_AGENT_GONE): its tasks end TASK_GONE_BY_OPERATOR. Returns how many."""
        gone = [
            (key, task)
            for key, task in self.unreachable.items()
            if agent in (task.agent.id, task.agent.hostname)
        ]
        now = self.timers.wall()
        for key, task in gone:
            del self.unreachable[key]
            self.unreachable_agents.discard(task.agent.id)
            task.state = "TASK_GONE_BY_OPERATOR"
            fw = self.frameworks.get(task.framework_id)
            if fw is not None and fw.subscription is not None:
                status = protocol.task_status(
                    task.task_id,
                    protocol.state_for("TASK_GONE_BY_OPERATOR", fw.partition_aware),
                    agent_id=task.agent.id,
                    source="SOURCE_MASTER",
                    timestamp=now,
                    reason="REASON_AGENT_REMOVED_BY_OPERATOR",
                    message=f"Agent {task.agent.hostname} was marked gone",
                )
                fw.subscription.send(protocol.update_event(status))
        return len(gone)

    # subscriptions --------------------------------------------------------------------------

    def subscribe(self, info: dict[str, Any], suppressed_roles: list[str]) -> Subscription:
        """Admit a (re)subscription; the returned stream already holds SUBSCRIBED or ERROR."""
        framework_id = protocol.value_of(info, "id")
        stream_id = self._new_stream_id()
        if framework_id is not None and framework_id in self.removed_framework_ids:
            sub = Subscription(framework_id, stream_id, self.config.heartbeat_interval)
            sub.send(protocol.error_event("Framework has been removed"))
            sub.close()
            return sub
        now = self.timers.wall()
        fw = self.frameworks.get(framework_id) if framework_id else None
        if fw is not None:
            old = fw.subscription
            fw.subscription = None
            if old is not None:
                self.cluster.record.subscription_ended(old.stream_id, self.timers.now())
                old.send(protocol.error_event("Framework failed over"))
                old.close()
            for offer in list(fw.offers.values()):
                self._remove_offer(offer, rescind=False)
            fw.reregistered_time = now
            fw.recovered = False
        else:
            if framework_id is None:
                framework_id = f"{self.master_id}-{next(self._fw_seq):04d}"
            fw = Framework(id=framework_id, info={}, registered_time=now)
            if protocol.value_of(info, "id"):
                fw.reregistered_time = now
            self.frameworks[framework_id] = fw
        assert framework_id is not None  # given, or assigned above
        stored = dict(info)
        stored["id"] = {"value": framework_id}
        fw.set_info(stored)
        self.cluster.framework_infos[framework_id] = stored
        fw.suppressed = set(suppressed_roles)
        fw.active = True
        fw.failover_gen += 1
        sub = Subscription(framework_id, stream_id, self.config.heartbeat_interval)
        fw.subscription = sub
        hostname = info.get("hostname")
        self.cluster.record.subscription_began(
            framework_id,
            stream_id,
            self.index,
            hostname if isinstance(hostname, str) else None,
            self.timers.now(),
        )
        sub.send(
            protocol.subscribed_event(framework_id, self.config.heartbeat_interval, self.info())
        )
        sub.start_heartbeats()
        log.info("sim_framework_subscribed", framework_id=framework_id, master=self.index)
        self.allocate_soon()
        return sub

    def _new_stream_id(self) -> str:
        raw = self.cluster.rng.getrandbits(128).to_bytes(16, "big").hex()
        return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"

    def stream_ended(self, sub: Subscription) -> None:
        """The SUBSCRIBE connection closed: disconnect and start the failover timeout."""
        fw = self.frameworks.get(sub.framework_id)
        if fw is None or fw.subscription is not sub:
            return
        fw.subscription = None
        self.cluster.record.subscription_ended(sub.stream_id, self.timers.now())
        fw.active = False
        fw.unregistered_time = self.timers.wall()
        for offer in list(fw.offers.values()):
            self._remove_offer(offer, rescind=False)
        timeout = fw.info.get("failover_timeout", 0.0)
        timeout = float(timeout) if isinstance(timeout, int | float) else 0.0
        fw.failover_gen += 1
        log.info("sim_framework_disconnected", framework_id=fw.id, failover_timeout=timeout)
        self.timers.after(max(timeout, 0.0), self._failover_expired, fw, fw.failover_gen)

    def _failover_expired(self, fw: Framework, gen: int) -> None:
        if gen != fw.failover_gen or fw.subscription is not None:
            return
        if self.frameworks.get(fw.id) is not fw:
            return
        log.info("sim_framework_failover_timeout", framework_id=fw.id)
        self.remove_framework(fw)

    def remove_framework(self, fw: Framework) -> None:
        """TEARDOWN or failover timeout: kill every task and forget the framework."""
        for offer in list(fw.offers.values()):
            self._remove_offer(offer, rescind=False)
        killed = self.pool.shutdown_framework(fw.id)
        self.frameworks.pop(fw.id, None)
        for key in [k for k in self.unreachable if k[0] == fw.id]:
            del self.unreachable[key]
        self.removed_framework_ids.add(fw.id)
        fw.active = False
        fw.unregistered_time = self.timers.wall()
        sub, fw.subscription = fw.subscription, None
        if sub is not None:
            self.cluster.record.subscription_ended(sub.stream_id, self.timers.now())
        for task in fw.tasks.values():
            fw.completed_tasks.append(task)
        fw.tasks = {}
        self.completed_frameworks.append(fw)
        if sub is not None:
            sub.close()
        log.info("sim_framework_removed", framework_id=fw.id, tasks_killed=killed)

    def framework_for_call(self, call: dict[str, Any], stream_id: str | None) -> Framework:
        """Resolve the caller as Mesos does: 400 unknown, 403 not subscribed, 400 bad stream."""
        framework_id = protocol.value_of(call, "framework_id")
        if framework_id is None:
            raise CallError(
                400, "Failed to validate scheduler::Call: Expecting 'framework_id' to be present"
            )
        fw = self.frameworks.get(framework_id)
        if fw is None:
            raise CallError(400, "Framework cannot be found")
        if fw.subscription is None:
            raise CallError(403, "Framework is not subscribed")
        if stream_id is None:
            raise CallError(
                400, "All non-subscribe calls should include the 'Mesos-Stream-Id' header"
            )
        if stream_id != fw.subscription.stream_id:
            raise CallError(
                400,
                f"The stream ID '{stream_id}' included in this request didn't match the stream "
                f"ID currently associated with framework ID {framework_id}",
            )
        return fw

    # calls ----------------------------------------------------------------------------------

    def handle_call(self, fw: Framework, call_type: str, call: dict[str, Any]) -> int:
        """Apply one non-SUBSCRIBE call; returns the HTTP status (202, or 200)."""
        payload = call.get(call_type.lower())
        if call_type in _PAYLOAD_REQUIRED and not isinstance(payload, dict):
            raise CallError(
                400,
                f"Failed to validate scheduler::Call: Expecting '{call_type.lower()}' "
                "to be present",
            )
        body: dict[str, Any] = payload if isinstance(payload, dict) else {}
        if fw.subscription is not None:
            self.cluster.record.call_accepted(fw.subscription.stream_id, self.timers.now())
        if call_type == "ACCEPT":
            self._accept(fw, body)
        elif call_type == "DECLINE":
            self._decline(fw, body)
        elif call_type == "REVIVE":
            self._revive(fw, _roles(body))
        elif call_type == "SUPPRESS":
            roles = _roles(body) or list(fw.roles)
            fw.suppressed.update(roles)
        elif call_type == "KILL":
            self._kill(fw, body)
        elif call_type == "ACKNOWLEDGE":
            self._acknowledge(fw, body)
        elif call_type == "RECONCILE":
            self._reconcile(fw, body)
        elif call_type == "TEARDOWN":
            self.cluster.record.teardown_received = True
            self.remove_framework(fw)
        elif call_type == "UPDATE_FRAMEWORK":
            self._update_framework(fw, body)
            return 200
        return 202

    def _accept(self, fw: Framework, body: dict[str, Any]) -> None:
        offer_ids = [o.get("value") for o in body.get("offer_ids") or [] if isinstance(o, dict)]
        operations = body.get("operations") or []
        if not isinstance(operations, list):
            raise CallError(400, "Failed to validate scheduler::Call: bad 'operations'")
        launches: list[dict[str, Any]] = []
        for op in operations:
            if not isinstance(op, dict):
                raise CallError(400, "Failed to validate scheduler::Call: bad operation")
            if op.get("type") in ("LAUNCH", "LAUNCH_GROUP"):
                key = "launch" if op["type"] == "LAUNCH" else "launch_group"
                group = op.get(key) or {}
                infos = group.get("task_infos") if key == "launch" else group.get("task_group")
                if key == "launch_group":
                    infos = (infos or {}).get("tasks")
                if not isinstance(infos, list):
                    raise CallError(400, f"Failed to validate scheduler::Call: bad '{key}'")
                for info in infos:
                    if not isinstance(info, dict) or not (
                        isinstance(info.get("name"), str)
                        and protocol.value_of(info, "task_id")
                        and protocol.value_of(info, "agent_id")
                    ):
                        raise CallError(
                            400,
                            "Failed to convert JSON into Call protobuf: TaskInfo needs "
                            "'name', 'task_id' and 'agent_id'",
                        )
                    launches.append(info)
            else:
                log.warning("sim_operation_ignored", operation=op.get("type"))
        refuse = _refuse_seconds(body, self.config.default_refuse_seconds)

        offers: list[Offer] = []
        error = None
        if not offer_ids:
            error = "No offers specified"
        seen: set[str] = set()
        for oid in offer_ids:
            offer = self.offers.get(oid) if isinstance(oid, str) else None
            if offer is None:
                error = f"Offer {oid} is no longer valid"
            elif offer.framework is not fw:
                error = f"Offer {oid} has invalid framework"
            elif oid in seen:
                error = f"Duplicate offer {oid} in offer list"
            else:
                offers.append(offer)
            seen.add(str(oid))
        if offers and len({o.agent.id for o in offers}) > 1:
            error = "Aggregated offers must belong to one single agent"
        record = self.cluster.record
        for info in launches:
            record.launch_attempts[protocol.value_of(info, "task_id") or ""] += 1
        if error is not None:
            for offer in offers:
                self._remove_offer(offer, rescind=False)
            lost = protocol.state_for("TASK_DROPPED", fw.partition_aware)
            for info in launches:
                self._master_update(
                    fw,
                    protocol.value_of(info, "task_id") or "",
                    lost,
                    protocol.value_of(info, "agent_id"),
                    "REASON_INVALID_OFFERS",
                    f"Task launched with invalid offers: {error}",
                )
            return

        agent = offers[0].agent
        role = offers[0].role
        pool = Resources()
        for offer in offers:
            pool.add_in_place(offer.resources)
            self._remove_offer(offer, rescind=False)
        launching: set[str] = set()
        for info in launches:
            task_id = protocol.value_of(info, "task_id") or ""
            problem = self._validate_task(fw, info, agent, launching)
            resources: Resources | None = None
            script: TaskScript | None = None
            usage: TaskUsage | None = None
            if problem is None:
                try:
                    resources = Resources.from_json(info.get("resources") or [])
                    script = TaskScript.from_task_info(info, self.config)
                    usage = TaskUsage.of(info, resources.scalars, self.config)
                except (ResourceError, ScriptError, UsageError) as exc:
                    problem = str(exc)
            if problem is None and resources is not None and resources.is_empty():
                problem = "Task uses no resources"
            if problem is None and resources is not None and not pool.contains(resources):
                problem = "Task uses more resources than available in the offers"
            if problem is not None or resources is None or script is None:
                self._master_update(
                    fw, task_id, "TASK_ERROR", agent.id, "REASON_TASK_INVALID", problem
                )
                continue
            pool.subtract_in_place(resources)
            launching.add(task_id)
            task = SimTask(
                task_id=task_id,
                framework_id=fw.id,
                agent=agent,
                info=info,
                resources=resources,
                script=script,
                partition_aware=fw.partition_aware,
                usage=usage,
            )
            old = fw.tasks.get(task_id)
            if old is not None:
                self.pool.forget(old)
                fw.completed_tasks.append(old)
            fw.tasks[task_id] = task
            record.launched(task_id, agent.hostname, self.timers.now())
            self.pool.launch(task)
        if refuse > 0 and not pool.is_empty():
            fw.filters[(role, agent.id)] = (pool, self._filter_expiry(refuse))

    def _validate_task(
        self, fw: Framework, info: dict[str, Any], agent: Agent, launching: set[str]
    ) -> str | None:
        task_id = protocol.value_of(info, "task_id") or ""
        if task_id in launching:
            return "Task has duplicate ID: " + task_id
        existing = fw.tasks.get(task_id)
        if existing is not None and not existing.terminal:
            return "Task has duplicate ID: " + task_id
        if protocol.value_of(info, "agent_id") != agent.id:
            return f"Task uses invalid agent: {protocol.value_of(info, 'agent_id')}"
        if "executor" in info and "command" in info:
            return "Task should have at least one (but not both) of CommandInfo or ExecutorInfo"
        kill_policy = info.get("kill_policy")
        if isinstance(kill_policy, dict) and "grace_period" in kill_policy:
            grace = protocol.duration_seconds(kill_policy["grace_period"])
            if grace is None or grace < 0:
                return "Task's 'kill_policy.grace_period' must be non-negative"
        if "max_completion_time" in info:
            limit = protocol.duration_seconds(info["max_completion_time"])
            if limit is None or limit < 0:
                return "Task's `max_completion_time` must be non-negative"
        return None

    def _master_update(
        self,
        fw: Framework,
        task_id: str,
        state: str,
        agent_id: str | None,
        reason: str,
        message: str | None,
    ) -> None:
        """A status update generated by the master itself: it carries no uuid."""
        if fw.subscription is None:
            return
        status = protocol.task_status(
            task_id,
            protocol.state_for(state, fw.partition_aware),
            agent_id=agent_id,
            source="SOURCE_MASTER",
            timestamp=self.timers.wall(),
            reason=reason,
            message=message,
        )
        fw.subscription.send(protocol.update_event(status))

    def _decline(self, fw: Framework, body: dict[str, Any]) -> None:
        refuse = _refuse_seconds(body, self.config.default_refuse_seconds)
        for item in body.get("offer_ids") or []:
            oid = item.get("value") if isinstance(item, dict) else None
            offer = self.offers.get(oid) if isinstance(oid, str) else None
            if offer is None or offer.framework is not fw:
                continue
            self._remove_offer(offer, rescind=False)
            if refuse > 0:
                key = (offer.role, offer.agent.id)
                self_filter = fw.filters.get(key)
                filtered = offer.resources
                if self_filter is not None and self_filter[1] > self.timers.now():
                    filtered = filtered + self_filter[0]
                fw.filters[key] = (filtered, self._filter_expiry(refuse))

    def _filter_expiry(self, refuse: float) -> float:
        """When a filter of ``refuse`` seconds (> 0) installed now expires. As Mesos's
        allocator, it lasts at least one allocation interval, so it never expires before the
        next periodic allocation (MESOS-4302): a filter shorter than the interval still keeps
        the agent out of the next cycle. Only 0 installs no filter."""
        return self.timers.now() + max(refuse, self.config.allocation_interval)

    def _revive(self, fw: Framework, roles: list[str]) -> None:
        targets = set(roles or fw.roles)
        fw.suppressed -= targets
        for key in [k for k in fw.filters if k[0] in targets]:
            del fw.filters[key]
        self.allocate_soon()

    def _kill(self, fw: Framework, body: dict[str, Any]) -> None:
        task_id = protocol.value_of(body, "task_id")
        if task_id is None:
            raise CallError(400, "Failed to validate scheduler::Call: Expecting 'task_id'")
        task = fw.tasks.get(task_id)
        if task is None:
            # Mesos answers a kill of an unknown task with a reconciliation of it.
            item: dict[str, Any] = {"task_id": {"value": task_id}}
            if protocol.value_of(body, "agent_id"):
                item["agent_id"] = body["agent_id"]
            self._reconcile(fw, {"tasks": [item]})
            return
        grace = protocol.grace_period(body.get("kill_policy"))
        if grace is None:
            grace = protocol.grace_period(task.info.get("kill_policy"))
        self.pool.kill(task, "TASK_KILLING_STATE" in fw.capabilities, grace)

    def _acknowledge(self, fw: Framework, body: dict[str, Any]) -> None:
        task_id = protocol.value_of(body, "task_id")
        agent_id = protocol.value_of(body, "agent_id")
        uuid = body.get("uuid")
        if task_id is None or agent_id is None or not isinstance(uuid, str):
            raise CallError(
                400,
                "Failed to validate scheduler::Call: ACKNOWLEDGE needs 'agent_id', 'task_id' "
                "and 'uuid'",
            )
        task = fw.tasks.get(task_id)
        # The uuid of the update in flight is valid by construction (the agent made it).
        if task is None or not task.pending or task.pending[0]["uuid"] != uuid:
            try:
                raw = base64.b64decode(uuid, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 16:
                raise CallError(
                    400, "Failed to validate scheduler::Call: 'uuid' is not a valid UUID"
                )
        if task is None or task.agent.id != agent_id:
            log.debug("sim_ack_unknown_task", framework_id=fw.id, task_id=task_id)
            return
        if not self.pool.acknowledge(task, uuid):
            log.debug("sim_ack_unexpected_uuid", framework_id=fw.id, task_id=task_id)

    def _reconcile(self, fw: Framework, body: dict[str, Any]) -> None:
        items = body.get("tasks") or []
        pa = fw.partition_aware
        answers: list[tuple[str, str, str | None, str]] = []
        if not items:
            for task in fw.tasks.values():
                answers.append((task.task_id, task.state, task.agent.id, "Latest task state"))
            for (fid, tid), task in self.unreachable.items():
                if fid == fw.id:
                    answers.append((tid, "TASK_UNREACHABLE", task.agent.id, "Task is unreachable"))
        for item in items:
            task_id = protocol.value_of(item, "task_id")
            if task_id is None:
                raise CallError(400, "Failed to validate scheduler::Call: task without 'task_id'")
            agent_id = protocol.value_of(item, "agent_id")
            known = fw.tasks.get(task_id)
            unreachable = self.unreachable.get((fw.id, task_id))
            if known is not None:
                answers.append((task_id, known.state, known.agent.id, "Latest task state"))
            elif unreachable is not None:
                answers.append(
                    (task_id, "TASK_UNREACHABLE", unreachable.agent.id, "Task is unreachable")
                )
            elif agent_id is not None:
                if agent_id in self.agents:
                    answers.append((task_id, "TASK_GONE", agent_id, "Task is unknown to the agent"))
                elif agent_id in self.unreachable_agents:
                    answers.append((task_id, "TASK_UNREACHABLE", agent_id, "Agent is unreachable"))
                elif self.agent_recovering(agent_id):
                    continue  # the agent has not re-registered yet: Mesos stays silent
                else:
                    answers.append((task_id, "TASK_UNKNOWN", agent_id, "Task is unknown"))
            elif any(self.agent_recovering(a) for a in self.pool.agents):
                continue
            else:
                answers.append((task_id, "TASK_UNKNOWN", None, "Task is unknown"))
        now = self.timers.wall()
        if fw.subscription is None:
            return
        for task_id, state, agent_id, message in answers:
            status = protocol.task_status(
                task_id,
                protocol.state_for(state, pa),
                agent_id=agent_id,
                source="SOURCE_MASTER",
                timestamp=now,
                reason="REASON_RECONCILIATION",
                message="Reconciliation: " + message,
            )
            fw.subscription.send(protocol.update_event(status))

    def _update_framework(self, fw: Framework, body: dict[str, Any]) -> None:
        info = body.get("framework_info")
        if not isinstance(info, dict) or protocol.value_of(info, "id") != fw.id:
            raise CallError(
                400, "Failed to validate scheduler::Call: 'framework_info.id' must match"
            )
        stored = dict(info)
        fw.set_info(stored)
        self.cluster.framework_infos[fw.id] = stored
        fw.suppressed = {r for r in body.get("suppressed_roles") or [] if isinstance(r, str)}
        self.allocate_soon()

    # status updates from agents -------------------------------------------------------------

    def forward_update(self, task: SimTask, status: dict[str, Any]) -> None:
        """An agent sends an update through this master; dropped if nobody can take it."""
        if not self.leading:
            return
        fw = self.frameworks.get(task.framework_id)
        if fw is None or fw.subscription is None:
            return
        fw.subscription.send(protocol.update_event(status))

    def task_completed(self, task: SimTask) -> None:
        """The terminal update of `task` was acknowledged."""
        fw = self.frameworks.get(task.framework_id)
        if fw is None or fw.tasks.get(task.task_id) is not task:
            return
        del fw.tasks[task.task_id]
        fw.completed_tasks.append(task)
        while len(fw.completed_tasks) > self.config.max_completed_tasks:
            fw.completed_tasks.popleft()

    # offers ---------------------------------------------------------------------------------

    def allocate_soon(self) -> None:
        if self._allocation_scheduled or not self.leading:
            return
        self._allocation_scheduled = True
        self.timers.after(0, self._allocate_now)

    def _allocate_now(self) -> None:
        self._allocation_scheduled = False
        self.allocate(periodic=False)

    def available(self, agent: Agent) -> Resources:
        avail = agent.total - agent.allocated
        offered = self.offered.get(agent.id)
        if offered is not None:
            avail.subtract_in_place(offered)
        return avail

    def allocate(self, *, periodic: bool = True) -> int:
        """One allocation cycle; returns the number of offers made. ``periodic``: the
        allocation interval's (else one asked for at once: a REVIVE, a new agent)."""
        if not self.leading:
            return 0
        candidates = [
            fw
            for fw in self.frameworks.values()
            if fw.active and fw.subscription is not None and not fw.subscription.closed
        ]
        if not candidates or not self.agents:
            return 0
        now = self.timers.now()
        load = {fw.id: len(fw.tasks) + len(fw.offers) for fw in candidates}
        batches: dict[str, list[dict[str, Any]]] = {}
        for agent in self.agents.values():
            avail = self.available(agent)
            if avail.scalar("cpus") < _MIN_CPUS and avail.scalar("mem") < _MIN_MEM:
                continue
            best: tuple[Framework, str] | None = None
            for fw in candidates:
                if best is not None and load[fw.id] >= load[best[0].id]:
                    continue
                role = self._offerable_role(fw, agent, avail, now)
                if role is not None:
                    best = (fw, role)
            if best is None:
                continue
            fw, role = best
            load[fw.id] += 1
            batches.setdefault(fw.id, []).append(
                self.offer_json(self._make_offer(fw, agent, role, avail))
            )
        made = 0
        for fid, offers in batches.items():
            sub = self.frameworks[fid].subscription
            if sub is not None:
                sub.send(protocol.offers_event(offers))
                made += len(offers)
        if made or not periodic:  # an allocation cycle with nothing to offer is not news
            log.debug("sim_offers_made", offers=made, periodic=periodic)
        return made

    def _make_offer(self, fw: Framework, agent: Agent, role: str, avail: Resources) -> Offer:
        offer = Offer(
            id=f"{self.master_id}-O{next(self._offer_seq)}",
            framework=fw,
            agent=agent,
            role=role,
            resources=avail,
        )
        self.offers[offer.id] = offer
        fw.offers[offer.id] = offer
        self.offered.setdefault(agent.id, Resources()).add_in_place(avail)
        if self.config.offer_timeout is not None:
            self.timers.after(self.config.offer_timeout, self._offer_expired, offer)
        return offer

    def offer_with_extra_resources(self, fw: Framework, extra: list[dict[str, Any]]) -> int:
        """Fault: offer one agent's free resources plus resources of unknown kinds (JSON only)."""
        if fw.subscription is None:
            return 0
        if fw.offers and not any(
            self.available(a).scalar("cpus") >= _MIN_CPUS for a in self.agents.values()
        ):
            self._remove_offer(next(iter(fw.offers.values())), rescind=True)
        for agent in self.agents.values():
            avail = self.available(agent)
            if avail.scalar("cpus") >= _MIN_CPUS:
                role = fw.roles[0] if fw.roles else "*"
                offer_json = self.offer_json(self._make_offer(fw, agent, role, avail))
                offer_json["resources"].extend(
                    {**item, "allocation_info": {"role": role}} for item in extra
                )
                fw.subscription.send(protocol.offers_event([offer_json]))
                return 1
        return 0

    def _offerable_role(
        self, fw: Framework, agent: Agent, avail: Resources, now: float
    ) -> str | None:
        if agent.total.scalar("gpus") > 0 and "GPU_RESOURCES" not in fw.capabilities:
            return None
        for role in fw.roles:
            if role in fw.suppressed:
                continue
            flt = fw.filters.get((role, agent.id))
            if flt is not None:
                if flt[1] <= now:
                    del fw.filters[(role, agent.id)]
                elif flt[0].contains(avail):
                    continue
            return role
        return None

    def offer_json(self, offer: Offer) -> dict[str, Any]:
        agent = offer.agent
        return {
            "id": {"value": offer.id},
            "framework_id": {"value": offer.framework.id},
            "agent_id": {"value": agent.id},
            "hostname": agent.hostname,
            "url": {
                "scheme": "http",
                "address": {"hostname": agent.hostname, "ip": self.host, "port": agent.port},
                "path": "/" + agent.pid_id,
            },
            "resources": offer.resources.to_json(offer.role),
            "attributes": agent.attributes,
            "allocation_info": {"role": offer.role},
        }

    def _offer_expired(self, offer: Offer) -> None:
        if self.offers.get(offer.id) is offer:
            log.info("sim_offer_timeout", offer_id=offer.id, framework_id=offer.framework.id)
            self._remove_offer(offer, rescind=True)

    def _remove_offer(self, offer: Offer, rescind: bool) -> None:
        if self.offers.pop(offer.id, None) is None:
            return
        offer.framework.offers.pop(offer.id, None)
        offered = self.offered.get(offer.agent.id)
        if offered is not None:
            offered.subtract_in_place(offer.resources)
        sub = offer.framework.subscription
        if rescind and sub is not None:
            sub.send(protocol.rescind_event(offer.id))

    def rescind_offers(self, framework_id: str | None = None) -> int:
        offers = [
            o
            for o in self.offers.values()
            if framework_id is None or o.framework.id == framework_id
        ]
        for offer in offers:
            self._remove_offer(offer, rescind=True)
        return len(offers)

    # operator API ---------------------------------------------------------------------------

    def get_agents(self) -> dict[str, Any]:
        agents = []
        for agent in self.agents.values():
            offered = self.offered.get(agent.id) or Resources()
            agents.append(
                {
                    "agent_info": agent.agent_info(),
                    "active": True,
                    "version": protocol.MESOS_VERSION,
                    "pid": f"{agent.pid_id}@{self.host}:{agent.port}",
                    "registered_time": protocol.time_info(agent.registered_time),
                    "total_resources": agent.total.to_json(),
                    "allocated_resources": agent.allocated.to_json(),
                    "offered_resources": offered.to_json(),
                }
            )
        return {"agents": agents, "recovered_agents": []}

    def get_tasks(self) -> dict[str, Any]:
        tasks = [t.to_json() for fw in self.frameworks.values() for t in fw.tasks.values()]
        completed = [
            t.to_json()
            for fw in (*self.frameworks.values(), *self.completed_frameworks)
            for t in fw.completed_tasks
        ]
        unreachable = [t.to_json() for t in self.unreachable.values()]
        return {
            "pending_tasks": [],
            "tasks": tasks,
            "unreachable_tasks": unreachable,
            "completed_tasks": completed,
            "orphan_tasks": [],
        }

    def get_frameworks(self) -> dict[str, Any]:
        return {
            "frameworks": [fw.to_json() for fw in self.frameworks.values()],
            "completed_frameworks": [fw.to_json() for fw in self.completed_frameworks],
            "recovered_frameworks": [],
        }

    def get_master(self) -> dict[str, Any]:
        out: dict[str, Any] = {"master_info": self.info(), "start_time": self.start_time}
        if self.elected_time is not None:
            out["elected_time"] = self.elected_time
        return out


# Calls whose payload field Mesos's validation requires (REVIVE, SUPPRESS, TEARDOWN need none).
_PAYLOAD_REQUIRED = frozenset(
    {
        "ACCEPT",
        "DECLINE",
        "ACCEPT_INVERSE_OFFERS",
        "DECLINE_INVERSE_OFFERS",
        "KILL",
        "SHUTDOWN",
        "ACKNOWLEDGE",
        "ACKNOWLEDGE_OPERATION_STATUS",
        "RECONCILE",
        "RECONCILE_OPERATIONS",
        "MESSAGE",
        "REQUEST",
        "UPDATE_FRAMEWORK",
    }
)


def _roles(body: dict[str, Any]) -> list[str]:
    roles = body.get("roles") or []
    if isinstance(roles, str):
        return [roles]
    return [r for r in roles if isinstance(r, str)]


def _refuse_seconds(body: dict[str, Any], default: float) -> float:
    filters = body.get("filters")
    value = filters.get("refuse_seconds", default) if isinstance(filters, dict) else default
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return min(float(value), _MAX_REFUSE_SECONDS)
