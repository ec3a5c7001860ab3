"""The offers of one pass as bins: per agent, per allocation role, resources that shrink as tasks
are placed. Pure: no I/O, no clock.

An agent's offers are grouped by agent in arrival order; within an agent, by allocation role
(one task's resources all come from one role). Launched resources copy the offered resource's
role, reservations and allocation info and change only the quantity.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec

from scale_scheduler.daemon.mesos.mesos_types import Offer, Range, Ranges, Resource, Scalar
from scale_scheduler.state.domain import Shape
from scale_scheduler.state.placement_constraints import HOSTNAME, AgentValues, admits

EPSILON = 1e-6
SCALARS = ("cpus", "mem", "disk", "gpus")
_SCALAR_NAMES = frozenset(SCALARS)
Needs = tuple[tuple[str, float], ...]
"""A shape's non-zero scalars, in ``SCALARS`` order."""


def needs_of(shape: Shape) -> Needs:
    """The shape's non-zero scalars, in ``SCALARS`` order."""
    needs: list[tuple[str, float]] = []
    if shape.cpus > 0:
        needs.append(("cpus", float(shape.cpus)))
    if shape.mem > 0:
        needs.append(("mem", float(shape.mem)))
    if shape.disk > 0:
        needs.append(("disk", float(shape.disk)))
    if shape.gpus > 0:
        needs.append(("gpus", float(shape.gpus)))
    return tuple(needs)


class HostBlock(str, enum.Enum):
    PAUSED = "PAUSED"
    INACTIVE = "INACTIVE"


class Entry:
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


class PortEntry:
    __slots__ = ("free", "resource")

    def __init__(self, resource: Resource, free: list[list[int]]) -> None:
        self.resource = resource
        self.free = free


