"""Nodes (Mesos agents, one per hostname): durable flags in table ``nodes``, live view in memory.

The durable part is what an operator sets (``is_paused``, ``pause_reason``, ``is_active``) plus
identity and timestamps. The live part (online or not, total and scheduled resources, running
tasks, last offer) is memory only: it is rebuilt from offers, the operator API and the task
table after a restart. A node's own pause flag and the scheduler's global flag are separate
state; ``state`` combines them for display, and the matcher reads ``blocks_launches``.

Every change is committed first and applied to memory in the write's ``apply`` step. This module
owns the node table and its records; it sends nothing to Mesos.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import structlog

from scale_scheduler.state.changes import NewNode, NodeFlagsChanged, NodesOffered, NodesSighted
from scale_scheduler.state.domain import Shape
from scale_scheduler.state.interface import StateStore
from scale_scheduler.state.placement_counts import PlacementCounts
from scale_scheduler.state.tasks import Count, RowId, Timestamp, iso

log = structlog.get_logger(__name__)

RESOURCE_NAMES = ("cpus", "mem", "disk", "gpus")


class NodeState(str, enum.Enum):
    READY = "READY"
    PAUSED = "PAUSED"
    SCHEDULER_PAUSED = "SCHEDULER_PAUSED"
    OFFLINE = "OFFLINE"
    INACTIVE = "INACTIVE"


class NodeNotFoundError(LookupError):
    """No node has that id."""


@dataclass(slots=True)
class Resources:
    cpus: float = 0.0
    mem: float = 0.0
    disk: float = 0.0
    gpus: float = 0.0

    def add_shape(self, shape: Shape, sign: float = 1.0) -> None:
        self.cpus = _clean(self.cpus + sign * shape.cpus)
        self.mem = _clean(self.mem + sign * shape.mem)
        self.disk = _clean(self.disk + sign * shape.disk)
        self.gpus = _clean(self.gpus + sign * shape.gpus)


class ScheduledResources(Resources):
    """A node's scheduled resources; also keeps the repository's running sum current and counts
    its changes (so a node's unchanged offer needs no re-check against them)."""

    __slots__ = ("changes", "running_sum")

    def __init__(self, running_sum: Resources | None = None) -> None:
        super().__init__()
        self.running_sum = running_sum
        self.changes = 0

    def add_shape(self, shape: Shape, sign: float = 1.0) -> None:
        Resources.add_shape(self, shape, sign)
        self.changes += 1
        if self.running_sum is not None:
            self.running_sum.add_shape(shape, sign)


def _clean(value: float) -> float:
    """Round away float dust from many small additions and subtractions (Mesos keeps 3 places)."""
    value = round(value, 6)
    return 0.0 if abs(value) < 1e-9 else value


def _node_state(
    is_active: bool, online: bool, is_paused: bool, scheduler_paused: bool
) -> NodeState:
    if not is_active:
        return NodeState.INACTIVE
    if not online:
        return NodeState.OFFLINE
    if is_paused:
        return NodeState.PAUSED
    if scheduler_paused:
        return NodeState.SCHEDULER_PAUSED
    return NodeState.READY


@dataclass(frozen=True, slots=True)
class NodeFlags:
    """A node's operator-set flags as one write left them (what its PATCH answer shows)."""

    is_paused: bool
    pause_reason: str | None
    is_active: bool
    last_modified: float


@dataclass(frozen=True, slots=True)
class FlagChange:
    """What one operator request changes; ``None`` (or ``set_reason=False``) keeps that flag as
    it is when the write commits. Unpausing clears ``pause_reason``; pausing without a reason
    keeps the node's reason."""

    is_paused: bool | None = None
    is_active: bool | None = None
    set_reason: bool = False
    pause_reason: str | None = None

    def applied_to(self, node: Node) -> tuple[bool, str | None, bool]:
        """(is_paused, pause_reason, is_active) after this change; a backend applies the
        same rule to the row as committed."""
        paused = node.is_paused if self.is_paused is None else self.is_paused
        active = node.is_active if self.is_active is None else self.is_active
        if not paused:
            reason = None
        elif self.set_reason:
            reason = self.pause_reason
        else:
            reason = node.pause_reason
        return paused, reason, active

    def change(self, node_id: int, now: float) -> NodeFlagsChanged:
        return NodeFlagsChanged(
            node_id, self.is_paused, self.set_reason, self.pause_reason, self.is_active, now
        )


@dataclass(slots=True)
class Node:
    id: int
    hostname: str
    agent_id: str | None
    is_paused: bool = False
    pause_reason: str | None = None
    is_active: bool = True
    created: float = 0.0
    last_modified: float = 0.0
    last_offer: float | None = None
    # live only
    online: bool = False
    agent_total: Resources | None = None
    seen_total: Resources | None = None
    scheduled: ScheduledResources = field(default_factory=ScheduledResources)
    running_tasks: int = 0
    offer_key: object = None
    """The raw resources of the node's last offers: unchanged offers are not summed again."""
    offered: Resources | None = None
    """What those offers held (cpus/mem/disk/gpus)."""
    noted_changes: int = -1
    """``scheduled.changes`` when ``offered`` was last noted into ``seen_total``."""
    counted: tuple[float, float, float, float] | None = None
    """This node's share of the repository's running total (None: not counted)."""
    agent_endpoint: str | None = None
    """Where the agent serves its HTTP endpoints (``http://ip:port/slave(1)``): the usage
    poller asks it. From an offer's ``url`` or GET_AGENTS's ``pid``."""
    url_key: object = None
    """The raw ``url`` of the offer ``agent_endpoint`` was read from (read again only when a
    node's offers change and carry another one)."""

    @property
    def blocks_launches(self) -> bool:
        return self.is_paused or not self.is_active

    @property
    def total(self) -> Resources | None:
        """The agent's totals from the operator API, else what offers plus our tasks have shown."""
        return self.agent_total if self.agent_total is not None else self.seen_total

    def state(self, scheduler_paused: bool) -> NodeState:
        return _node_state(self.is_active, self.online, self.is_paused, scheduler_paused)

    def flags(self) -> NodeFlags:
        """A snapshot of the operator-set flags (later changes do not alter it)."""
        return NodeFlags(self.is_paused, self.pause_reason, self.is_active, self.last_modified)

    def note_offered(self, offered: Resources) -> None:
        """Raise the offer-based estimate of the totals to what is offered plus what we hold."""
        scheduled = self.scheduled
        cpus = offered.cpus + scheduled.cpus
        mem = offered.mem + scheduled.mem
        disk = offered.disk + scheduled.disk
        gpus = offered.gpus + scheduled.gpus
        current = self.seen_total
        if current is None:
            self.seen_total = Resources(cpus, mem, disk, gpus)
            return
        # Called per node on every offer pass and usually changes nothing: compare first.
        if cpus > current.cpus:
            current.cpus = max(current.cpus, _clean(cpus))
        if mem > current.mem:
            current.mem = max(current.mem, _clean(mem))
        if disk > current.disk:
            current.disk = max(current.disk, _clean(disk))
        if gpus > current.gpus:
            current.gpus = max(current.gpus, _clean(gpus))


_Amount = Annotated[float, msgspec.Meta(ge=0)]


class ResourceAmounts(msgspec.Struct, forbid_unknown_fields=True):
    """Resources of one node: cpus, mem and disk (MiB), gpus."""

    cpus: _Amount
    mem: _Amount
    disk: _Amount
    gpus: _Amount

    @classmethod
    def of(cls, resources: Resources) -> ResourceAmounts:
        return cls(resources.cpus, resources.mem, resources.disk, resources.gpus)


class UsedAmounts(msgspec.Struct, forbid_unknown_fields=True):
    """What containers really use, as their agents report it: CPUs, memory and disk (MiB)."""

    cpus: _Amount
    mem: _Amount
    disk: _Amount


class NodeResources(msgspec.Struct, forbid_unknown_fields=True):
    """What the agent has (null until the scheduler learns it), what our tasks hold, and what
    every container on it uses by the latest usage round (null when unknown: no round yet,
    the agent did not answer it, or usage polling is off)."""

    total: ResourceAmounts | None
    scheduled: ResourceAmounts
    used: UsedAmounts | None


class ClusterAmounts(msgspec.Struct, forbid_unknown_fields=True):
    """Resources of the cluster: cpus, mem and disk (MiB)."""

    cpus: _Amount
    mem: _Amount
    disk: _Amount

    @classmethod
    def of(cls, resources: Resources) -> ClusterAmounts:
        return cls(resources.cpus, resources.mem, resources.disk)


class ClusterResources(msgspec.Struct, forbid_unknown_fields=True):
    """The online agents' totals, what our live tasks hold, and what every container on the
    agents that answered the latest usage round really uses (zeros while nothing is known)."""

    total: ClusterAmounts
    scheduled: ClusterAmounts
    used: ClusterAmounts


class NodeView(msgspec.Struct, forbid_unknown_fields=True):
    """A node (Mesos agent) as /nodes/ shows it."""

    id: RowId
    hostname: str
    agent_id: str | None
    is_paused: bool
    pause_reason: str | None
    is_active: bool
    state: Annotated[str, msgspec.Meta(extra_json_schema={"enum": [s.value for s in NodeState]})]
    resources: NodeResources
    running_tasks: Count
    last_offer: Timestamp | None
    created: Timestamp | None
    last_modified: Timestamp | None


def node_view(
    node: Node,
    scheduler_paused: bool,
    flags: NodeFlags | None = None,
    used: UsedAmounts | None = None,
) -> NodeView:
    """The node as the API shows it; ``flags`` (a write's own result) replace its current
    flags, so a PATCH answer shows what that PATCH produced; ``used``: its usage, if known."""
    if flags is None:
        flags = node.flags()
    total = node.total
    return NodeView(
        id=node.id,
        hostname=node.hostname,
        agent_id=node.agent_id,
        is_paused=flags.is_paused,
        pause_reason=flags.pause_reason,
        is_active=flags.is_active,
        state=_node_state(flags.is_active, node.online, flags.is_paused, scheduler_paused).value,
        resources=NodeResources(
            total=ResourceAmounts.of(total) if total is not None else None,
            scheduled=ResourceAmounts.of(node.scheduled),
            used=used,
        ),
        running_tasks=node.running_tasks,
        last_offer=iso(node.last_offer),
        created=iso(node.created),
        last_modified=iso(flags.last_modified),
    )


@dataclass(frozen=True, slots=True)
class AgentTotals:
    """One agent as the operator API lists it."""

    agent_id: str
    hostname: str
    total: Resources
    active: bool = True
    endpoint: str | None = None
    """Where the agent serves its HTTP endpoints (from its ``pid``), if known."""


@dataclass(frozen=True, slots=True)
class NodeSighting:
    """A node learned from an offer or the operator API."""

    hostname: str
    agent_id: str


class NodeRepository:
    """All nodes in memory (a few thousand at most), keyed by id and by hostname."""

    def __init__(self, store: StateStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self.by_id: dict[int, Node] = {}
        self.by_hostname: dict[str, Node] = {}
        self.by_agent: dict[str, Node] = {}
        self.blocking: dict[str, Node] = {}
        """Nodes whose own flags block launches, by hostname (usually none)."""
        self._next_id = 1
        # Running sums for /status/ and the metrics, kept as nodes change (O(1) to read).
        self._online_total = Resources()
        self._counted_nodes = 0
        self._total_changes = 0
        self._scheduled_total = ScheduledResources()
        self._totals: tuple[tuple[int, int], tuple[Resources | None, Resources]] | None = None
        self.placement = PlacementCounts()
        """Live tasks of each group per agent value, for scoped placement constraints."""

    async def load(self) -> None:
        for row in await self._store.load_nodes():
            node = Node(
                id=row.id,
                hostname=row.hostname,
                agent_id=row.agent_id,
                is_paused=row.is_paused,
                pause_reason=row.pause_reason,
                is_active=row.is_active,
                created=row.created,
                last_modified=row.last_modified,
                last_offer=row.last_offer,
                scheduled=ScheduledResources(self._scheduled_total),
            )
            self._index(node)
            self._next_id = max(self._next_id, node.id + 1)

    def _index(self, node: Node) -> None:
        self.by_id[node.id] = node
        self.by_hostname[node.hostname] = node
        if node.agent_id:
            self.by_agent[node.agent_id] = node
        self._sync_blocking(node)

    def _sync_blocking(self, node: Node) -> None:
        if node.blocks_launches:
            self.blocking[node.hostname] = node
        else:
            self.blocking.pop(node.hostname, None)

    # -- learning nodes -------------------------------------------------------------------------

    def plan_sightings(
        self, sightings: Iterable[NodeSighting], now: float
    ) -> tuple[list[NodesSighted], Callable[[], None]]:
        """The change creating unknown nodes (and recording new agent ids) plus its ``apply``.

        Ids are allocated here, synchronously, so concurrent plans never collide.
        """
        new: list[Node] = []
        moved: list[tuple[Node, str]] = []
        seen: set[str] = set()
        for sighting in sightings:
            if sighting.hostname in seen:
                continue
            seen.add(sighting.hostname)
            node = self.by_hostname.get(sighting.hostname)
            if node is None:
                node = Node(
                    id=self._next_id,
                    hostname=sighting.hostname,
                    agent_id=sighting.agent_id,
                    created=now,
                    last_modified=now,
                    scheduled=ScheduledResources(self._scheduled_total),
                )
                self._next_id += 1
                new.append(node)
            elif node.agent_id != sighting.agent_id:
                moved.append((node, sighting.agent_id))
        changes: list[NodesSighted] = []
        if new or moved:
            changes.append(
                NodesSighted(
                    [NewNode(n.id, n.hostname, n.agent_id, now) for n in new],
                    [(n.id, agent) for n, agent in moved],
                )
            )

        def apply() -> None:
            for node in new:
                if node.hostname not in self.by_hostname:
                    self._index(node)
                    log.info(
                        "node_discovered",
                        node_id=node.id,
                        hostname=node.hostname,
                        agent_id=node.agent_id,
                    )
            for node, agent in moved:
                if node.agent_id:
                    self.by_agent.pop(node.agent_id, None)
                node.agent_id = agent
                self.by_agent[agent] = node

        return changes, apply

    def last_offers(self, nodes: Sequence[Node]) -> NodesOffered | None:
        pairs = [(n.id, n.last_offer) for n in nodes if n.last_offer is not None]
        return NodesOffered(pairs) if pairs else None

    async def learn(self, sightings: Iterable[NodeSighting]) -> None:
        changes, apply = self.plan_sightings(sightings, self._clock())
        if changes:
            await self._store.commit(changes, apply)

    async def apply_agents(self, agents: Sequence[AgentTotals]) -> None:
        """A fresh GET_AGENTS answer: learn new nodes, set totals, mark absent nodes offline."""
        await self.learn(NodeSighting(a.hostname, a.agent_id) for a in agents)
        present: set[str] = set()
        for agent in agents:
            node = self.by_hostname.get(agent.hostname)
            if node is None or not agent.active:
                continue
            present.add(agent.hostname)
            node.agent_total = agent.total
            if agent.endpoint is not None:
                node.agent_endpoint = agent.endpoint
            node.online = True
            self._recount(node)
        for node in self.by_id.values():
            if node.hostname not in present and node.online:
                node.online = False
                self._recount(node)

    def agent_removed(self, agent_id: str) -> None:
        node = self.by_agent.get(agent_id)
        if node is not None and node.online:
            node.online = False
            self._recount(node)
            self.placement.forget(node.hostname)
            log.info("node_offline", node_id=node.id, hostname=node.hostname, agent_id=agent_id)

    # -- operator changes ----------------------------------------------------------------------

    def get(self, node_id: int) -> Node:
        node = self.by_id.get(node_id)
        if node is None:
            raise NodeNotFoundError(f"No node with id {node_id}.")
        return node

    async def update_flags(
        self,
        node_id: int,
        *,
        is_paused: bool | None = None,
        pause_reason: str | None = None,
        set_reason: bool = False,
        is_active: bool | None = None,
    ) -> NodeFlags:
        """Change a node's own flags (see ``FlagChange``); returns the flags this write produced.

        The change is computed where it commits: in SQL from the row as committed, and in
        ``apply`` from memory, which holds that same committed state because the store applies
        writes in commit order. So concurrent changes of different flags all take effect.
        """
        node = self.get(node_id)
        change = FlagChange(is_paused, is_active, set_reason, pause_reason)
        now = self._clock()

        def apply() -> NodeFlags:
            was_blocking = node.blocks_launches
            before = (node.is_paused, node.pause_reason, node.is_active)
            after = change.applied_to(node)
            node.is_paused, node.pause_reason, node.is_active = after
            node.last_modified = now
            self._sync_blocking(node)
            if before != after:
                log.info(
                    "node_flags_changed",
                    node_id=node.id,
                    hostname=node.hostname,
                    is_paused=after[0],
                    pause_reason=after[1],
                    is_active=after[2],
                    was_blocking=was_blocking,
                )
            return node.flags()

        result = await self._store.commit([change.change(node.id, now)], apply)
        assert result is not None
        return result

    # -- what our tasks hold -------------------------------------------------------------------

    def hold(self, hostname: str | None, shape: Shape) -> None:
        """A task of ``shape`` was launched on the node (or found launched there at start-up)."""
        node = self.by_hostname.get(hostname or "")
        if node is not None:
            node.scheduled.add_shape(shape)
            node.running_tasks += 1
        if hostname and shape.group is not None:
            self.placement.launched(hostname, shape.group)

    def hold_all(self, hostname: str, shapes: Sequence[Shape]) -> None:
        """Tasks of ``shapes`` were launched on the node (one launch of an offer pass)."""
        node = self.by_hostname.get(hostname)
        if node is not None:
            add = node.scheduled.add_shape
            for shape in shapes:
                add(shape)
            node.running_tasks += len(shapes)
        for shape in shapes:
            if shape.group is not None:
                self.placement.launched(hostname, shape.group)

    def release(self, hostname: str | None, shape: Shape) -> None:
        """A task of ``shape`` on the node ended, or went back to the queue."""
        node = self.by_hostname.get(hostname or "")
        if node is not None:
            node.scheduled.add_shape(shape, -1.0)
            node.running_tasks = max(0, node.running_tasks - 1)
        if hostname and shape.group is not None:
            self.placement.launched(hostname, shape.group, -1)

    # -- totals ---------------------------------------------------------------------------------

    def offered(self, node: Node, now: float, key: object, offered: Resources) -> None:
        """The node's offers of this pass (their raw resources ``key``) were handled at ``now``."""
        node.last_offer = now
        node.online = True
        node.offer_key = key
        node.offered = offered
        node.noted_changes = node.scheduled.changes
        node.note_offered(offered)
        self._recount(node)

    def _recount(self, node: Node) -> None:
        """Move the node's share of the running total to what it is now."""
        total = node.total if node.online else None
        now = None if total is None else (total.cpus, total.mem, total.disk, total.gpus)
        before = node.counted
        if now == before:
            return
        running = self._online_total
        if before is not None:
            running.cpus -= before[0]
            running.mem -= before[1]
            running.disk -= before[2]
            running.gpus -= before[3]
            self._counted_nodes -= 1
        if now is not None:
            running.cpus += now[0]
            running.mem += now[1]
            running.disk += now[2]
            running.gpus += now[3]
            self._counted_nodes += 1
        node.counted = now
        self._total_changes += 1

    def totals(self) -> tuple[Resources | None, Resources]:
        """Sum of online nodes' totals (None when none is known) and of everything scheduled.

        Read from running sums, and kept until they change (``/status/`` is polled by
        dashboards while offers stream in). The caller must not modify the result.
        """
        version = (self._total_changes, self._scheduled_total.changes)
        cached = self._totals
        if cached is not None and cached[0] == version:
            return cached[1]
        running, scheduled = self._online_total, self._scheduled_total
        total = None
        if self._counted_nodes:
            total = Resources(
                _clean(running.cpus),
                _clean(running.mem),
                _clean(running.disk),
                _clean(running.gpus),
            )
        result = (
            total,
            Resources(
                _clean(scheduled.cpus),
                _clean(scheduled.mem),
                _clean(scheduled.disk),
                _clean(scheduled.gpus),
            ),
        )
        self._totals = (version, result)
        return result


def resources_from_mesos(resources: Iterable[Any]) -> Resources:
    """Sum the scalar cpus/mem/disk/gpus of Mesos ``Resource`` structs or JSON dicts."""
    # Runs for every offer of every pass: sum plainly, round the float dust once at the end.
    sums = dict.fromkeys(RESOURCE_NAMES, 0.0)
    for res in resources:
        if isinstance(res, dict):
            name = res.get("name")
            value = (res.get("scalar") or {}).get("value")
        else:
            name = res.name
            value = res.scalar.value if res.scalar is not None else None
        if value is None or name not in sums:
            continue
        sums[name] += float(value)
    return Resources(*(_clean(sums[name]) for name in RESOURCE_NAMES))
