"""The matcher: offers + queue view + pause flags -> launch and decline decisions. Pure.

Rules:
- offers are grouped by agent; within an agent, by allocation role (one task's resources all come
  from one role); nodes that are paused or inactive are declined, and so is everything while the
  scheduler is paused;
- tasks are placed by priority (lower first), then submission order, first fit over the agents in
  offer order; resources are subtracted as they are consumed; launched resources copy the offered
  resource's role, reservations and allocation info and change only the quantity;
- a group of tasks (same priority and shape) that fits no agent is skipped whole with one
  ``WaitReason``, and the tasks behind it keep going (no head-of-line blocking);
- placement constraints (Marathon's operators, ``state/placement_constraints.py``): those that
  read only the agent filter like resources do; the scoped ones (``UNIQUE``, ``GROUP_BY``,
  ``MAX_PER``, ``CLUSTER`` without a value) read the group's live tasks per value from the
  ``PlacementView`` (kept as tasks launch and end) plus this pass's own placements, so a batch of
  one group placed in one pass respects them too;
- each shape keeps a cursor over the agents (shared by shapes that differ only in their group
  and scoped constraints): resources only shrink during a pass, so an agent that could not take
  a shape once never can later in the same pass. A pass therefore costs
  about (tasks placed + groups x agents), however long the queue;
- every offer ends in exactly one decision: part of one agent's launch, or a decline with a
  filter (``refuse_seconds`` for paused nodes, ``idle_refuse_seconds`` when nothing queued fits).

No I/O, no clock, no logging: the offer pipeline acts on the frozen result.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import msgspec

from scale_scheduler.daemon.mesos.mesos_types import Offer, Range, Ranges, Resource, Scalar
from scale_scheduler.state.domain import Shape, describe_constraint
from scale_scheduler.state.placement_constraints import (
    HOSTNAME,
    AgentValues,
    Constraint,
    Operator,
    admits,
    spread_of,
)

EPSILON = 1e-6
SCALARS = ("cpus", "mem", "disk", "gpus")


class WaitReason(str, enum.Enum):
    """Why a group of queued tasks was not placed, most general first."""

    SCHEDULER_PAUSED = "SCHEDULER_PAUSED"
    NO_OFFERS = "NO_OFFERS"
    NODES_PAUSED = "NODES_PAUSED"
    CONSTRAINTS = "CONSTRAINTS"
    CPUS = "CPUS"
    MEM = "MEM"
    DISK = "DISK"
    GPUS = "GPUS"
    PORTS = "PORTS"
    RESOURCES = "RESOURCES"
    """Every resource is available somewhere, but no offer has them all together."""
    FLOW_CONTROL = "FLOW_CONTROL"
    """The pass's launch budget was spent (tasks launched but not yet confirmed)."""


class DeclineReason(str, enum.Enum):
    SCHEDULER_PAUSED = "SCHEDULER_PAUSED"
    NODE_PAUSED = "NODE_PAUSED"
    NODE_INACTIVE = "NODE_INACTIVE"
    NOTHING_FITS = "NOTHING_FITS"
    QUEUE_EMPTY = "QUEUE_EMPTY"
    FLOW_CONTROL = "FLOW_CONTROL"


class HostBlock(str, enum.Enum):
    PAUSED = "PAUSED"
    INACTIVE = "INACTIVE"


@dataclass(frozen=True, slots=True)
class MatchSettings:
    refuse_seconds: float
    idle_refuse_seconds: float
    flow_refuse_seconds: float = 1.0
    """Filter on offers declined because the launch budget was spent: short, as the budget
    comes back as soon as launches are confirmed."""


class TaskPlacement(NamedTuple):
    """One task placed: made once per task placed, so a tuple (a frozen dataclass costs 3x)."""

    task_id: int
    resources: tuple[Resource, ...]
    ports: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentLaunch:
    """One ACCEPT: every offer of one agent and every task placed on it."""

    agent_id: str
    hostname: str
    offer_ids: tuple[str, ...]
    placements: tuple[TaskPlacement, ...]


@dataclass(frozen=True, slots=True)
class Decline:
    offer_ids: tuple[str, ...]
    refuse_seconds: float
    reason: DeclineReason


@dataclass(frozen=True, slots=True)
class GroupWaiting:
    priority: int
    shape: Shape
    reason: WaitReason
    message: str