class Bin:
    """Resources of one agent allocated to one role, shrinking as tasks are placed."""

    __slots__ = (
        "admitted",
        "agent",
        "cpus",
        "disk",
        "entries",
        "fields",
        "gpus",
        "hostname",
        "labels",
        "mem",
        "port_entries",
        "ports",
        "values",
    )

    def __init__(self, agent: int, values: AgentValues) -> None:
        self.agent = agent
        self.hostname = values.hostname
        self.values = values
        self.labels = ((HOSTNAME, values.hostname), *values.attributes.items())
        """Every field a constraint may read, with the agent's value of it."""
        self.fields = {**values.attributes, HOSTNAME: values.hostname}
        """``values.text`` as a mapping (the hostname before an attribute of that name)."""
        self.admitted: dict[int, bool] = {}
        """Per shape's agent part (``Shape.fit``, by ``id``: the bin lives for one pass, which
        holds every shape it places): whether its static constraints admit this agent (they
        read only the agent, so once per pass)."""
        self.entries: dict[str, list[Entry]] = {}
        self.port_entries: list[PortEntry] = []
        self.cpus = self.mem = self.disk = self.gpus = 0.0
        self.ports = 0

    def add(self, resources: Iterable[Resource]) -> None:
        """An offer's resources (one loop for all of them: bins are made anew every pass)."""
        entries = self.entries
        for resource in resources:
            if resource.revocable is not None or resource.disk is not None:
                continue  # revocable capacity and volumes are not for ordinary tasks
            name = resource.name
            scalar = resource.scalar
            if scalar is not None and name in _SCALAR_NAMES:
                value = float(scalar.value)
                if not value > 0:
                    continue
                same = entries.get(name)
                if same is None:
                    entries[name] = [Entry(resource, value)]
                else:
                    same.append(Entry(resource, value))
                if name == "cpus":
                    self.cpus += value
                elif name == "mem":
                    self.mem += value
                elif name == "disk":
                    self.disk += value
                else:
                    self.gpus += value
            elif name == "ports" and resource.ranges is not None:
                free = []
                count = 0
                for span in resource.ranges.range:  # usually one: a loop, not a comprehension
                    begin, end = span.begin, span.end
                    if end >= begin:
                        free.append([begin, end])
                        count += end - begin + 1
                if free:
                    self.port_entries.append(PortEntry(resource, free))
                    self.ports += count

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
        key = id(shape.fit)
        admitted = self.admitted.get(key)
        if admitted is None:
            values = self.values
            admitted = all(admits(constraint, values) for constraint in shape.static)
            self.admitted[key] = admitted
        return admitted

    def consume(self, shape: Shape, needs: Needs) -> tuple[tuple[Resource, ...], tuple[int, ...]]:
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
        self, shape: Shape, needs: Needs, cap: int = -1
    ) -> tuple[int, tuple[Resource, ...]]:
        """How many tasks of ``shape`` in a row ``consume`` would place here with the very same
        resources (each need taken whole from the first entry with something left), at most
        ``cap`` (-1: no cap), and those resources; ``(0, ())`` when the next task needs ports or
        a need split across entries.

        Placing a run at once (``take_repeated``) instead of one ``consume`` per task is what
        makes matching a queue of equal tasks cheap (B3 in bench/RESULTS.md). The counting
        repeats ``consume``'s own arithmetic, so both ways leave the bin the same; where every
        quantity is a whole number (the usual case) that arithmetic is exact, and the count is
        one division instead of a loop.
        """
        if shape.ports or not needs:
            return 0, ()
        count = cap
        out: list[Resource] = []
        entries = self.entries
        for name, need in needs:
            for entry in entries.get(name, ()):  # the first with something left
                if entry.left > EPSILON:
                    break
            else:
                return 0, ()
            left = entry.left
            total = getattr(self, name)
            if (  # whole numbers below 2**53: consume's subtractions of them are exact
                need.is_integer()
                and left.is_integer()
                and total.is_integer()
                and left < _EXACT
                and total < _EXACT
            ):
                n = int((left if left < total else total) // need)
                if 0 <= count < n:
                    n = count
            else:
                n = _count_by_steps(need, left, total, count)
            if n == 0:
                return 0, ()
            count = n
            resource = entry.cache.get(need)
            out.append(resource if resource is not None else entry.take_new(need))
        return count, tuple(out)

    def take_repeated(self, needs: Needs, times: int) -> None:
        """Subtract ``times`` tasks' needs as ``times`` calls of ``consume`` would."""
        entries = self.entries
        for name, need in needs:
            for entry in entries[name]:  # the first with something left, as in repeatable
                if entry.left > EPSILON:
                    break
            left = entry.left
            total = getattr(self, name)
            if (
                need.is_integer()
                and left.is_integer()
                and total.is_integer()
                and left < _EXACT
                and total < _EXACT
            ):
                left -= times * need  # exact, as in repeatable (which left both >= 0)
                total -= times * need
            else:
                for _ in range(times):
                    left -= need
                    total = total - need if total - need > 0.0 else 0.0
            entry.left = left
            setattr(self, name, total)

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


_EXACT = 2.0**53


def _count_by_steps(need: float, left: float, total: float, cap: int) -> int:
    """``repeatable``'s count where some quantity is fractional: ``consume``'s steps, one by one
    (each may round)."""
    n = 0
    while (cap < 0 or n < cap) and need <= left + EPSILON and need <= total + EPSILON:
        left -= need
        total = total - need if total - need > 0.0 else 0.0
        n += 1
        if left <= EPSILON:
            break
    return n


@dataclass(slots=True)
class OfferingAgent:
    agent_id: str
    hostname: str
    offer_ids: list[str]
    bins: list[Bin]
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
) -> list[OfferingAgent]:
    """Offers by agent in arrival order, each agent's resources split into per-role bins
    (``bins=False``: no bins, when nothing is queued that could use them)."""
    agents: dict[str, OfferingAgent] = {}
    bins_by_role: dict[tuple[str, str], Bin] = {}
    for offer in offers:
        agent_id = offer.agent_id.value
        agent = agents.get(agent_id)
        if agent is None:
            agent = agents[agent_id] = OfferingAgent(
                agent_id, offer.hostname, [], [], blocked_hosts.get(offer.hostname)
            )
        agent.offer_ids.append(offer.id.value)
        if not bins:
            continue
        role = offer.allocation_info.role if offer.allocation_info is not None else None
        key = (agent_id, role or "")
        bin_ = bins_by_role.get(key)
        if bin_ is None:
            bin_ = bins_by_role[key] = Bin(len(agents) - 1, agent_values(offer))
            agent.bins.append(bin_)
        bin_.add(offer.resources)
    return list(agents.values())
