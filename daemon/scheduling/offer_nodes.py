"""What each offer pass learns about the offering nodes (Mesos agents), cheaply.

``NodeObserver.observe`` runs for every offer of every pass. It groups the pass's offers by node,
finds the nodes to create (their rows go into the pass's one commit), records each node's offer
time, sums the scalars a node offers (raising its seen totals) only when its offers differ from
last time, declines nothing itself but sets malformed offers aside, and says which offering nodes
block launches. It reads offers and the node repository; it sends nothing to Mesos.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import structlog

from scale_scheduler.daemon.mesos.agent_usage_api import endpoint_from_offer_url
from scale_scheduler.daemon.mesos.mesos_types import Offer, Resource
from scale_scheduler.daemon.scheduling.matcher import SCALARS, HostBlock, agent_values
from scale_scheduler.state.changes import Change
from scale_scheduler.state.nodes import (
    Node,
    NodeRepository,
    NodeSighting,
    Resources,
    resources_from_mesos,
)

log = structlog.get_logger(__name__)

USED_RESOURCES = frozenset({*SCALARS, "ports"})
"""Resource kinds a task can ask for; the matcher leaves any other kind in the offer."""

SUMS_KEPT = 1024
"""Distinct offered resources (the raw JSON of a node's offers in a pass) whose sums are kept,
all forgotten when more come. Agents alike offer alike (idle ones of a size offer the same
bytes), and a node offering twice in one pass then once is summed again each time: decoding
the resources was a tenth of a paused daemon's time under an offer flood (B1 in
``bench/RESULTS.md``)."""


def _nothing() -> None:
    pass


@dataclass(frozen=True, slots=True)
class Sightings:
    """What one pass learned about the offering nodes."""

    changes: list[Change]
    """Durable changes: nodes seen for the first time (committed with the pass)."""
    apply: Callable[[], None]
    hosts: dict[str, Offer]
    """The offering hostnames (each with its first offer)."""
    agents: int
    malformed: list[Offer]
    blocked: dict[str, HostBlock]


class NodeObserver:
    def __init__(self, nodes: NodeRepository) -> None:
        self._nodes = nodes
        self._ignored_kinds: set[str] = set()
        self._sums: dict[tuple[bytes, ...], tuple[float, float, float, float]] = {}

    def observe(self, offers: list[Offer], now: float) -> Sightings:
        """Record the offering nodes (new ones are created with this pass's commit).

        Runs for every offer of every pass, so a node whose offer is what it was last time (and
        whose scheduled resources did not change since) only has its offer time updated, at
        once; other nodes' resources are decoded and summed again, and applied after the commit
        that creates the new ones.
        """
        nodes = self._nodes
        by_hostname = nodes.by_hostname
        first: dict[str, Offer] = {}
        others: dict[str, None] = {}
        more: dict[str, list[Offer]] = {}
        for offer in offers:
            host = offer.hostname
            if host in first:  # a second offer of this node in this pass (rare)
                group = more.get(host)
                if group is None:
                    more[host] = [first[host], offer]
                    others[host] = None
                else:
                    group.append(offer)
                continue
            first[host] = offer
            node = by_hostname.get(host)
            if (
                node is not None
                and node.offer_key == offer.resources_json
                and node.online
                and node.noted_changes == node.scheduled.changes
                and node.agent_id == offer.agent_id.value
            ):
                # Memory only, and true whatever this pass's commit does.
                node.last_offer = now
            else:
                others[host] = None
        sightings: list[NodeSighting] = []
        changed: list[tuple[str, object, Resources, msgspec.Raw]] = []
        malformed: list[Offer] = []
        placement = nodes.placement
        for host in others:
            offer = first[host]
            node = by_hostname.get(host)
            if node is None or node.agent_id != offer.agent_id.value:
                sightings.append(NodeSighting(host, offer.agent_id.value))
                placement.learn(agent_values(offer))
            elif not placement.knows(host):
                placement.learn(agent_values(offer))
            group = more.get(host) if more else None
            summed = self._sum_offered(group or [offer])
            if summed is None:
                malformed.extend(group or [offer])
                continue
            # Copies: a decoded Raw is a view that keeps its whole OFFERS record (85 KB for 100
            # offers) alive, and a node keeps its key until its offers change.
            key = (
                offer.resources_json.copy()
                if group is None
                else tuple(o.resources_json.copy() for o in group)
            )
            changed.append((host, key, summed, offer.url))
        changes, apply_new = nodes.plan_sightings(sightings, now) if sightings else ([], None)

        def apply() -> None:
            if apply_new is not None:
                apply_new()
            for host, key, offered, url in changed:
                node = by_hostname.get(host)
                if node is not None:
                    nodes.offered(node, now, key, offered)
                    if url != node.url_key:  # rarely: a new node, or an agent's new address
                        node.url_key = url.copy()
                        node.agent_endpoint = endpoint_from_offer_url(url) or node.agent_endpoint

        agents = len(first) if not more else len({o.agent_id.value for o in offers})
        blocked = {
            host: (HostBlock.PAUSED if node.is_active else HostBlock.INACTIVE)
            for host, node in nodes.blocking.items()
            if host in first
        }
        if not changes:
            apply()  # nothing durable changes: memory may follow at once
            apply = _nothing
        return Sightings(list(changes), apply, first, agents, malformed, blocked)

    def offering_nodes(self, hosts: dict[str, Offer]) -> list[Node]:
        """The known nodes among ``hosts``."""
        by_hostname = self._nodes.by_hostname
        return [node for host in hosts if (node := by_hostname.get(host)) is not None]

    def _sum_offered(self, group: list[Offer]) -> Resources | None:
        """The scalars of one agent's offers; None (and an error event) if one is malformed.

        Also says once per kind that offers hold resources no task can use (they are not launched
        with, so the offer itself stays usable). Offers whose resources were summed before are
        not decoded again (``SUMS_KEPT``): the same bytes hold the same kinds, already told.
        """
        key = tuple(bytes(offer.resources_json) for offer in group)
        kept = self._sums.get(key)
        if kept is not None:
            return Resources(*kept)  # a Resources of its own: the node keeps it
        summed = self._decode_and_sum(group)
        if summed is not None:
            if len(self._sums) >= SUMS_KEPT:
                self._sums.clear()
            self._sums[key] = (summed.cpus, summed.mem, summed.disk, summed.gpus)
        return summed

    def _decode_and_sum(self, group: list[Offer]) -> Resources | None:
        resources: list[Resource] = []
        for offer in group:
            try:
                resources.extend(offer.resources)
            except msgspec.ValidationError as exc:
                log.error(
                    "offer_malformed",
                    offer_id=offer.id.value,
                    agent_id=offer.agent_id.value,
                    hostname=offer.hostname,
                    error=str(exc),
                )
                return None
        kinds = {r.name for r in resources if r.name not in USED_RESOURCES} - self._ignored_kinds
        if kinds:
            self._ignored_kinds |= kinds
            offer = group[0]
            log.warning(
                "offer_resources_ignored",
                names=sorted(kinds),
                offer_id=offer.id.value,
                agent_id=offer.agent_id.value,
                hostname=offer.hostname,
            )
        return resources_from_mesos(resources)