@dataclass(frozen=True, slots=True)
class MatchResult:
    launches: tuple[AgentLaunch, ...]
    declines: tuple[Decline, ...]
    waiting: tuple[GroupWaiting, ...]
    groups_examined: int = 0

    @property
    def placed(self) -> int:
        return sum(len(launch.placements) for launch in self.launches)


class GroupView(Protocol):
    @property
    def priority(self) -> int: ...

    @property
    def shape(self) -> Shape: ...


G = TypeVar("G", bound=GroupView)


class QueueView(Protocol[G]):
    """What the matcher reads of the queue (``QueueIndex`` implements it for its groups)."""

    def levels(self) -> Iterator[Sequence[G]]: ...

    def eligible(self, group: G) -> Iterator[int]: ...


class PlacementView(Protocol):
    """What scoped constraints read beyond the offers (``PlacementCounts`` implements it)."""

    def group_counts(self, group: str) -> Mapping[str, Mapping[str, int]]:
        """The group's live tasks per field, per value."""
        ...

    def known_values(self, field: str) -> int:
        """How many distinct values of ``field`` the cluster's agents have."""
        ...


# --- resource bins -----------------------------------------------------------------------------


class _Entry:
    """One offered resource and what is left of it."""

    __slots__ = ("cache", "left", "resource")

    def __init__(self, resource: Resource, left: float) -> None:
        self.resource = resource
        self.left = left
        self.cache: dict[float, Resource] = {}

    def take(self, amount: float) -> Resource:
        """A launch resource of ``amount`` shaped like this entry (shared when amounts repeat)."""
        self.left -= amount
        resource = self.cache.get(amount)
        if resource is None:
            resource = self.take_new(amount)
        return resource

    def take_new(self, amount: float) -> Resource:
        """The launch resource of ``amount``, made and cached (``left`` is not changed)."""
        resource = msgspec.structs.replace(self.resource, scalar=Scalar(amount))
        self.cache[amount] = resource
        return resource


class _PortEntry:
    __slots__ = ("free", "resource")

    def __init__(self, resource: Resource, free: list[list[int]]) -> None:
        self.resource = resource
        self.free = free


