"""What scoped placement constraints read, kept as tasks launch and end: per group, the live
tasks per value of every field (hostname and each agent attribute); per field, how many distinct
values the cluster's agents have. Never recounted per offer.

``NodeRepository`` owns the instance and updates it where it holds and releases a node's
resources for a task (launch, end, requeue, and the live tasks loaded at start-up); the node
observer tells it each agent's attributes when it first sees them. A task placed on an agent
whose attributes are not known yet (after a restart, until the agent offers again) counts under
its hostname only, and under its attributes once they are learned.

Memory only; the matcher reads it through ``group_counts`` and ``known_values``.
"""

from __future__ import annotations

from collections.abc import Mapping

from scale_scheduler.state.placement_constraints import HOSTNAME, AgentValues, GroupCounts


class PlacementCounts:
    def __init__(self) -> None:
        self._counts = GroupCounts()
        self._agents: dict[str, AgentValues] = {}
        self._by_host: dict[str, dict[str, int]] = {}
        """Live tasks per host, per group (what moves when a host's attributes are learned)."""
        self._values: dict[str, dict[str, int]] = {}
        """Per attribute, per value: how many known agents have it."""

    # -- what the matcher reads -----------------------------------------------------------------

    def group_counts(self, group: str) -> Mapping[str, Mapping[str, int]]:
        return self._counts.of(group)

    def known_values(self, field: str) -> int:
        if field == HOSTNAME:
            return len(self._agents)
        values = self._values.get(field)
        return len(values) if values else 0

    # -- agents ---------------------------------------------------------------------------------

    def knows(self, hostname: str) -> bool:
        return hostname in self._agents

    def learn(self, values: AgentValues) -> None:
        """An agent's attributes (new, or changed when it registered again): its tasks move to
        its new values."""
        host = values.hostname
        old = self._agents.get(host)
        if old == values:
            return
        groups = self._by_host.get(host)
        if groups:
            before = old if old is not None else AgentValues(host, {})
            for group, n in groups.items():
                for _ in range(n):
                    self._counts.add(group, _fields(before), before, -1)
                    self._counts.add(group, _fields(values), values)
        if old is not None:
            self._count_values(old, -1)
        self._agents[host] = values
        self._count_values(values, 1)

    def forget(self, hostname: str) -> None:
        """The agent is gone: its values no longer count as the cluster's (GROUP_BY)."""
        old = self._agents.get(hostname)
        if old is None:
            return
        groups = self._by_host.get(hostname)
        bare = AgentValues(hostname, {})
        if groups:
            for group, n in groups.items():
                for _ in range(n):
                    self._counts.add(group, _fields(old), old, -1)
                    self._counts.add(group, (HOSTNAME,), bare)
        self._count_values(old, -1)
        del self._agents[hostname]

    def _count_values(self, values: AgentValues, sign: int) -> None:
        for name, value in values.attributes.items():
            per_value = self._values.setdefault(name, {})
            n = per_value.get(value, 0) + sign
            if n > 0:
                per_value[value] = n
            else:
                per_value.pop(value, None)
                if not per_value:
                    del self._values[name]

    # -- tasks ----------------------------------------------------------------------------------

    def launched(self, hostname: str, group: str, sign: int = 1) -> None:
        """A task of ``group`` holds a place on ``hostname`` (``sign=-1``: it no longer does)."""
        per_group = self._by_host.get(hostname)
        n = (per_group.get(group, 0) if per_group else 0) + sign
        if n < 0:
            return  # not counted (never held here): nothing to take back
        if n:
            self._by_host.setdefault(hostname, {})[group] = n
        elif per_group is not None:
            per_group.pop(group, None)
            if not per_group:
                del self._by_host[hostname]
        values = self._agents.get(hostname) or AgentValues(hostname, {})
        self._counts.add(group, _fields(values), values, sign)


def _fields(values: AgentValues) -> tuple[str, ...]:
    return (HOSTNAME, *values.attributes)