class _Bin:
    """Resources of one agent allocated to one role, shrinking as tasks are placed."""

    __slots__ = (
        "agent",
        "cpus",
        "disk",
        "entries",
        "gpus",
        "hostname",
        "mem",
        "port_entries",
        "ports",
        "values",
    )

    def __init__(self, agent: int, values: AgentValues) -> None:
        self.agent = agent
        self.hostname = values.hostname
        self.values = values
        self.entries: dict[str, list[_Entry]] = {}
        self.port_entries: list[_PortEntry] = []
        self.cpus = self.mem = self.disk = self.gpus = 0.0
        self.ports = 0

    def add(self, resource: Resource) -> None:
        if resource.revocable is not None or resource.disk is not None:
            return  # revocable capacity and volumes are not for ordinary tasks
        name = resource.name
        if name in SCALARS and resource.scalar is not None and resource.scalar.value > 0:
            value = resource.scalar.value
            self.entries.setdefault(name, []).append(_Entry(resource, value))
            setattr(self, name, getattr(self, name) + value)
        elif name == "ports" and resource.ranges is not None:
            free = [[r.begin, r.end] for r in resource.ranges.range if r.end >= r.begin]
            if free:
                self.port_entries.append(_PortEntry(resource, free))
                self.ports += sum(end - begin + 1 for begin, end in free)

    def fits(self, shape: Shape) -> bool:
        return (
            shape.cpus <= self.cpus + EPSILON
            and shape.mem <= self.mem + EPSILON
            and shape.disk <= self.disk + EPSILON
            and shape.gpus <= self.gpus + EPSILON
            and shape.ports <= self.ports
            and (not shape.static or self.satisfies(shape))
        )

    def satisfies(self, shape: Shape) -> bool:
        """The constraints that read only the agent (the scoped ones are the pass's to check)."""
        values = self.values
        return all(admits(constraint, values) for constraint in shape.static)

    def consume(
        self, shape: Shape, needs: tuple[tuple[str, float], ...]
    ) -> tuple[tuple[Resource, ...], tuple[int, ...]]:
        """Take ``needs`` (the shape's non-zero scalars) and its ports; returns the launch
        resources and the port numbers."""
        out: list[Resource] = []
        entries = self.entries
        for name, need in needs:
            free = getattr(self, name) - need
            setattr(self, name, free if free > 0.0 else 0.0)
            for entry in entries.get(name, ()):
                left = entry.left
                if left <= EPSILON:
                    continue
                if need <= left + EPSILON:  # the usual case: one entry covers the need
                    entry.left = left - need
                    resource = entry.cache.get(need)
                    out.append(resource if resource is not None else entry.take_new(need))
                    break
                out.append(entry.take(left))
                need -= left
                if need <= EPSILON:
                    break
        if not shape.ports:
            return tuple(out), ()
        ports = self._take_ports(shape.ports, out)
        return tuple(out), tuple(ports)

    def repeatable(
        self, shape: Shape, needs: tuple[tuple[str, float], ...], cap: int = -1
    ) -> tuple[int, tuple[Resource, ...]]:
        """How many tasks of ``shape`` in a row ``consume`` would place here with the very same
        resources (each need taken whole from the first entry with something left), at most
        ``cap`` (-1: no cap), and those resources; ``(0, ())`` when the next task needs ports or
        a need split across entries.

        Placing a run at once (``take_repeated``) instead of one ``consume`` per task is what
        makes matching a queue of equal tasks cheap (B3 in bench/RESULTS.md). The counting
        repeats ``consume``'s own arithmetic, so both ways leave the bin the same.
        """
        if shape.ports or not needs:
            return 0, ()
        count = cap
        out: list[Resource] = []
        for name, need in needs:
            entry = self._first_entry(name)
            if entry is None:
                return 0, ()
            left = entry.left
            total = getattr(self, name)
            n = 0
            while (count < 0 or n < count) and need <= left + EPSILON and need <= total + EPSILON:
                left -= need
                total = total - need if total - need > 0.0 else 0.0
                n += 1
                if left <= EPSILON:
                    break
            if n == 0:
                return 0, ()
            count = n
            resource = entry.cache.get(need)
            out.append(resource if resource is not None else entry.take_new(need))
        return count, tuple(out)

    def take_repeated(self, needs: tuple[tuple[str, float], ...], times: int) -> None:
        """Subtract ``times`` tasks' needs as ``times`` calls of ``consume`` would."""
        for name, need in needs:
            entry = self._first_entry(name)
            assert entry is not None
            left = entry.left
            total = getattr(self, name)
            for _ in range(times):
                left -= need
                total = total - need if total - need > 0.0 else 0.0
            entry.left = left
            setattr(self, name, total)

    def _first_entry(self, name: str) -> _Entry | None:
        for entry in self.entries.get(name, ()):
            if entry.left > EPSILON:
                return entry
        return None

    def _take_ports(self, count: int, out: list[Resource]) -> list[int]:
        taken: list[int] = []
        for entry in self.port_entries:
            ranges: list[Range] = []
            while entry.free and len(taken) < count:
                begin, end = entry.free[0]
                n = min(end - begin + 1, count - len(taken))
                taken.extend(range(begin, begin + n))
                ranges.append(Range(begin, begin + n - 1))
                if begin + n > end:
                    entry.free.pop(0)
                else:
                    entry.free[0][0] = begin + n
            if ranges:
                out.append(
                    msgspec.structs.replace(
                        entry.resource, type="RANGES", scalar=None, ranges=Ranges(ranges)
                    )
                )
            if len(taken) == count:
                break
        self.ports -= len(taken)
        return taken


@dataclass(slots=True)
class _Agent:
    agent_id: str
    hostname: str
    offer_ids: list[str]
    bins: list[_Bin]
    blocked: HostBlock | None


def agent_values(offer: Offer) -> AgentValues:
    """What constraints read of the offering agent: hostname, attributes, scalar attributes."""
    attributes: dict[str, str] = {}
    scalars: dict[str, float] = {}
    for attr in offer.attributes:
        attributes[attr.name] = attr.as_text()
        if attr.scalar is not None:
            scalars[attr.name] = attr.scalar.value
    return AgentValues(offer.hostname, attributes, scalars)


def group_offers(
    offers: Iterable[Offer], blocked_hosts: Mapping[str, HostBlock], *, bins: bool = True
) -> list[_Agent]:
    """Offers by agent in arrival order, each agent's resources split into per-role bins
    (``bins=False``: no bins, when nothing is queued that could use them)."""
    agents: dict[str, _Agent] = {}
    bins_by_role: dict[tuple[str, str], _Bin] = {}
    for offer in offers:
        agent_id = offer.agent_id.value
        agent = agents.get(agent_id)
        if agent is None:
            agent = agents[agent_id] = _Agent(
                agent_id, offer.hostname, [], [], blocked_hosts.get(offer.hostname)
            )
        agent.offer_ids.append(offer.id.value)
        if not bins:
            continue
        role = offer.allocation_info.role if offer.allocation_info is not None else None
        key = (agent_id, role or "")
        bin_ = bins_by_role.get(key)
        if bin_ is None:
            bin_ = bins_by_role[key] = _Bin(len(agents) - 1, agent_values(offer))
            agent.bins.append(bin_)
        for resource in offer.resources:
            bin_.add(resource)
    return list(agents.values())


# --- matching ----------------------------------------------------------------------------------


def match(
    offers: Sequence[Offer],
    queue: QueueView[Any],
    *,
    scheduler_paused: bool,
    blocked_hosts: Mapping[str, HostBlock],
    settings: MatchSettings,
    launch_budget: int | None = None,
    placement: PlacementView | None = None,
    avoid: Mapping[int, Collection[str]] | None = None,
) -> MatchResult:
    """``launch_budget``: at most this many tasks are placed (None: no limit); groups left
    unplaced because it ran out wait with ``WaitReason.FLOW_CONTROL``. ``placement``: the
    groups' live tasks per value, for scoped constraints (None: no group has any). ``avoid``:
    per task, the hosts where it failed; it goes to another agent that fits when there is one
    (a soft preference: only tasks named there pay for the search; a shape with scoped
    constraints is placed by those alone)."""
    levels = list(queue.levels())
    if scheduler_paused:
        paused = WaitReason.SCHEDULER_PAUSED
        waiting = tuple(
            GroupWaiting(g.priority, g.shape, paused, "the scheduler is paused")
            for level in levels
            for g in level
        )
        return MatchResult(
            (),
            _decline_all(offers, settings.refuse_seconds, DeclineReason.SCHEDULER_PAUSED),
            waiting,
        )
    if not levels and not blocked_hosts:
        return MatchResult(
            (), _decline_all(offers, settings.idle_refuse_seconds, DeclineReason.QUEUE_EMPTY), ()
        )

    agents = group_offers(offers, blocked_hosts, bins=bool(levels))
    usable = [agent for agent in agents if agent.blocked is None]
    bins = [bin_ for agent in usable for bin_ in agent.bins]
    placements: dict[int, list[TaskPlacement]] = {}
    waiting_list: list[GroupWaiting] = []
    examined = 0
    had_work = False
    state: _Pass | None = None

    if not bins:
        if any(agent.blocked is not None for agent in agents):
            reason, message = WaitReason.NODES_PAUSED, "every offering node is paused or inactive"
        else:
            reason, message = WaitReason.NO_OFFERS, "no offers"
        for level in levels:
            for group in level:
                waiting_list.append(GroupWaiting(group.priority, group.shape, reason, message))
        had_work = bool(waiting_list)
    else:
        state = _Pass(bins, launch_budget, placement, avoid or None)
        for level in levels:
            examined += len(level)
            had_work |= state.place_level(level, queue, placements, waiting_list)

    launches = []
    declines: dict[DeclineReason, list[str]] = {}
    for index, agent in enumerate(agents):
        placed = placements.get(index)
        if placed:
            launches.append(
                AgentLaunch(agent.agent_id, agent.hostname, tuple(agent.offer_ids), tuple(placed))
            )
            continue
        if agent.blocked is HostBlock.PAUSED:
            why = DeclineReason.NODE_PAUSED
        elif agent.blocked is HostBlock.INACTIVE:
            why = DeclineReason.NODE_INACTIVE
        elif state is not None and state.budget_spent:
            why = DeclineReason.FLOW_CONTROL
        elif had_work:
            why = DeclineReason.NOTHING_FITS
        else:
            why = DeclineReason.QUEUE_EMPTY
        declines.setdefault(why, []).extend(agent.offer_ids)
    decisions = tuple(
        Decline(
            tuple(ids),
            _refuse_for(why, settings),
            why,
        )
        for why, ids in declines.items()
    )
    return MatchResult(tuple(launches), decisions, tuple(waiting_list), examined)


def _refuse_for(why: DeclineReason, settings: MatchSettings) -> float:
    if why in (DeclineReason.NODE_PAUSED, DeclineReason.NODE_INACTIVE):
        return settings.refuse_seconds
    if why is DeclineReason.FLOW_CONTROL:
        return settings.flow_refuse_seconds
    return settings.idle_refuse_seconds


def _decline_all(
    offers: Sequence[Offer], refuse_seconds: float, reason: DeclineReason
) -> tuple[Decline, ...]:
    """One decline of every offer (no resource is read)."""
    if not offers:
        return ()
    return (Decline(tuple([o.id.value for o in offers]), refuse_seconds, reason),)


class _Pass:
    """Placement state of one pass: bins, per-shape cursors, and upper bounds of free resources."""

    def __init__(
        self,
        bins: list[_Bin],
        budget: int | None = None,
        placement: PlacementView | None = None,
        avoid: Mapping[int, Collection[str]] | None = None,
    ) -> None:
        self.bins = bins
        self.placement = placement
        self.avoid = avoid
        """Per task, hosts it failed on (None: no task has any)."""
        self.local: dict[str, dict[str, dict[str, int]]] = {}
        """Per group that placed tasks in this pass: ``placement``'s counts copied at its first
        placement, plus the pass's placements (the live counts are never written here)."""
        self.known: dict[str, int] = {}
        self.shortages: dict[tuple[float, float, float, int, int], tuple[WaitReason, str]] = {}
        self.budget = budget if budget is not None else -1
        """Placements left (-1: no limit)."""
        self.budget_spent = False
        """Some group stayed unplaced because the budget ran out."""
        self.cursors: dict[Shape, int] = {}
        self.verdicts: dict[Shape, tuple[WaitReason, str]] = {}
        self.needs: dict[Shape, tuple[tuple[str, float], ...]] = {}
        # Resources only shrink during a pass, so the maxima at its start stay upper bounds.
        self.max_cpus = max(b.cpus for b in bins)
        self.max_mem = max(b.mem for b in bins)
        self.max_disk = max(b.disk for b in bins)
        self.max_gpus = max(b.gpus for b in bins)
        self.max_ports = max(b.ports for b in bins)

    def quick_reject(self, shape: Shape) -> bool:
        return (
            shape.cpus > self.max_cpus + EPSILON
            or shape.mem > self.max_mem + EPSILON
            or shape.disk > self.max_disk + EPSILON
            or shape.gpus > self.max_gpus + EPSILON
            or shape.ports > self.max_ports
        )

    def elsewhere(self, shape: Shape, cursor: int, hosts: Collection[str]) -> _Bin | None:
        """An agent past the shape's cursor that fits and is none of ``hosts`` (the cursor stays:
        the agents it passes over still fit the shape's other tasks)."""
        bins = self.bins
        for position in range(cursor, len(bins)):
            bin_ = bins[position]
            if bin_.hostname not in hosts and bin_.fits(shape):
                return bin_
        return None

    def find_bin(self, shape: Shape) -> _Bin | None:
        if shape.scoped:
            return self._find_scoped(shape)
        bins = self.bins
        fit = shape.fit
        cursor = self.cursors.get(fit, 0)
        count = len(bins)
        while cursor < count and not bins[cursor].fits(fit):
            cursor += 1
        self.cursors[fit] = cursor
        return bins[cursor] if cursor < count else None

    # -- scoped constraints ------------------------------------------------------------------

    def _find_scoped(self, shape: Shape) -> _Bin | None:
        """The first agent that fits the shape and admits one more task of its group. Two cursors
        move only past agents that can never take the shape in this pass: the one of the shape
        without its scoped constraints (shared with every shape that differs only in those:
        resources only shrink), and the shape's own (counts only grow during a pass, so only
        GROUP_BY may admit an agent it refused before)."""
        bins = self.bins
        count = len(bins)
        fit = shape.fit
        shared = self.cursors.get(fit, 0)
        while shared < count and not bins[shared].fits(fit):
            shared += 1
        self.cursors[fit] = shared
        cursor = max(self.cursors.get(shape, 0), shared)
        counts = self.counts_of(shape)
        checks = []  # what each constraint reads, the same for every agent of this call
        for constraint in shape.scoped:
            values = counts.get(constraint.field, _NONE)
            spread = spread_of(values) if constraint.operator is Operator.GROUP_BY else None
            checks.append((constraint, values, self.known_values(constraint.field), spread))
        spreads = shape.spreads
        position = cursor
        found = None
        while position < count:
            bin_ = bins[position]
            if bin_.fits(fit):
                agent = bin_.values
                for constraint, values, known, spread in checks:
                    if not admits(constraint, agent, values, known, spread):
                        break
                else:
                    found = bin_
                    break
                if spreads:
                    position += 1
                    continue
            if position == cursor:
                cursor += 1
            position += 1
        self.cursors[shape] = cursor
        return found

    def counts_of(self, shape: Shape) -> Mapping[str, Mapping[str, int]]:
        """The shape's group's live tasks per field and value, this pass's placements included."""
        group = shape.group
        assert group is not None  # scoped constraints need a group (parse_constraints)
        local = self.local.get(group)
        if local is not None:
            return local
        return self.placement.group_counts(group) if self.placement is not None else _NO_GROUP

    def known_values(self, name: str) -> int:
        """Distinct values of the field in the cluster, and at least among this pass's offers."""
        known = self.known.get(name)
        if known is None:
            offered = {b.values.text(name) for b in self.bins} - {None}
            cluster = self.placement.known_values(name) if self.placement is not None else 0
            known = self.known[name] = max(cluster, len(offered))
        return known

    def count_placed(self, group: str, values: AgentValues, times: int = 1) -> None:
        per_field = self.local.get(group)
        if per_field is None:
            # Copied once per group and pass: the group's live values, not every task's.
            base = self.placement.group_counts(group) if self.placement is not None else _NO_GROUP
            per_field = self.local[group] = {name: dict(counts) for name, counts in base.items()}
        for name, value in ((HOSTNAME, values.hostname), *values.attributes.items()):
            per_value = per_field.get(name)
            if per_value is None:
                per_value = per_field[name] = {}
            per_value[value] = per_value.get(value, 0) + times

    def place_level(
        self,
        level: Sequence[GroupView],
        queue: QueueView[Any],
        placements: dict[int, list[TaskPlacement]],
        waiting: list[GroupWaiting],
    ) -> bool:
        """Place one priority's groups, merged by task id; True if any group had tasks."""
        heap: list[tuple[int, int, Iterator[int]]] = []
        had_work = False
        for position, group in enumerate(level):
            ids = queue.eligible(group)
            first = next(ids, None)
            if first is None:
                continue
            had_work = True
            if self.budget == 0:
                self.budget_spent = True
                waiting.append(_flow_waiting(group))
                continue
            if self.quick_reject(group.shape):
                waiting.append(self.explain(group))
                continue
            heap.append((first, position, ids))
        if len(heap) == 1:
            first, position, ids = heap[0]
            self._place_group(level[position], first, ids, placements, waiting)
            return had_work
        heapq.heapify(heap)
        budget = self.budget
        find_bin, needs_of, heapreplace = self.find_bin, self._needs, heapq.heapreplace
        while heap:
            task_id, position, ids = heap[0]
            group = level[position]
            if budget == 0:
                self.budget_spent = True
                waiting.extend(_flow_waiting(level[item[1]]) for item in heap)
                break
            shape = group.shape
            bin_ = find_bin(shape)
            if bin_ is None:
                heapq.heappop(heap)
                waiting.append(self.explain(group))
                continue
            avoid = self.avoid
            avoided = avoid.get(task_id) if avoid is not None and not shape.scoped else None
            if avoided is not None and bin_.hostname in avoided:
                bin_ = self.elsewhere(shape, self.cursors.get(shape.fit, 0), avoided) or bin_
            needs = needs_of(shape)
            placed = placements.setdefault(bin_.agent, [])
            # The group's next ids that come before every other group's: the same run of
            # placements on this agent that one task at a time would make (_place_group).
            size = len(heap)
            if size > 2:
                limit = heap[1][0] if heap[1][0] < heap[2][0] else heap[2][0]
            else:
                limit = heap[1][0] if size == 2 else _NO_LIMIT
            cap = limit - task_id
            if 0 < budget < cap:
                cap = budget
            if cap > 1 and not shape.scoped and avoided is None:
                times, same = bin_.repeatable(shape, needs, cap)
            else:
                times = 0
            if times > 1:
                taken = 0
                following: int | None = task_id
                while following is not None and taken < times and following < limit:
                    if taken and avoid is not None and following in avoid:
                        break  # placed on its own, where it did not fail
                    placed.append(TaskPlacement(following, same))
                    taken += 1
                    following = next(ids, None)
                bin_.take_repeated(needs, taken)
            else:
                resources, ports = bin_.consume(shape, needs)
                placed.append(TaskPlacement(task_id, resources, ports))
                taken = 1
                following = next(ids, None)
            if shape.group is not None:
                self.count_placed(shape.group, bin_.values, taken)
            if budget > 0:
                budget -= taken
            if following is None:
                heapq.heappop(heap)
            else:
                heapreplace(heap, (following, position, ids))
        self.budget = budget
        return had_work

    def _needs(self, shape: Shape) -> tuple[tuple[str, float], ...]:
        needs = self.needs.get(shape)
        if needs is None:
            needs = self.needs[shape] = tuple(
                (name, float(getattr(shape, name))) for name in SCALARS if getattr(shape, name) > 0
            )
        return needs

    def _place_group(
        self,
        group: GroupView,
        first: int,
        ids: Iterator[int],
        placements: dict[int, list[TaskPlacement]],
        waiting: list[GroupWaiting],
    ) -> None:
        """The only group with tasks at its priority: place them in id order, no merge. The same
        rules as the merge loop, with the shape's cursor and the agent's list kept in locals
        (this loop runs once per task placed: B3 in bench/RESULTS.md)."""
        shape = group.shape
        if shape.scoped:
            self._place_scoped(group, first, ids, placements, waiting)
            return
        needs = self._needs(shape)
        bins = self.bins
        count = len(bins)
        fit = shape.fit
        cursor = self.cursors.get(fit, 0)
        agent = -1
        placed: list[TaskPlacement] = []
        task_id: int | None = first
        budget = self.budget
        avoid = self.avoid
        while task_id is not None:
            if budget == 0:
                self.budget_spent = True
                waiting.append(_flow_waiting(group))
                break
            while cursor < count and not bins[cursor].fits(shape):
                cursor += 1
            if cursor == count:
                waiting.append(self.explain(group))
                break
            bin_ = bins[cursor]
            if avoid is not None and task_id in avoid:
                other = self.elsewhere(shape, cursor, avoid[task_id])
                if other is not None and other is not bin_:
                    resources, ports = other.consume(shape, needs)
                    placements.setdefault(other.agent, []).append(
                        TaskPlacement(task_id, resources, ports)
                    )
                    if shape.group is not None:
                        self.count_placed(shape.group, other.values)
                    budget -= budget > 0
                    task_id = next(ids, None)
                    continue
            if bin_.agent != agent:
                agent = bin_.agent
                placed = placements.setdefault(agent, [])
            times, same = bin_.repeatable(shape, needs)
            if budget > 0:
                times = min(times, budget)
            if times > 1:
                taken = 0
                while task_id is not None and taken < times:
                    if avoid is not None and taken and task_id in avoid:
                        break  # placed on its own, where it did not fail
                    placed.append(TaskPlacement(task_id, same))
                    taken += 1
                    task_id = next(ids, None)
                bin_.take_repeated(needs, taken)
                if shape.group is not None:
                    self.count_placed(shape.group, bin_.values, taken)
                if budget > 0:
                    budget -= taken
                continue
            resources, ports = bin_.consume(shape, needs)
            placed.append(TaskPlacement(task_id, resources, ports))
            if shape.group is not None:
                self.count_placed(shape.group, bin_.values)
            budget -= budget > 0
            task_id = next(ids, None)
        self.cursors[fit] = cursor
        self.budget = budget

    def _place_scoped(
        self,
        group: GroupView,
        first: int,
        ids: Iterator[int],
        placements: dict[int, list[TaskPlacement]],
        waiting: list[GroupWaiting],
    ) -> None:
        """``_place_group`` for a shape with scoped constraints: one task at a time, each seeing
        the counts the ones before it left."""
        shape = group.shape
        needs = self._needs(shape)
        task_id: int | None = first
        assert shape.group is not None
        while task_id is not None:
            if self.budget == 0:
                self.budget_spent = True
                waiting.append(_flow_waiting(group))
                return
            bin_ = self._find_scoped(shape)
            if bin_ is None:
                waiting.append(self.explain(group))
                return
            resources, ports = bin_.consume(shape, needs)
            placements.setdefault(bin_.agent, []).append(TaskPlacement(task_id, resources, ports))
            self.count_placed(shape.group, bin_.values)
            self.budget -= self.budget > 0
            task_id = next(ids, None)

    def explain(self, group: GroupView) -> GroupWaiting:
        """One reason for a group that fits nowhere (computed once per shape and pass)."""
        shape = group.shape
        verdict = self.verdicts.get(shape)
        if verdict is None:
            verdict = self.verdicts[shape] = self._verdict(shape)
        return GroupWaiting(group.priority, shape, verdict[0], verdict[1])

    def _verdict(self, shape: Shape) -> tuple[WaitReason, str]:
        """The first resource no candidate offers has enough of, or the constraints."""
        resources = (shape.cpus, shape.mem, shape.disk, shape.gpus, shape.ports)
        if shape.static:
            candidates = [b for b in self.bins if b.satisfies(shape)]
            if not candidates:
                wanted = ", ".join(describe_constraint(c) for c in shape.static)
                return WaitReason.CONSTRAINTS, f"no offer matches {wanted}"
        else:
            candidates = self.bins
            # A resource no agent has enough of stays short for the rest of the pass (resources
            # only shrink): shapes that differ in their scoped constraints only share the verdict.
            short = self.shortages.get(resources)
            if short is not None:
                return short
        if shape.scoped:
            fitting = [b for b in candidates if b.fits(shape)]
            if fitting:
                return WaitReason.CONSTRAINTS, self._scoped_verdict(shape, fitting)
        verdict = self._resource_verdict(shape, candidates)
        if not shape.static and verdict[0] is not WaitReason.RESOURCES:
            self.shortages[resources] = verdict
        return verdict

    def _resource_verdict(self, shape: Shape, candidates: list[_Bin]) -> tuple[WaitReason, str]:
        for reason, attr, unit in (
            (WaitReason.CPUS, "cpus", " cpus"),
            (WaitReason.MEM, "mem", " MiB mem"),
            (WaitReason.DISK, "disk", " MiB disk"),
            (WaitReason.GPUS, "gpus", " gpus"),
            (WaitReason.PORTS, "ports", " ports"),
        ):
            need = getattr(shape, attr)
            if need > max(getattr(b, attr) for b in candidates) + EPSILON:
                return reason, f"no offer has {_fmt(need)}{unit}"
        return WaitReason.RESOURCES, f"no offer has {shape.describe()} together"

    def _scoped_verdict(self, shape: Shape, fitting: list[_Bin]) -> str:
        """Which scoped constraint keeps the group's next task off every agent that fits it."""
        counts = self.counts_of(shape)
        blocked_by: dict[Constraint, int] = {}
        for bin_ in fitting:
            for constraint in shape.scoped:
                name = constraint.field
                if not admits(constraint, bin_.values, counts.get(name), self.known_values(name)):
                    blocked_by[constraint] = blocked_by.get(constraint, 0) + 1
                    break
        group = shape.group
        for constraint, blocked in blocked_by.items():
            if blocked == len(fitting):
                return _blocking_message(constraint, group, counts.get(constraint.field, _NONE))
        named = ", ".join(str(c) for c in blocked_by)
        return f"{named}: no offering host admits another task of group {group}"


def _blocking_message(constraint: Constraint, group: str | None, counts: Mapping[str, int]) -> str:
    """The waiting reason of a scoped constraint that blocks every offering agent."""
    name = constraint.field
    where = "host" if name == HOSTNAME else f"host's {name}"
    operator = constraint.operator
    if operator is Operator.UNIQUE:
        runs = "runs" if name == HOSTNAME else "has"
        return f"{constraint}: every offering {where} already {runs} a task of group {group}"
    if operator is Operator.MAX_PER:
        return (
            f"{constraint}: every offering {where} already has {constraint.number} tasks of "
            f"group {group}"
        )
    if operator is Operator.CLUSTER:
        used = ", ".join(sorted(v for v, n in counts.items() if n > 0))
        return f"{constraint}: group {group} runs on {name} {used}, which no offering host has"
    return (
        f"{constraint}: every offering {where} already has more tasks of group {group} than "
        f"the least used {name}, or fewer {name} values than it spreads over are in use"
    )


_NONE: Mapping[str, int] = {}
_NO_GROUP: Mapping[str, Mapping[str, int]] = {}
_NO_LIMIT = 2**63


def _flow_waiting(group: GroupView) -> GroupWaiting:
    return GroupWaiting(group.priority, group.shape, WaitReason.FLOW_CONTROL, "launch flow control")


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"
